"""Hostile job files: every bad number, name, label, YAML trick and cell file is refused by
validation, with the field's path, before anything runs.

The numeric fields are enumerated from the pydantic models of the job's sections, so that a
new field is covered (and must have an upper bound) without touching this file.
"""

from __future__ import annotations

import json
import math
import os
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from search._cell_entries import MAX_CELL_FILE_BYTES
from search._job_limits import Resources, SearchBudget
from search._job_strategy import make_prefilter, make_strategy
from search._job_tasks import TaskEntry
from search._job_yaml import MAX_JOB_TEXT, MAX_YAML_DEPTH, MAX_YAML_VALUES
from search._jobspec import JobError, JobSpec
from search._strategies import STRATEGIES, Candidate, PrefilterSection
from search._strategies._prefilter import PREFILTER_LIMITS

BASE: dict[str, Any] = {
    "name": "hostile",
    "strategy": {"kind": "jozefowicz"},
    "tasks": [{"name": "memorize", "role": "search"}],
    "budget": {"max_trials": 10},
}


def job(**changes: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(BASE)), **changes}


def errors_of(data: Any) -> list[str]:
    with pytest.raises(JobError) as caught:
        JobSpec.from_dict(data)
    return caught.value.errors


def yaml_errors_of(text: str) -> list[str]:
    with pytest.raises(JobError) as caught:
        JobSpec.from_yaml_text(text)
    return caught.value.errors


# -- the numeric fields, from the models ---------------------------------------------------


class NumericField(typing.NamedTuple):
    path: tuple[Any, ...]
    """Where the value goes in a job dict (see :func:`place`)."""
    kind: type
    low: float | None
    low_open: bool
    high: float | None
    high_open: bool
    section: dict[str, Any]
    """What else the section needs (a strategy's kind)."""


def _number_type(annotation: Any) -> tuple[type | None, list[Any]]:
    """``(int or float, the constraints of an Annotated member)`` of a field's annotation."""
    metadata: list[Any] = []
    while typing.get_origin(annotation) is typing.Annotated:
        annotation, *extra = typing.get_args(annotation)
        metadata += extra
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [_number_type(a) for a in typing.get_args(annotation)]
        numbers = [f for f in found if f[0] is not None]
        return numbers[0] if numbers else (None, [])
    if annotation is int or annotation is float:
        return annotation, metadata
    return None, []


def _bounds(constraints: list[Any]) -> tuple[float | None, bool, float | None, bool]:
    low = high = None
    low_open = high_open = False
    for c in constraints:
        if isinstance(c, FieldInfo):
            return _bounds(c.metadata)
        if isinstance(c, annotated_types.Ge):
            low = c.ge
        elif isinstance(c, annotated_types.Gt):
            low, low_open = c.gt, True
        elif isinstance(c, annotated_types.Le):
            high = c.le
        elif isinstance(c, annotated_types.Lt):
            high, high_open = c.lt, True
    return low, low_open, high, high_open


def model_fields(
    model: type[BaseModel],
    prefix: tuple[Any, ...],
    section: dict[str, Any],
    limits: dict[str, int] | None = None,
) -> list[NumericField]:
    out = []
    for name, info in model.model_fields.items():
        kind, inner = _number_type(info.annotation)
        if kind is None:
            args = typing.get_args(info.annotation)
            if typing.get_origin(info.annotation) is dict and len(args) == 2:  # Resources.custom
                kind, inner = _number_type(args[1])
                if kind is not None:
                    low, low_open, high, high_open = _bounds(inner)
                    out.append(
                        NumericField((*prefix, name, "slot"), kind, low, low_open, high, high_open, section)
                    )
            continue
        low, low_open, high, high_open = _bounds([*inner, *info.metadata])
        if limits and name in limits:
            high = limits[name]
        out.append(NumericField((*prefix, name), kind, low, low_open, high, high_open, section))
    return out


def numeric_fields() -> list[NumericField]:
    from workers import PrefilterConfig

    fields = model_fields(JobSpec, (), {})
    fields += model_fields(SearchBudget, ("budget",), {})
    fields += model_fields(Resources, ("resources",), {})
    fields += model_fields(TaskEntry, ("tasks", 0), {})
    for kind, strategy in STRATEGIES.items():
        fields += model_fields(strategy.config_class, ("strategy",), {"kind": kind})
    fields += model_fields(PrefilterSection, ("prefilter",), {})
    fields += model_fields(PrefilterConfig, ("prefilter",), {}, PREFILTER_LIMITS)
    return fields


