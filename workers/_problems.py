"""pydantic's errors as ``(field path, reason)`` pairs whose reasons also say what was given.

pydantic says what it expected ("Input should be a finite number"); the user also needs to
see the value it refused, so a refused scalar is appended: ``..., got nan``.

Example:
    >>> from pydantic import BaseModel, Field, ValidationError
    >>> class Box(BaseModel):
    ...     size: int = Field(le=10, strict=True)
    >>> try:
    ...     Box(size=True)
    ... except ValidationError as exc:
    ...     described_problems(exc)
    [('size', 'Input should be a valid integer, got True')]
"""

from __future__ import annotations

from pydantic import ValidationError

from cells import ValidationProblem, validation_problems

_SHOWN = (bool, int, float, str, type(None))


def described_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """``(path, message)`` of each problem, the refused value appended to pydantic's own words."""
    return [(problem.path, message) for problem, message in described_errors(exc)]


def described_errors(exc: ValidationError) -> list[tuple[ValidationProblem, str]]:
    """Each problem with its message, the refused value appended to pydantic's own words."""
    problems = []
    for problem, error in zip(validation_problems(exc), exc.errors(), strict=True):
        message = problem.message
        value = error.get("input")
        if message.startswith("Input should") and isinstance(value, _SHOWN):
            message += f", got {shown_value(value)}"
        problems.append((problem, message))
    return problems


def shown_value(value: object) -> str:
    """A value as a message shows it: its repr cut to 60 characters; a huge integer by its size
    (Python refuses to print integers of more than 4300 digits).

    Example:
        >>> shown_value(2**100_000), shown_value("x" * 100)[-5:]
        ('an integer of 100001 bits', 'xx...')
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
