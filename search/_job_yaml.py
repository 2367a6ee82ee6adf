"""Reading a job file's YAML safely, and checking that the data is plain JSON-like data.

YAML can do more than a job file needs, and some of it is hostile: nesting a hundred thousand
levels deep (the loader recurses, Python fails with ``RecursionError``), anchors and aliases
that expand exponentially ("billion laughs": a few hundred bytes that stand for billions of
values), keys that are numbers or dates, values that are timestamps or binary. Before the
document is built, :func:`load_job_yaml` walks its events (an iterative parser) counting the
nesting depth and the values the document stands for, aliases expanded, and refuses text over
:data:`MAX_JOB_TEXT` characters; :func:`plain_data_problems` then names every key that is not
a string, every value that is not JSON-like and every number that is not finite.

Example:
    >>> load_job_yaml("a: &x [1, 2]\\nb: *x", "job.yaml")
    {'a': [1, 2], 'b': [1, 2]}
    >>> load_job_yaml("[" * 100_000, "deep.yaml")
    Traceback (most recent call last):
    ...
    search._job_errors.JobError: deep.yaml: (yaml): line 1, column 33: nested deeper than 32 levels
    >>> for problem in plain_data_problems({"tasks": [{"threshold": float("nan")}], 3: "x"}):
    ...     print(problem)
    (('3',), 'expected a string key, got int 3')
    (('tasks', 0, 'threshold'), 'expected a finite number, got nan')
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from search._job_errors import ErrorList, JobError

MAX_JOB_TEXT = 1_000_000
"""The most characters a job file's text may have (a job file is a few kilobytes)."""

MAX_YAML_DEPTH = 32
"""The deepest nesting of mappings and lists (a job file needs about 6)."""

MAX_YAML_VALUES = 100_000
"""The most values a job file may stand for, with its aliases expanded."""

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser where PyYAML has it


class _UniqueKeyLoader(_Loader):  # type: ignore[misc]
    """A safe YAML loader that refuses a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:  # unhashable: the base class names it
                break
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def load_job_yaml(text: str, source: str) -> Any:
    """The data of a YAML job text; :class:`JobError` (one line) for text that is too long,
    not YAML, nested too deep or expanding to too many values."""
    if len(text) > MAX_JOB_TEXT:
        raise JobError(
            [f"(file): the job text is {len(text):,} characters; the limit is {MAX_JOB_TEXT:,}"], source
        )
    try:
        _check_events(text)
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ...)
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise JobError([f"(yaml): line {line}: the character U+{code:04X} is not allowed"], source) from None
    except yaml.YAMLError as exc:
        raise JobError([_yaml_message(exc)], source) from None
    except (ValueError, OverflowError) as exc:  # a value PyYAML cannot build (a 5000-digit int, 2020-13-45)
        reason = "an integer with thousands of digits" if "digits" in str(exc) else str(exc)
        raise JobError([f"(yaml): cannot read a value: {reason}"], source) from None


class _Refused(yaml.MarkedYAMLError):
    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


def _check_events(text: str) -> None:
    """Walk the parser's events: refuse nesting deeper than :data:`MAX_YAML_DEPTH` and a document
    standing for more than :data:`MAX_YAML_VALUES` values (an alias counts what it names)."""
    open_sizes: list[list[Any]] = []  # per open mapping or list: [values inside, its anchor]
    anchored: dict[str, int] = {}
    total = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_sizes) >= MAX_YAML_DEPTH:
                raise _Refused(f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
            open_sizes.append([0, event.anchor])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            size, anchor = open_sizes.pop()
            size += 1
        elif isinstance(event, yaml.ScalarEvent):
            size, anchor = 1, event.anchor
        elif isinstance(event, yaml.AliasEvent):
            if any(event.anchor == a for _, a in open_sizes):
                raise _Refused(
                    f"alias *{event.anchor} inside what it names (a structure that contains itself)",
                    event.start_mark,
                )
            size, anchor = anchored.get(event.anchor or "", 1), None
        else:
            continue
        if anchor is not None:
            anchored[anchor] = size
        if open_sizes:
            open_sizes[-1][0] += size
        else:
            total += size
        if total + sum(s for s, _ in open_sizes) > MAX_YAML_VALUES:
            raise _Refused(
                f"stands for more than {MAX_YAML_VALUES:,} values (aliases expanded)", event.start_mark
            )


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"(yaml): line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"(yaml): {problem}"


_JSON_SCALARS = (str, int, float, bool, type(None))

NOT_A_STRING_KEY = "expected a string key"
NESTED_TOO_DEEP = f"nested deeper than {MAX_YAML_DEPTH} levels"
TOO_MANY_VALUES = f"expected at most {MAX_YAML_VALUES:,} values in a job"
STRUCTURAL = (NOT_A_STRING_KEY, NESTED_TOO_DEEP, TOO_MANY_VALUES)
"""Reasons of :func:`plain_data_problems` that make the whole mapping unfit for validation."""


def plain_data_problems(data: Any) -> ErrorList:
    """``(path, reason)`` of each key that is not a string, each value that is neither a JSON
    value nor a list or mapping of them, each non-finite number, and nesting deeper than
    :data:`MAX_YAML_DEPTH` (iterative: any depth is safe)."""
    problems: ErrorList = []
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), data)]
    seen = 0
    while stack:
        path, value = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            problems.append(((), TOO_MANY_VALUES))
            break
        if isinstance(value, dict | list | tuple) and len(path) >= MAX_YAML_DEPTH:
            problems.append((path, NESTED_TOO_DEEP))
            continue
        if isinstance(value, dict):
            children = []
            for key, item in value.items():
                if not isinstance(key, str):
                    problems.append(
                        ((*path, str(key)), f"{NOT_A_STRING_KEY}, got {type(key).__name__} {key!r}")
                    )
                    continue
                children.append(((*path, key), item))
            stack.extend(reversed(children))
        elif isinstance(value, list | tuple):
            stack.extend(reversed([((*path, i), item) for i, item in enumerate(value)]))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append((path, f"expected a finite number, got {value!r}"))
        elif not isinstance(value, _JSON_SCALARS):
            expected = "a string, number, true/false, null, list or mapping"
            problems.append((path, f"expected {expected}, got {type(value).__name__}"))
    return problems