NUMERIC_FIELDS = numeric_fields()


def place(path: tuple[Any, ...], value: Any, section: dict[str, Any]) -> dict[str, Any]:
    """A valid job with ``value`` at ``path`` (and the section's needs, e.g. a strategy kind)."""
    data = job()
    if path[0] == "strategy":
        data["strategy"] = dict(section)
    if path[0] == "strategy" and section["kind"] == "fixed":
        data["strategy"]["cells"] = ["gru"]
    target: Any = data
    for part in path[:-1]:
        target = target.setdefault(part, {}) if isinstance(target, dict) else target[part]
    target[path[-1]] = value
    return data


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


def test_the_fields_are_found() -> None:
    names = {_dotted(f.path) for f in NUMERIC_FIELDS}
    assert {
        "trials_per_task",
        "seed",
        "budget.max_seconds",
        "resources.custom.slot",
        "tasks.0.threshold",
    } <= names
    assert {
        "strategy.p_refine",
        "strategy.population_size",
        "prefilter.batch",
        "prefilter.hidden_size",
    } <= names
    assert len(NUMERIC_FIELDS) >= 25


@pytest.mark.parametrize("field", NUMERIC_FIELDS, ids=lambda f: f"{f.path[0]}.{f.path[-1]}")
def test_every_numeric_field_has_an_upper_bound(field: NumericField) -> None:
    assert field.high is not None and math.isfinite(field.high)


def bad_values(field: NumericField) -> st.SearchStrategy[Any]:
    """Values no job may hold in ``field``: non-finite, bools, strings, below or above its range."""
    # `population: false` is YAML's reading of the documented `population: off`, not a number
    boolean = [True] if field.path == ("population",) else [True, False]
    options: list[st.SearchStrategy[Any]] = [
        st.sampled_from([math.nan, math.inf, -math.inf, *boolean, "1", "1e999", "nan", [1], {"a": 1}]),
    ]
    if field.high is not None:
        step = 1 if field.kind is int else field.high * 1e-6 + 1e-9
        above = field.high if field.high_open else field.high + step
        options.append(st.sampled_from([above, 10**30, 1e300]))
        options.append(st.integers(min_value=math.ceil(above), max_value=2**70))
    if field.low is not None:
        below = field.low if field.low_open else field.low - (1 if field.kind is int else 1e-6)
        options.append(st.sampled_from([below, -(10**30), -1e300]))
        options.append(st.integers(max_value=math.floor(below), min_value=-(2**70)))
    if field.kind is int:
        options.append(st.floats(min_value=0.5, max_value=100.5).filter(lambda x: not x.is_integer()))
    return st.one_of(options)


@st.composite
def bad_jobs(draw: st.DrawFn) -> tuple[dict[str, Any], str, Any]:
    field = draw(st.sampled_from(NUMERIC_FIELDS))
    value = draw(bad_values(field))
    return place(field.path, value, field.section), _dotted(field.path), value


HOSTILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HOSTILE
@given(bad_jobs())
def test_a_bad_number_anywhere_is_refused_naming_its_field(case: tuple[dict[str, Any], str, Any]) -> None:
    data, path, value = case
    errors = errors_of(data)
    assert any(e.startswith(f"{path}: ") for e in errors), (value, errors)
    # the same job written as YAML (``.nan``, ``.inf``, ``true``, quoted strings)
    yaml_errors = yaml_errors_of(yaml.safe_dump(data))
    assert any(e.startswith(f"{path}: ") for e in yaml_errors), (value, yaml_errors)


@HOSTILE
@given(
    st.sampled_from(
        [
            ("tasks", 0, "settings", "max_length"),
            ("hparams", "learning_rate"),
            ("tasks", 0, "hparams", "dropout"),
            ("tasks", 0, "budget", "max_steps"),
            ("prefilter", "fraction"),
            ("strategy", "top_k"),
            ("budget", "max_seconds"),
            ("resources", "custom", "slot"),
        ]
    ),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)
