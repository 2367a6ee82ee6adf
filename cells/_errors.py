"""The root of every error cellsearch raises on purpose.

Each package's own errors derive from :class:`CellsearchError` (and, where it helps a
caller, from the built-in they stand for, such as ``ValueError`` for bad input), so that
one ``except CellsearchError`` catches a refusal of the tool and lets a bug through.

Input that pydantic refuses is reported through one core, :func:`validation_problems`
(each problem's location and message) and :func:`join_problems` (them on one line), which
the cell graph, the task settings, the search space and the job file format each in their
own words.

Example:
    >>> from cells import CellGraphError, CellsearchError
    >>> issubclass(CellGraphError, CellsearchError), issubclass(CellGraphError, ValueError)
    (True, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class CellsearchError(Exception):
    """An error cellsearch raises on purpose: bad input, a missing resource, a refused state."""


@dataclass(frozen=True)
class ValidationProblem:
    """One problem pydantic found in some input: where, what kind, and why.

    ``message`` is pydantic's, without the ``"Value error, "`` it puts before the text of a
    ``ValueError`` raised by a validator; ``ctx`` is the error's context (empty when none).
    """

    loc: tuple[int | str, ...]
    type: str
    message: str
    ctx: Mapping[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """The location as dotted text (``nodes.3.inputs``); empty for the input as a whole."""
        return ".".join(str(part) for part in self.loc)


def validation_problems(exc: ValidationError) -> list[ValidationProblem]:
    """The problems of a pydantic ``ValidationError``, in the order pydantic found them.

    Example:
        >>> from pydantic import BaseModel, field_validator
        >>> class Box(BaseModel):
        ...     size: int
        ...     @field_validator("size")
        ...     @classmethod
        ...     def _positive(cls, size: int) -> int:
        ...         if size < 1:
        ...             raise ValueError("must be positive")
        ...         return size
        >>> try:
        ...     Box(size=0)
        ... except ValueError as exc:
        ...     [(p.path, p.message) for p in validation_problems(exc)]
        [('size', 'must be positive')]
    """
    return [
        ValidationProblem(
            loc=tuple(error["loc"]),
            type=error["type"],
            message=str(error["msg"]).removeprefix("Value error, "),
            ctx=error.get("ctx") or {},
        )
        for error in exc.errors()
    ]


def join_problems(problems: Iterable[tuple[str, str]]) -> str:
    """``"where: why; where: why"`` on one line; a problem with no ``where`` is its ``why`` alone.

    Example:
        >>> join_problems([("size", "must be positive"), ("", "too many fields")])
        'size: must be positive; too many fields'
    """
    return "; ".join(f"{where}: {why}" if where else why for where, why in problems)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what fits in
    a one-line refusal or a trial's error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
