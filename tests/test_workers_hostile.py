"""Hostile numbers and options: every numeric field of the trial budget, of every task's config
and of the search space refuses non-finite, huge, negative, bool and string values with one
line naming the field, and takes every value inside its documented range; ``cells eval``
refuses bad options with one line naming the option, exit 2, and writes nothing."""

from __future__ import annotations

import math
import os
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from annotated_types import Ge, Gt, Le, Lt
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from typer.testing import CliRunner

from workers import TASKS, Budget, PrefilterConfig, SearchSpace, task_config
from workers._hparams import HyperParams, SearchSpaceError
from workers._task import TaskConfigError

HOSTILE: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    "1",
    "1e9",
    10**30,
    -(10**30),
    2**5000,
    1e300,
    -1e300,
]
"""Values no numeric field takes: not finite, bools, strings, and far outside any range."""

BASE_SETTINGS: dict[str, dict[str, Any]] = {
    "text": {"preset": "ptb"},
    "music": {"preset": "jsb"},
}
"""Settings that make a task's config valid on its own (a data source)."""

PARTNERS = {
    "min_length": "max_length",
    "max_length": "min_length",
    "min_tag_length": "max_tag_length",
    "max_tag_length": "min_tag_length",
}
"""Fields checked against each other: moved together so the single-field range is what is tested."""

FAST = settings(max_examples=40, deadline=None)


def numeric_type(field: FieldInfo) -> type | None:
    """``int`` or ``float`` for a numeric field (optional or not), else None."""
    annotation = field.annotation
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    kinds = [option for option in options if option in (int, float)]
    return kinds[0] if kinds and bool not in options else None


def numeric_fields(model: type[BaseModel]) -> list[str]:
    return [name for name, field in model.model_fields.items() if numeric_type(field) is not None]


def bounds(field: FieldInfo) -> tuple[Any, bool, Any, bool]:
    """``(low, low is open, high, high is open)`` of a field's documented range."""
    low: Any = -math.inf
    high: Any = math.inf
    low_open = high_open = False
    for item in field.metadata:  # the bounds as written: ints stay exact (2**63 - 1)
        if isinstance(item, Ge):
            low = item.ge
        elif isinstance(item, Gt):
            low, low_open = item.gt, True
        elif isinstance(item, Le):
            high = item.le
        elif isinstance(item, Lt):
            high, high_open = item.lt, True
    return low, low_open, high, high_open


def inside(field: FieldInfo) -> st.SearchStrategy[Any]:
    """Values inside a field's documented range, of its own type."""
    low, low_open, high, high_open = bounds(field)
    if numeric_type(field) is int:
        return st.integers(int(low) + low_open, int(high) - high_open)
    return st.floats(low, high, exclude_min=low_open, exclude_max=high_open, allow_nan=False)


TASK_FIELDS = [
    (task, name) for task, cls in sorted(TASKS.items()) for name in numeric_fields(cls.config_class)
]
SPACE_FIELDS = [name for name in SearchSpace.model_fields if name in numeric_fields(HyperParams)]


def one_line_naming(message: str, name: str) -> None:
    assert "\n" not in message and "Traceback" not in message, message
    assert name in message, message


# -- every numeric field has a finite documented range -----------------------------------------


@pytest.mark.parametrize(
    "model",
    [Budget, HyperParams, PrefilterConfig, *(cls.config_class for _, cls in sorted(TASKS.items()))],
    ids=repr,
)
def test_every_numeric_field_has_an_upper_bound(model: type[BaseModel]) -> None:
    fields = numeric_fields(model)
    assert fields
    for name in fields:
        low, _, high, _ = bounds(model.model_fields[name])
        assert math.isfinite(high), f"{model.__name__}.{name} has no upper bound"
        if name != "forget_bias":
            assert math.isfinite(low), f"{model.__name__}.{name} has no lower bound"


