"""Reading a job file's YAML safely, and checking that the data is plain JSON-like data.

:func:`load_job_yaml` refuses text over :data:`MAX_JOB_TEXT` characters and reads the rest with
``cells.load_strict_yaml`` (bounded nesting and alias expansion, no repeated key);
:func:`plain_data_problems` then names every key that is not a string (YAML allows numbers and
dates), every value that is not JSON-like (timestamps, binary) and every number that is not
finite.

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

from cells import MAX_YAML_DEPTH, MAX_YAML_VALUES, StrictYAMLError, load_strict_yaml
from search._job_errors import ErrorList, JobError

MAX_JOB_TEXT = 1_000_000
"""The most characters a job file's text may have (a job file is a few kilobytes)."""


def load_job_yaml(text: str, source: str) -> Any:
    """The data of a YAML job text; :class:`JobError` (one line) for text that is too long,
    not YAML, repeating a key, nested too deep or expanding to too many values."""
    if len(text) > MAX_JOB_TEXT:
        raise JobError(
            [f"(file): the job text is {len(text):,} characters; the limit is {MAX_JOB_TEXT:,}"], source
        )
    try:
        return load_strict_yaml(text)
    except StrictYAMLError as exc:
        raise JobError([f"(yaml): {exc}"], source) from None


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