def test_a_non_finite_number_is_refused_also_in_free_form_sections(
    path: tuple[Any, ...], value: float
) -> None:
    errors = errors_of(place(path, value, {"kind": "jozefowicz"}))
    assert f"{_dotted(path)}: expected a finite number, got {value!r}" in errors


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0, "expected 'auto', 'off' or an integer from 1 to 1000, got 0"),
        (1001, "expected 'auto', 'off' or an integer from 1 to 1000, got 1001"),
        (True, "expected 'auto', 'off' or an integer from 1 to 1000, got true (YAML's `on`)"),
        ("4", "expected 'auto', 'off' or an integer from 1 to 1000, got '4'"),
        (math.nan, "expected a finite number, got nan"),
    ],
)
def test_population_is_auto_off_or_a_bounded_integer(value: Any, reason: str) -> None:
    assert f"population: {reason}" in errors_of(job(population=value))


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        ({"trials_per_task": 10**12}, "trials_per_task: expected at most 1000, got 1000000000000"),
        ({"trials_per_task": True}, "trials_per_task: expected an integer, got True"),
        ({"budget": {"max_seconds": math.inf}}, "budget.max_seconds: expected a finite number, got inf"),
        ({"seed": 2**32}, "seed: expected at most 4294967295, got 4294967296"),
        ({"resources": {"cpus": 1e9}}, "resources.cpus: expected at most 1024, got 1000000000.0"),
        (
            {"resources": {"gpus": 1.5}},
            "resources.gpus: a GPU fraction must be at most 1 (got 1.5); above 1 use whole GPUs",
        ),
        (
            {"strategy": {"kind": "jozefowicz", "p_refine": math.nan}},
            "strategy.p_refine: expected a finite number, got nan",
        ),
        ({"prefilter": {"batch": 1}}, "prefilter.batch: expected at least 2, got 1"),
        ({"prefilter": {"hidden_size": 10**6}}, "prefilter.hidden_size: expected at most 4096, got 1000000"),
        ({"prefilter": {"batches": True}}, "prefilter.batches: expected an integer, got True"),
        (
            {"strategy": {"kind": "random", "num_states": 3, "max_nodes": 2}},
            "strategy.max_nodes: expected at least num_states (3), got 2",
        ),
        (
            {"strategy": {"kind": "regularized_evolution", "population_size": 4, "sample_size": 5}},
            "strategy.sample_size: expected at most population_size (4), got 5",
        ),
        (
            {"tasks": [{"name": "memorize", "threshold": math.nan}]},
            "tasks.0.threshold: expected a finite number, got nan",
        ),
        (
            {"strategy": {"kind": "random"}, "prefilter": {"batch": 4}},
            "prefilter: the random strategy draws no mutants to screen; remove the section",
        ),
        (
            {"device": "cuda"},
            "device: 'cuda' needs resources.gpus above 0 (a trial that asks Ray for no GPU sees none)",
        ),
    ],
)
def test_examples_from_the_issue(changes: dict[str, Any], line: str) -> None:
    assert line in errors_of(job(**changes))


# -- names and labels ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a\x00b", "contains the control character U+0000"),
        ("ring\x07", "contains the control character U+0007"),
        ("gpj\u202eexe", "contains the control character U+202E"),
        ("two\nlines", "contains the control character U+000A"),
    ],
)
def test_a_name_with_control_characters_is_refused(name: str, reason: str) -> None:
    expected = f"name: expected a name without control characters, got {name!r}: it {reason}"
    assert errors_of(job(name=name)) == [expected]


def test_a_description_may_span_lines_but_holds_no_other_control_character() -> None:
    assert JobSpec.from_dict(job(description="line one\n\tline two\r\n")).description.startswith("line one")
    assert errors_of(job(description="bell\x07")) == [
        "description: expected text without control characters but line breaks and tabs: "
        "it contains the control character U+0007"
    ]


LABEL_RULE = "expected letters, digits, '_', '-' and '.', starting with a letter or digit"


@pytest.mark.parametrize(
    "label", ["../../etc/passwd", "a b", "-x", ".hidden", "x/y", "metric;drop", "é", "a\x00"]
)
def test_an_unsafe_label_is_refused_saying_what_is_allowed(label: str) -> None:
    errors = errors_of(job(tasks=[{"name": "memorize", "label": label}]))
    assert errors == [f"tasks.0.label: {LABEL_RULE}, got {label!r}"]


