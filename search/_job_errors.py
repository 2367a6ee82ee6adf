"""Problems of a job file: :class:`JobError`, and pydantic's errors as ``"field.path: reason"`` lines.

Validators of the job's sections report a problem deep inside a value (the third cell of a
list, a field of a task's settings) with :func:`job_field_error`, which keeps the path of
each problem so that the message names the exact field.

Example:
    >>> from pydantic import ValidationError
    >>> from search._job_model import StrictModel
    >>> class Limits(StrictModel):
    ...     steps: int
    >>> try:
    ...     Limits.model_validate({"step": 3})
    ... except ValidationError as exc:
    ...     format_validation_errors(exc, Limits, ())
    ['steps: required', 'step: unknown key (allowed: steps)']
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from cells import CellsearchError, ValidationProblem, validation_problems

ErrorList = list[tuple[tuple[int | str, ...], str]]
"""``(path inside the value, reason)`` of each problem a validator found."""


class JobError(CellsearchError, ValueError):
    """A job file is invalid. ``errors`` holds one ``"field.path: reason"`` line per problem.

    Example:
        >>> print(JobError(["budget.max_trials: must be positive"], source="job.yaml"))
        job.yaml: budget.max_trials: must be positive
    """

    def __init__(self, errors: list[str], source: str | None = None) -> None:
        self.errors = list(dict.fromkeys(errors)) or ["(job): invalid"]
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        if len(self.errors) == 1:
            return prefix + self.errors[0]
        return f"{prefix}{len(self.errors)} problems:\n" + "\n".join(f"  {e}" for e in self.errors)


def job_field_error(errors: ErrorList) -> PydanticCustomError:
    """An error for a validator to raise that carries several problems, each with its own path."""
    return PydanticCustomError("job_field", "{message}", {"message": "", "errors": errors})


def field_error(field: str, message: str) -> PydanticCustomError:
    """:func:`job_field_error` of one problem in ``field``."""
    return job_field_error([((field,), message)])


def nested_error(exc: ValidationError, model: type[BaseModel]) -> PydanticCustomError:
    """Carry the errors of a nested validation (a task's config) so their paths are kept."""
    errors: ErrorList = []
    for problem, value in _problems(exc):
        message = _message(problem, value)
        field, _, rest = message.partition(": ")
        # "max_length: must be ..." from a model check: the field is the problem's place
        if not problem.loc and rest and field in model.model_fields:
            errors.append(((field,), rest))
        elif problem.type == "extra_forbidden" and len(problem.loc) == 1:
            errors.append((problem.loc, f"unknown setting (allowed: {', '.join(model.model_fields)})"))
        else:
            errors.append((problem.loc, message))
    return job_field_error(errors)


def format_validation_errors(
    exc: ValidationError, root: type[BaseModel], strategy_kinds: Sequence[str]
) -> list[str]:
    """``"path.to.field: reason"`` lines, one per problem, in the order pydantic found them.

    ``root`` is the model validated (for the allowed keys of an unknown one), ``strategy_kinds``
    the tags of the ``strategy`` union (named when a job gives an unknown one).
    """
    lines: list[str] = []
    for problem, value in _problems(exc):
        loc = _clean_loc(problem.loc, strategy_kinds)
        if problem.type == "job_field":
            for sub_loc, message in problem.ctx["errors"]:
                lines.append(f"{_path(loc + tuple(sub_loc))}: {message}")
        elif problem.type == "extra_forbidden":
            allowed = _allowed_keys(root, problem.loc[:-1])
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            lines.append(f"{_path(loc)}: unknown key{hint}")
        elif problem.type in ("union_tag_invalid", "union_tag_not_found") and loc[-1:] == ("strategy",):
            tag, known = problem.ctx.get("tag"), ", ".join(strategy_kinds)
            if tag is None:
                lines.append(f"{_path((*loc, 'kind'))}: missing (one of: {known})")
            else:
                lines.append(f"{_path((*loc, 'kind'))}: unknown strategy {tag!r} (known: {known})")
        else:
            message = _message(problem, value)
            if loc:  # "budget: budget: set ..." reads better once
                message = message.removeprefix(f"{loc[-1]}: ")
            lines.append(f"{_path(loc)}: {message}")
    return lines


def lower_first(message: str) -> str:
    return message[:1].lower() + message[1:]


_EXPECTED = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
"""Type problems, said as "expected X, got <the value>"."""

_BOUNDS = {
    "greater_than": "above",
    "greater_than_equal": "at least",
    "less_than": "below",
    "less_than_equal": "at most",
}


def _problems(exc: ValidationError) -> list[tuple[ValidationProblem, Any]]:
    """Each problem with the value it is about."""
    inputs = [error.get("input") for error in exc.errors(include_url=False)]
    return list(zip(validation_problems(exc), inputs, strict=True))


def _message(problem: ValidationProblem, value: Any = None) -> str:
    if problem.type == "missing":
        return "required"
    if problem.type in _EXPECTED:
        return f"expected {_EXPECTED[problem.type]}, got {_shown(value)}"
    if problem.type in _BOUNDS and isinstance(value, int | float) and not isinstance(value, bool):
        limit = next(iter(problem.ctx.values()), None)
        if limit is not None:
            if isinstance(limit, float) and limit.is_integer():
                limit = int(limit)  # "at least 1", not "at least 1.0"
            return f"expected {_BOUNDS[problem.type]} {limit}, got {value!r}"
    return lower_first(problem.message)


def _shown(value: Any) -> str:
    """A value as a message shows it: its repr, shortened, with its type for a mapping or list."""
    if isinstance(value, dict | list | tuple):
        return f"a {type(value).__name__} of {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _clean_loc(loc: tuple[Any, ...], strategy_kinds: Sequence[str]) -> tuple[Any, ...]:
    """Drop the discriminator tags and union-branch labels pydantic puts into error paths."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        if i > 0 and loc[i - 1] == "strategy" and part in strategy_kinds:
            continue
        if isinstance(part, str) and ("[" in part or part in _BRANCH_LABELS or part.startswith("function-")):
            continue
        out.append(part)
    return tuple(out)


_BRANCH_LABELS = frozenset({"int", "float", "str", "bool", "none", "list", "dict", "constrained-int"})


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(job)"


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the model at ``loc`` inside ``root`` (for 'unknown key' messages)."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        is_union = typing.get_origin(current) in (typing.Union, types.UnionType)
        members = typing.get_args(current) if is_union else ()
        tagged = [m for m in members if _kind_of(m) == part]
        if tagged:  # a discriminated union's tag selects the member
            current = tagged[0]
            continue
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _kind_of(model: Any) -> Any:
    if isinstance(model, type) and issubclass(model, BaseModel) and "kind" in model.model_fields:
        args = typing.get_args(model.model_fields["kind"].annotation)
        return args[0] if args else None
    return None


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``None`` from a type; a strategy union stays a union."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp
