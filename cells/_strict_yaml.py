"""YAML a user gives (a job file, a search space, a task setting), read strictly.

YAML can do more than a settings file needs, and some of it is hostile: nesting a hundred
thousand levels deep (the loader recurses, Python fails with ``RecursionError``), anchors and
aliases that expand exponentially ("billion laughs": a few hundred bytes that stand for billions
of values), a key given twice (YAML keeps the last, so a typo silently loses a setting). Before
the document is built, :func:`load_strict_yaml` walks its events (an iterative parser) counting
the nesting depth and the values the document stands for, aliases expanded; a repeated key is
refused while it is built. Every refusal is one line saying where.

Example:
    >>> load_strict_yaml("a: &x [1, 2]\\nb: *x")
    {'a': [1, 2], 'b': [1, 2]}
    >>> load_strict_yaml("[" * 100_000)
    Traceback (most recent call last):
    ...
    cells._strict_yaml.StrictYAMLError: line 1, column 33: nested deeper than 32 levels
    >>> load_strict_yaml("a: 1\\na: 2")
    Traceback (most recent call last):
    ...
    cells._strict_yaml.StrictYAMLError: line 2, column 1: key 'a' is given twice
"""

from __future__ import annotations

from typing import Any

import yaml

from cells._errors import CellsearchError

__all__ = ["MAX_YAML_DEPTH", "MAX_YAML_VALUES", "StrictYAMLError", "load_strict_yaml"]


class StrictYAMLError(CellsearchError, ValueError):
    """Text is not strict YAML: a syntax error, a repeated key, deep nesting or an alias bomb.
    The message is one line, starting with where (``line 3, column 5: ...``) when it is known."""


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


def load_strict_yaml(text: str) -> Any:
    """The data of a YAML text; :class:`StrictYAMLError` (one line) for text that is not YAML,
    repeats a key, is nested too deep or expands to too many values."""
    try:
        _check_events(text)
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ...)
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise StrictYAMLError(f"line {line}: the character U+{code:04X} is not allowed") from None
    except yaml.YAMLError as exc:
        raise StrictYAMLError(_yaml_message(exc)) from None
    except (ValueError, OverflowError) as exc:  # a value PyYAML cannot build (a 5000-digit int, 2020-13-45)
        reason = "an integer with thousands of digits" if "digits" in str(exc) else str(exc)
        raise StrictYAMLError(f"cannot read a value: {reason}") from None


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
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return problem