@pytest.mark.parametrize("label", ["ptb", "xml-small", "music_2", "v1.2", "9lives"])
def test_a_safe_label_is_kept(label: str) -> None:
    assert JobSpec.from_dict(job(tasks=[{"name": "memorize", "label": label}])).tasks[0].id == label


def test_a_custom_resource_name_is_restricted() -> None:
    errors = errors_of(job(resources={"custom": {"../x": 1}}))
    assert errors[0].startswith("resources.custom: expected resource names of letters, digits")


# -- YAML ------------------------------------------------------------------------------------

TEXT = "name: x\nstrategy: {kind: jozefowicz}\ntasks: [{name: memorize}]\nbudget: {max_trials: 3}\n"


def billion_laughs(levels: int = 9) -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return TEXT + "hparams:\n" + "".join(f"  {line}\n" for line in lines)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            TEXT + "hparams: " + "[" * 100_000,
            f"(yaml): line 5, column 41: nested deeper than {MAX_YAML_DEPTH} levels",
        ),
        (
            TEXT + "hparams: " + "{a: " * 100_000,
            f"(yaml): line 5, column 134: nested deeper than {MAX_YAML_DEPTH} levels",
        ),
        (
            billion_laughs(),
            f"(yaml): line 10, column 47: stands for more than {MAX_YAML_VALUES:,} values (aliases expanded)",
        ),
        (
            "x" * (MAX_JOB_TEXT + 1),
            f"(file): the job text is {MAX_JOB_TEXT + 1:,} characters; the limit is {MAX_JOB_TEXT:,}",
        ),
        (TEXT + "1: one\n", "1: expected a string key, got int 1"),
        (
            TEXT + "hparams: {2020-01-01: x}\n",
            "hparams.2020-01-01: expected a string key, got date datetime.date(2020, 1, 1)",
        ),
        (
            TEXT + "hparams: {x: 2020-01-01}\n",
            "hparams.x: expected a string, number, true/false, null, list or mapping, got date",
        ),
        (
            TEXT + "hparams: {x: !!binary aGk=}\n",
            "hparams.x: expected a string, number, true/false, null, list or mapping, got bytes",
        ),
        (
            TEXT + "trials_per_task: " + "9" * 5000 + "\n",
            "(yaml): cannot read a value: an integer with thousands of digits",
        ),
        (TEXT + "seed: .nan\n", "seed: expected a finite number, got nan"),
        (
            TEXT.replace("max_trials: 3", "max_seconds: .inf"),
            "budget.max_seconds: expected a finite number, got inf",
        ),
        (
            TEXT.replace("max_trials: 3", "max_seconds: 1.0e+999"),
            "budget.max_seconds: expected a finite number, got inf",
        ),
        (
            TEXT.replace("max_trials: 3", "max_seconds: 1e999"),
            "budget.max_seconds: expected a number, got '1e999'",
        ),
        (TEXT + "trials_per_task: yes\n", "trials_per_task: expected an integer, got True"),
    ],
    ids=[
        "deep lists",
        "deep mappings",
        "billion laughs",
        "too long",
        "int key",
        "date key",
        "date value",
        "binary value",
        "huge int",
        ".nan",
        ".inf",
        "1.0e+999",
        "1e999 (a string in YAML 1.1)",
        "yes",
    ],
)
def test_hostile_yaml_is_refused_in_one_line(text: str, line: str) -> None:
    assert yaml_errors_of(text) == [line]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            TEXT + "hparams: &a {x: *a}\n",
            "(yaml): line 5, column 17: alias *a inside what it names (a structure that contains itself)",
        ),
        (TEXT + "x: \x00\n", "(yaml): line 5: the character U+0000 is not allowed"),
        (TEXT + "---\nname: y\n", "(yaml): line 5, column 1: but found another document"),
        (
            TEXT + "hparams: !!python/object:os.system {}\n",
            "(yaml): line 5, column 10: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object:os.system'",
        ),
        (TEXT + "seed: *nope\n", "(yaml): line 5, column 7: found undefined alias"),
        (
            TEXT + "hparams: !!set {a, b}\n",
            "hparams: expected a string, number, true/false, null, list or mapping, got set",
        ),
    ],
    ids=["recursive alias", "NUL", "two documents", "python tag", "undefined alias", "set"],
)
def test_more_yaml_tricks_are_refused(text: str, line: str) -> None:
    assert yaml_errors_of(text) == [line]


