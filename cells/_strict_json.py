"""JSON a user gives (a cell file, a NAS-Bench-NLP recipe file), read strictly.

Python's ``json`` keeps the last of two equal keys (so a typo silently loses a setting),
accepts ``NaN``, ``Infinity`` and numbers such as ``1e999`` that overflow to infinity, and
fails with ``RecursionError`` on deeply nested input. :func:`load_strict_json` refuses all
of them with one line that says where.

Example:
    >>> load_strict_json('{"a": 1, "a": 2}', "cell.json")
    Traceback (most recent call last):
    ...
    cells._strict_json.StrictJSONError: cell.json: key 'a' is given twice in one object
    >>> load_strict_json('[' * 100 + ']' * 100, "x.json")
    Traceback (most recent call last):
    ...
    cells._strict_json.StrictJSONError: x.json: nested 100 levels deep; the limit is 32
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any

from cells._errors import CellsearchError

__all__ = ["MAX_JSON_DEPTH", "StrictJSONError", "load_strict_json"]

MAX_JSON_DEPTH = 32
"""The deepest nesting of arrays and objects accepted; a cell file or a recipe needs about 4."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class StrictJSONError(CellsearchError, ValueError):
    """Text is not strict JSON: a syntax error, a repeated key, a non-finite number or deep nesting."""


def load_strict_json(text: str, source: str) -> Any:
    """Parse ``text`` (named ``source`` in messages) as JSON, refusing repeated keys, ``NaN``,
    ``Infinity``, numbers that overflow to infinity and nesting deeper than :data:`MAX_JSON_DEPTH`."""
    depth = nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise StrictJSONError(f"{source}: nested {depth} levels deep; the limit is {MAX_JSON_DEPTH}")
    try:
        return json.loads(
            text, object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_float=_finite_float
        )
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"{source}: not valid JSON: {exc}") from None
    except ValueError as exc:  # from the hooks
        raise StrictJSONError(f"{source}: {exc}") from None


def nesting_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings (regular expressions, no recursion)."""
    brackets = _BRACKET.findall(_STRING.sub("", text))
    return max(itertools.accumulate(_STEP[b] for b in brackets), default=0)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} is given twice in one object")
        result[key] = value
    return result


def _finite_float(text: str) -> float:
    # 1e999 is valid JSON syntax but overflows to infinity, which the rules above refuse.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is too large (it overflows to infinity)")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")