# -- the trial budget ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "name"),
    [(model, name) for model in (Budget, PrefilterConfig) for name in numeric_fields(model)],
)
@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_budget_and_prefilter_refuse_hostile_numbers(model: type[BaseModel], name: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({name: value})
    assert [error["loc"] for error in info.value.errors()] == [(name,)]


@pytest.mark.parametrize("name", numeric_fields(Budget))
def test_budget_refuses_zero_and_negative(name: str) -> None:
    for value in (0, -1, -0.5):
        with pytest.raises(ValidationError) as info:
            Budget.model_validate({name: value})
        assert info.value.errors()[0]["loc"] == (name,)


@FAST
@given(data=st.data())
def test_budget_takes_every_value_in_its_ranges(data: st.DataObject) -> None:
    values = {
        name: data.draw(inside(Budget.model_fields[name]), label=name) for name in numeric_fields(Budget)
    }
    budget = Budget.model_validate(values)
    assert {name: value for name, value in budget.model_dump().items() if name in values} == values


# -- every task's config ------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "name"), TASK_FIELDS)
@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_task_configs_refuse_hostile_numbers(task: str, name: str, value: Any) -> None:
    with pytest.raises(TaskConfigError) as info:
        task_config(task, **{**BASE_SETTINGS.get(task, {}), name: value})
    message = str(info.value)
    one_line_naming(message, f"task {task!r}: {name}: ")
    if isinstance(value, bool | str):
        assert f"got {value!r}" in message


@pytest.mark.parametrize(("task", "name"), TASK_FIELDS)
def test_task_configs_refuse_values_just_outside_their_ranges(task: str, name: str) -> None:
    field = TASKS[task].config_class.model_fields[name]
    low, low_open, high, high_open = bounds(field)
    step = 1 if numeric_type(field) is int else 1e-9 * max(1.0, abs(high))
    outside = [high if high_open else high + step]
    if math.isfinite(low):
        outside.append(low if low_open else low - step)
    for value in outside:
        value = int(value) if numeric_type(field) is int else value
        with pytest.raises(TaskConfigError) as info:
            task_config(task, **{**BASE_SETTINGS.get(task, {}), name: value})
        one_line_naming(str(info.value), f"{name}: ")


@FAST
@given(data=st.data())
@pytest.mark.parametrize(("task", "name"), TASK_FIELDS)
def test_task_configs_take_values_inside_their_ranges(task: str, name: str, data: st.DataObject) -> None:
    cls = TASKS[task].config_class
    value = data.draw(inside(cls.model_fields[name]))
    chosen = {**BASE_SETTINGS.get(task, {}), name: value}
    if "valid_size" in cls.model_fields:  # the held-out sets' memory is tested below
        chosen = {"valid_size": 1, "test_size": 1} | chosen
    if name in PARTNERS:
        chosen[PARTNERS[name]] = value
    config = task_config(task, **chosen)
    assert getattr(config, name) == value


@pytest.mark.parametrize(
    ("task", "chosen", "named"),
    [
        ("memorize", {"max_length": 10_000}, "valid_size, test_size, max_length"),
        (
            "memorize",
            {"valid_size": 100_000, "test_size": 100_000, "max_length": 20},
            "valid_size, test_size",
        ),
        ("arith", {"valid_size": 100_000, "max_digits": 30}, "max_digits, distractors"),
        ("arith", {"distractors": 1000, "max_digits": 30}, "max_digits, distractors"),
        ("xml", {"max_depth": 100, "max_children": 4}, "max_depth, max_children"),
        ("xml", {"max_depth": 12, "max_children": 6}, "max_depth, max_children"),
        ("xml", {"valid_size": 100_000, "test_size": 100_000, "max_tag_length": 100}, "max_tag_length"),
    ],
)
def test_settings_that_need_too_much_memory_together_are_refused(
    task: str, chosen: dict[str, Any], named: str
) -> None:
    with pytest.raises(TaskConfigError) as info:
        task_config(task, **chosen)
    message = str(info.value)
    one_line_naming(message, named)
    assert "expected" in message and "got about" in message


def test_large_realistic_sequence_settings_are_accepted() -> None:
    """The memory limit is well above what real searches ask for."""
    assert task_config("memorize", max_length=100, valid_size=10_000, test_size=10_000)
    assert task_config("xml", max_depth=6, max_children=3, valid_size=2000, test_size=2000)
    assert task_config("arith", max_digits=30, distractors=5, valid_size=5000, test_size=5000)


@pytest.mark.parametrize(
    ("settings_", "named"),
    [
        ({"split_fractions": [math.nan, 0.5, 0.5]}, "split_fractions.0"),
        ({"split_fractions": [0.5, math.inf, 0.5]}, "split_fractions.1"),
        ({"split_fractions": [0.5, 0.5, True]}, "split_fractions.2"),
        ({"split_fractions": [0.5, 0.5, "0.5"]}, "split_fractions.2"),
        ({"train": {"path": "a", "start": math.nan}}, "train.start"),
        ({"train": {"path": "a", "stop": True}}, "train.stop"),
        ({"train": {"path": "a", "stop": 1e300}}, "train.stop"),
    ],
)
def test_text_fractions_refuse_hostile_numbers(settings_: dict[str, Any], named: str) -> None:
    with pytest.raises(TaskConfigError) as info:
        task_config("text", preset="ptb", **settings_)
    one_line_naming(str(info.value), f"{named}: ")


def test_xml_at_its_deepest_generates_without_recursion_errors() -> None:
    import xml.etree.ElementTree as ET

    from workers import make_task

    task = make_task("xml", max_depth=100, max_children=2, valid_size=20, test_size=20)
    documents = [example.key for example in task.heldout("valid")]
    assert len(documents) == 20
    for document in documents:
        ET.fromstring(document)  # well formed
        depth = deepest = 0
        for index, char in enumerate(document):
            if char == "<":
                depth += -1 if document[index + 1] == "/" else 1
                deepest = max(deepest, depth)
        assert 1 <= deepest <= 100


def test_xml_documents_are_the_ones_the_recursive_generator_drew() -> None:
    """Generation became iterative; the documents (and so every task key's data) are unchanged."""
    import hashlib

    from workers import make_task

    task = make_task("xml", max_depth=6, max_children=3, text_probability=0.5, valid_size=200, test_size=200)
    keys = [example.key for example in task.heldout("valid") + task.heldout("test")]
    assert hashlib.sha256(repr(keys).encode()).hexdigest()[:16] == "6feff0f3dc4527ef"


# -- the search space ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPACE_FIELDS)
@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_search_space_refuses_hostile_numbers(name: str, value: Any) -> None:
    for override in (value, [value], {"low": value, "high": 1}, {"low": 1, "high": value}):
        with pytest.raises(SearchSpaceError) as info:
            SearchSpace().with_overrides({name: override})
        one_line_naming(str(info.value), f"field {name!r}: ")


@pytest.mark.parametrize("name", SPACE_FIELDS)
def test_search_space_refuses_values_just_outside_the_fields_ranges(name: str) -> None:
    field = HyperParams.model_fields[name]
    _, _, high, high_open = bounds(field)
    above = high if high_open else high + (1 if numeric_type(field) is int else 1e-6 * high)
    above = int(above) if numeric_type(field) is int else above
    for override in (above, {"low": 1, "high": above}):
        with pytest.raises(SearchSpaceError) as info:
            SearchSpace().with_overrides({name: override})
        one_line_naming(str(info.value), f"field {name!r}: ")


def test_search_space_ranges_must_be_ordered_and_finite() -> None:
    with pytest.raises(
        SearchSpaceError, match="field 'forget_bias': range: field 'low': expected a finite number, got nan"
    ):
        SearchSpace().with_overrides({"forget_bias": {"low": math.nan, "high": 2}})
    with pytest.raises(SearchSpaceError, match="low 2 is above high 1"):
        SearchSpace().with_overrides({"forget_bias": {"low": 2, "high": 1}})
    with pytest.raises(SearchSpaceError, match="field 'step': expected a finite number, got inf"):
        SearchSpace().with_overrides({"forget_bias": {"low": 0, "high": 1, "step": math.inf}})
    with pytest.raises(SearchSpaceError, match="expected at most 1000 choices, got 1001"):
        SearchSpace().with_overrides({"batch_size": list(range(1, 1002))})


@FAST
@given(data=st.data())
@pytest.mark.parametrize("name", SPACE_FIELDS)
def test_search_space_takes_ranges_inside_the_fields_ranges(name: str, data: st.DataObject) -> None:
    values = sorted(data.draw(st.lists(inside(HyperParams.model_fields[name]), min_size=2, max_size=2)))
    space = SearchSpace().with_overrides({name: {"low": values[0], "high": values[1]}})
    assert (getattr(space, name).low, getattr(space, name).high) == (values[0], values[1])
    assert getattr(SearchSpace().with_overrides({name: values[1]}), name) == values[1]


# -- `cells eval` and `data` options ------------------------------------------------------------


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def eval_cases(tmp: Path) -> list[tuple[list[str], str]]:
    """``(extra arguments, the option the message must name)`` of each bad ``cells eval``."""
    fifo = tmp / "fifo.yaml"
    os.mkfifo(fifo)
    space = [
        (b"\xff\xfe\x00n\x00u\x00m", "UTF-16"),
        (b"hidden_size: \xff\n", "not UTF-8"),
        (b"num_layers: [1,\n", "expected YAML"),
        (b"[" * 20_000 + b"]" * 20_000, "nested"),
        (b"forget_bias: {low: .nan, high: 2}\n", "'forget_bias'"),
        (b"hidden_size: 1000000000\n", "'hidden_size'"),
        (b"- 1\n- 2\n", "expected a mapping"),
        (b"num_layer: 2\n", "unknown field"),
    ]
    cases: list[tuple[list[str], str]] = [
        (["--space", write(tmp / f"space{i}.yaml", data)], f"--space: {tmp}/space{i}.yaml: ")
        for i, (data, _) in enumerate(space)
    ]
    cases += [
        (["--space", "/dev/zero"], "--space: /dev/zero: "),
        (["--space", str(fifo)], "a FIFO"),
        (["--space", str(tmp)], "a folder"),
        (["--seed", "-1"], "--seed: "),
        (["--seed", str(2**200)], "--seed: "),
        (["--trials", "0"], "--trials: "),
        (["--trials", str(10**9)], "--trials: "),
        (["--budget-seconds", "inf"], "--budget-seconds: "),
        (["--budget-seconds", "nan"], "--budget-seconds: "),
        (["--budget-seconds", "-5"], "--budget-seconds: "),
        (["--budget-seconds", "1e9"], "--budget-seconds: "),
        (["--budget-steps", str(10**12)], "--budget-steps: "),
        (["--budget-steps", "0"], "--budget-steps: "),
        (["--eval-every", "0"], "--eval-every: "),
        (["--task-setting", "max_length=[1, 2"], "--task-setting max_length: "),
        (["--task-setting", "max_length=" + "[" * 5000], "--task-setting max_length: "),
        (["--task-setting", "digits=3"], "digits"),
        (["--task-setting", "max_length=.nan"], "max_length"),
        (["--task-setting", "max_length=true"], "max_length"),
        (["--task-setting", "max_length=1000000000"], "max_length"),
        (["--task-setting", "=3"], "--task-setting: "),
    ]
    return cases


def test_cells_eval_refuses_bad_options_in_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cellsearch._cli import app

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    cases = eval_cases(inputs)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = sorted(inputs.iterdir())
    runner = CliRunner()
    for extra, named in cases:
        result = runner.invoke(app, ["cells", "eval", "lstm", "--task", "memorize", *extra])
        assert result.exit_code == 2, (extra, result.output)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (extra, result.stderr)
        assert named in lines[0], (extra, lines[0])
        assert result.stdout == "" and "Traceback" not in result.output
    assert list(work.iterdir()) == [] and sorted(inputs.iterdir()) == before


@pytest.mark.parametrize(
    ("args", "code", "named"),
    [
        (["data", "download", "imagenet"], 2, "unknown data set 'imagenet'"),
        (["data", "download", "ptb", "--url-base", "garbage"], 2, "--url-base: "),
        (["data", "download", "ptb", "--dir", "{file}"], 2, "--dir: "),
    ],
)
def test_data_download_refuses_bad_options_in_one_line(
    tmp_path: Path, args: list[str], code: int, named: str
) -> None:
    from cellsearch._cli import app

    file = tmp_path / "a-file"
    file.write_text("x")
    result = CliRunner().invoke(app, [arg.format(file=file) for arg in args])
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert sorted(tmp_path.iterdir()) == [file] and file.read_text() == "x"