def test_a_few_aliases_are_fine() -> None:
    text = TEXT + "hparams: {}\nseed_cells: &cells [gru, lstm]\nbaselines: *cells\n"
    assert JobSpec.from_yaml_text(text).baselines == ["gru", "lstm"]


def test_deep_nesting_in_a_dict_is_refused_without_recursion() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = {"a": deep}
    errors = errors_of(job(hparams=deep))
    path = "hparams" + ".a" * (MAX_YAML_DEPTH - 1)
    assert f"{path}: nested deeper than {MAX_YAML_DEPTH} levels" in errors


# -- cell files ------------------------------------------------------------------------------


def chain(nodes: int) -> dict[str, Any]:
    body = [{"name": "n0", "op": "linear", "inputs": ["x", "h_prev_0"]}]
    body += [{"name": f"n{i}", "op": "tanh", "inputs": [f"n{i - 1}"]} for i in range(1, nodes)]
    return {"name": "chain", "num_states": 1, "nodes": body, "outputs": [f"n{nodes - 1}"]}


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda p: p.write_bytes(b'{"name": "\xe9"}'),
            "the cell file is not UTF-8 text (byte 0xe9 on line 1)",
        ),
        (
            lambda p: p.write_bytes('{"name": "x"}'.encode("utf-16")),
            "the cell file is UTF-16 text; save it as UTF-8",
        ),
        (
            lambda p: p.write_text(" " * (MAX_CELL_FILE_BYTES + 1)),
            f"the cell file is {MAX_CELL_FILE_BYTES + 1:,} bytes; the limit is {MAX_CELL_FILE_BYTES:,} bytes",
        ),
        (lambda p: os.mkfifo(p), "the cell file is not a regular file (it is a FIFO)"),
        (lambda p: p.mkdir(), "the cell file is not a regular file (it is a folder)"),
        (
            lambda p: p.write_text('{"name": "a", "name": "b", "num_states": 1, "nodes": [], "outputs": []}'),
            "key 'name' is given twice in one object",
        ),
        (lambda p: p.write_text('{"name": "a", "num_states": NaN}'), "NaN is not a number JSON allows"),
        (lambda p: p.write_text("[" * 100_000), "nested 100000 levels deep; the limit is 32"),
    ],
    ids=["latin-1", "utf-16", "too large", "fifo", "folder", "duplicate keys", "nan", "deep"],
)
def test_a_bad_seed_cell_file_is_named_with_its_index(tmp_path: Path, make: Any, reason: str) -> None:
    path = tmp_path / "x.json"
    make(path)
    errors = errors_of(job(seed_cells=["gru", str(path)]))
    assert errors == [f"seed_cells.1: {path}: {reason}"]


@pytest.mark.parametrize("entry", ["/dev/zero", "/dev/null"])
def test_a_device_is_no_cell_file(entry: str) -> None:
    errors = errors_of(job(baselines=[entry]))
    assert errors == [f"baselines.0: {entry}: the cell file is not a regular file (it is a character device)"]


def test_a_huge_graph_is_refused_at_validation(tmp_path: Path) -> None:
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(chain(5000)))
    errors = errors_of(job(strategy={"kind": "fixed", "cells": [str(path)]}, budget={}))
    assert len(errors) == 1 and errors[0].startswith(f"strategy.cells.0: {path}: "), errors


# -- valid specs: the stored form reads back, and the run's objects build ---------------------

labels = st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True)


@st.composite
def strategy_sections(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(STRATEGIES)))
    section: dict[str, Any] = {"kind": kind}
    mutation_p = st.none() | st.floats(min_value=0.01, max_value=1.0)
    if kind == "jozefowicz":
        section["top_k"] = draw(st.integers(1, 10_000))
        section["p_refine"] = draw(st.floats(0.0, 1.0))
        section["refine_trials"] = draw(st.integers(1, 1000))
        section["mutation_p"] = draw(mutation_p)
    elif kind == "regularized_evolution":
        section["population_size"] = size = draw(st.integers(2, 10_000))
        section["sample_size"] = draw(st.integers(1, size))
        section["mutation_p"] = draw(mutation_p)
    elif kind == "random":
        section["num_states"] = states = draw(st.none() | st.integers(1, 3))
        section["max_nodes"] = draw(st.integers(states or 1, 64))
    else:
        section["cells"] = draw(
            st.lists(st.sampled_from(["gru", "lstm", "tanh", "mut1"]), min_size=1, max_size=3)
        )
    return section


@st.composite
def valid_jobs(draw: st.DrawFn) -> dict[str, Any]:
    tasks = [{"name": "memorize", "role": "search"}]
    for label in draw(st.lists(labels, max_size=2, unique=True)):
        role = draw(st.sampled_from(["filter", "search", "report-only"]))
        task: dict[str, Any] = {"name": "memorize", "label": label, "role": role}
        task["threshold"] = (
            # memorize's accuracy is at most 1: a filter above it is refused (no cell reaches it)
            draw(st.floats(-1e9, 1.0)) if role == "filter" else draw(st.none() | st.floats(0, 10))
        )
        task["trials"] = draw(st.none() | st.integers(1, 1000))
        tasks.append(task)
    strategy = draw(strategy_sections())
    fewest = strategy.get("population_size", 0) + 1  # an evolution must have room to mutate
    data: dict[str, Any] = {
        "name": draw(st.text(st.characters(categories=["L", "N", "P", "Zs"]), min_size=1, max_size=40)),
        "description": draw(st.text(st.characters(categories=["L", "N", "Zs"], include_characters="\n\t"))),
        "strategy": strategy,
        "tasks": tasks,
        "trials_per_task": draw(st.integers(1, 1000)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "population": draw(st.sampled_from(["auto", "off"]) | st.integers(1, 1000)),
        "seed_cells": draw(st.lists(st.sampled_from(["gru", "lstm", "tanh"]), max_size=3)),
        "budget": {
            "max_architectures": draw(st.none() | st.integers(fewest, 1_000_000)),
            "max_trials": draw(st.integers(1, 100_000_000)),
            "max_seconds": draw(st.none() | st.floats(0.001, 31_622_400)),
        },
        "resources": {
            "cpus": draw(st.floats(0.01, 1024)),
            "gpus": draw(st.floats(0, 1) | st.integers(1, 64)),
            "custom": draw(st.dictionaries(labels, st.floats(0.001, 1e6), max_size=2)),
            "max_in_flight": draw(st.none() | st.integers(1, 100_000)),
        },
    }
    if data["strategy"]["kind"] in ("jozefowicz", "regularized_evolution") and draw(st.booleans()):
        data["prefilter"] = {
            "enabled": draw(st.booleans()),
            "batch": draw(st.integers(2, 1024)),
            "fraction": draw(st.floats(0.0, 0.99)),
            "hidden_size": draw(st.integers(1, 4096)),
            "batches": draw(st.integers(1, 100)),
            "batch_size": draw(st.integers(2, 4096)),
            "seed": draw(st.integers(0, 2**32 - 1)),
            "proxy": draw(st.sampled_from(["grad_norm", "snip", "jacob_cov"])),
        }
    return data


VALID = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@VALID
@given(valid_jobs())
def test_a_valid_spec_reads_back_from_its_stored_form(data: dict[str, Any]) -> None:
    spec = JobSpec.from_dict(data)
    stored = json.loads(json.dumps(spec.to_dict(), allow_nan=False))  # what the database keeps
    again = JobSpec.from_dict(stored)
    assert again == spec
    assert again.to_dict() == spec.to_dict()
    assert JobSpec.from_yaml_text(yaml.safe_dump(stored)) == spec


@VALID
@given(valid_jobs())
def test_a_valid_spec_builds_its_strategy_and_prefilter(data: dict[str, Any]) -> None:
    spec = JobSpec.from_dict(data)
    strategy = make_strategy(spec)
    prefilter = make_prefilter(spec)
    assert strategy.kind == spec.strategy.kind
    assert (prefilter is None) == (spec.prefilter is None or not spec.prefilter.enabled)
    if spec.strategy.kind == "random" or spec.seed_cells or spec.strategy.kind == "fixed":
        assert isinstance(strategy.ask(), Candidate)  # a first proposal is there
