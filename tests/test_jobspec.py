"""Job files: the examples validate; every malformed kind is refused naming the field, before
anything is written."""

from __future__ import annotations

import copy
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cells import library
from search._jobspec import JobError, JobSpec, task_key
from search._preflight import check_db_url, load_job
from workers import Budget

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))

VALID: dict[str, Any] = {
    "name": "t",
    "strategy": {"kind": "jozefowicz", "top_k": 5},
    "tasks": [
        {"name": "memorize", "role": "filter", "threshold": 0.5, "settings": {"max_length": 6}},
        {"name": "arith", "budget": {"max_steps": 50}},
    ],
    "budget": {"max_architectures": 10},
}


def write_job(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def with_changes(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    data.update(changes)
    return data


def errors_of(data: dict[str, Any] | str, tmp_path: Path) -> list[str]:
    with pytest.raises(JobError) as info:
        load_job(write_job(tmp_path, data))
    return info.value.errors


# -- the examples ----------------------------------------------------------------------------


def test_examples_are_present() -> None:
    assert {p.name for p in EXAMPLES} >= {"quickstart.yaml", "jozefowicz.yaml", "paper_table.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(path: Path) -> None:
    spec = load_job(path)
    assert spec.tasks and spec.baselines == ["gru"]
    # Every task's settings build its config, and its key is stable across loads.
    assert [t.key for t in spec.tasks] == [t.key for t in load_job(path).tasks]
    assert all(t.config is not None for t in spec.tasks)
    assert spec.search_space().to_optuna()  # the hparams overrides form a valid space


def test_example_contents_match_their_purpose() -> None:
    by_name = {p.name: load_job(p) for p in EXAMPLES}
    quick = by_name["quickstart.yaml"]
    assert quick.strategy.kind == "jozefowicz" and quick.device == "cpu" and quick.resources.gpus == 0
    assert [t.name for t in quick.tasks] == ["memorize", "arith", "xml"]
    assert quick.tasks[0].role == "filter" and set(quick.seed_cells) == {"lstm", "gru", "tanh"}
    assert all(quick.trials_for(t) <= 3 and (t.budget.max_steps or 0) <= 300 for t in quick.tasks)

    paper = by_name["jozefowicz.yaml"]
    assert paper.budget.max_architectures == 10_000 and paper.trials_per_task == 20
    assert paper.strategy.kind == "jozefowicz" and paper.strategy.top_k == 100
    assert paper.resources.gpus == 0.25 and paper.pruner == "median"
    assert [t.id for t in paper.tasks] == ["memorize", "arith", "xml", "ptb"]
    assert paper.task("ptb").config.model_dump()["preset"] == "ptb"

    table = by_name["paper_table.yaml"]
    assert table.strategy.kind == "fixed"
    assert set(table.strategy.cells) == set(library.names())
    assert len({table.trials_for(t) for t in table.tasks}) == 1  # equal trial budgets


# -- each malformed kind, named by field -----------------------------------------------------

MALFORMED = [
    (
        "unknown strategy",
        with_changes(strategy={"kind": "greedy"}),
        "strategy.kind",
        "unknown strategy 'greedy'",
    ),
    (
        "negative budget",
        with_changes(budget={"max_architectures": -5}),
        "budget.max_architectures",
        "expected at least 1, got",
    ),
    ("no budget", with_changes(budget={}), "budget", "set at least one of"),
    (
        "negative trial budget",
        with_changes(tasks=[{"name": "arith", "budget": {"max_steps": -1}}]),
        "tasks.0.budget.max_steps",
        "expected at least 1, got",
    ),
    (
        "unknown task",
        with_changes(tasks=[{"name": "arith"}, {"name": "foo"}]),
        "tasks.1.name",
        "unknown task 'foo' (known: arith, memorize",
    ),
    (
        "bad task setting",
        with_changes(tasks=[{"name": "arith", "settings": {"max_digits": 0}}]),
        "tasks.0.settings.max_digits",
        "expected at least 1, got",
    ),
    (
        "unknown task setting",
        with_changes(tasks=[{"name": "arith", "settings": {"digits": 2}}]),
        "tasks.0.settings.digits",
        "unknown setting (allowed:",
    ),
    (
        "unknown cell",
        with_changes(seed_cells=["lstm", "lstmm"]),
        "seed_cells.1",
        "or a cell JSON file, got 'lstmm'",
    ),
    ("unknown baseline", with_changes(baselines=["nope"]), "baselines.0", "or a cell JSON file, got 'nope'"),
    (
        "unknown fixed cell",
        with_changes(strategy={"kind": "fixed", "cells": ["gru", "grux"]}),
        "strategy.cells.1",
        "'grux'",
    ),
    ("GPU fraction above 1", with_changes(resources={"gpus": 1.5}), "resources.gpus", "at most 1"),
    ("unknown key", with_changes(trials_per_tsk=3), "trials_per_tsk", "unknown key (allowed: name,"),
    (
        "unknown nested key",
        with_changes(strategy={"kind": "jozefowicz", "topk": 3}),
        "strategy.topk",
        "unknown key (allowed: kind, top_k",
    ),
    (
        "filter without threshold",
        with_changes(tasks=[{"name": "memorize", "role": "filter"}]),
        "tasks.0.threshold",
        "needs a threshold",
    ),
    ("unknown hparam", with_changes(hparams={"num_layer": 2}), "hparams.num_layer", "unknown hyperparameter"),
    ("bad population", with_changes(population=0), "population", "an integer from 1 to 1000, got 0"),
    (
        "duplicate task",
        with_changes(tasks=[{"name": "arith"}, {"name": "arith"}]),
        "tasks.1.name",
        "listed twice",
    ),
    ("missing name", {k: v for k, v in VALID.items() if k != "name"}, "name", "required"),
    (
        "evolution whose population takes the whole budget",
        with_changes(strategy={"kind": "regularized_evolution"}, budget={"max_architectures": 12}),
        "strategy.population_size",
        "100 fills the whole architecture budget (budget.max_architectures: 12)",
    ),
    (
        "evolution whose population equals the budget",
        with_changes(strategy={"kind": "regularized_evolution", "population_size": 10, "sample_size": 3}),
        "strategy.population_size",
        "nothing is ever mutated; set it below 10",
    ),
    (
        "filter accuracy no cell reaches",
        with_changes(tasks=[{"name": "memorize", "role": "filter", "threshold": 1.01}, {"name": "arith"}]),
        "tasks.0.threshold",
        "1.01 is out of reach (accuracy is at most 1)",
    ),
    (
        "filter perplexity no cell reaches",
        with_changes(
            tasks=[
                {"name": "text", "role": "filter", "threshold": 0.9, "settings": {"preset": "ptb"}},
                {"name": "arith"},
            ]
        ),
        "tasks.0.threshold",
        "0.9 is out of reach (perplexity is at least 1)",
    ),
    ("population on", with_changes(population=True), "population", "got true (YAML's `on`)"),
]


@pytest.mark.parametrize(
    ("data", "field", "reason"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_job_is_refused_naming_the_field(
    tmp_path: Path, data: dict[str, Any], field: str, reason: str
) -> None:
    db_file = tmp_path / "results.db"
    data = {**data, "db_url": f"sqlite:///{db_file}"}
    errors = errors_of(data, tmp_path)
    matching = [e for e in errors if e.startswith(f"{field}: ")]
    assert matching, errors
    assert reason in matching[0]
    assert not db_file.exists()  # refused before anything is written


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = with_changes(
        strategy={"kind": "jozefowicz", "top_k": 0},
        seed_cells=["nope"],
        tasks=[{"name": "foo"}, {"name": "arith", "settings": {"max_digits": 99}}],
        budget={"max_trials": -1},
        resources={"gpus": 2.5, "cpus": 0},
        extra_key=1,
    )
    fields = [e.split(": ", 1)[0] for e in errors_of(data, tmp_path)]
    assert fields == [
        "strategy.top_k",
        "seed_cells.0",
        "tasks.0.name",
        "tasks.1.settings.max_digits",
        "budget.max_trials",
        "resources.cpus",
        "resources.gpus",
        "extra_key",
    ]


def test_message_lists_every_error_under_the_file_name(tmp_path: Path) -> None:
    path = write_job(tmp_path, with_changes(budget={"max_seconds": 0}, sampler="grid"))
    with pytest.raises(JobError) as info:
        load_job(path)
    text = str(info.value)
    assert text.startswith(f"{path}: 2 problems:\n")
    assert "  sampler: input should be 'random' or 'tpe'" in text
    assert "  budget.max_seconds: expected above 0, got 0" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # libyaml says "in this context", PyYAML's own parser "here"
        ("name: x\n  strategy: [\n", "(yaml): line 2, column 11: mapping values are not allowed"),
        ("name: x\ntasks: [{name: arith}\n", "(yaml): line 3, column 1:"),
        ("name: x\nname: y\n", "(yaml): line 2, column 1: key 'name' is given twice"),
        ("- a\n- b\n", "(job): expected a mapping of job settings, got a list"),
        ("", "(job): expected a mapping of job settings, got an empty file"),
    ],
)
def test_yaml_problems_are_reported_with_line_numbers(tmp_path: Path, text: str, expected: str) -> None:
    errors = errors_of(text, tmp_path)
    assert errors[0].startswith(expected), errors


def test_missing_file_is_a_job_error(tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"cannot read the job file"):
        load_job(tmp_path / "nope.yaml")


def test_cell_files_are_read_relative_to_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "mine.json").write_text(library.get("gru").with_name("mine").to_json())
    (tmp_path / "cells" / "broken.json").write_text(json.dumps({"name": "b", "num_states": 1, "nodes": []}))
    spec = load_job(write_job(tmp_path, with_changes(seed_cells=["lstm", "cells/mine.json"])))
    assert spec.seed_cells[1] == str((tmp_path / "cells" / "mine.json").resolve())
    assert [name for name, _ in spec.seed_graphs] == ["lstm", None]
    assert spec.seed_graphs[1][1].name == "mine"
    errors = errors_of(with_changes(seed_cells=["cells/broken.json"]), tmp_path)
    assert errors[0].startswith("seed_cells.0: ") and "outputs" in errors[0]


def test_task_labels_tell_apart_entries_of_one_task(tmp_path: Path) -> None:
    tasks = [
        {"name": "arith", "label": "short", "settings": {"max_digits": 1}},
        {"name": "arith", "label": "long", "settings": {"max_digits": 4}},
    ]
    spec = load_job(write_job(tmp_path, with_changes(tasks=tasks)))
    assert [t.id for t in spec.tasks] == ["short", "long"]
    assert spec.task("long").config.model_dump()["max_digits"] == 4
    assert spec.tasks[0].key != spec.tasks[1].key
    with pytest.raises(KeyError):
        spec.task("arith")


def test_task_key_matches_equal_settings_only() -> None:
    base = task_key("arith", {}, Budget(max_steps=100))
    assert (
        task_key("arith", {"max_digits": 3, "seed": 0}, Budget(max_steps=100)) == base
    )  # defaults filled in
    assert task_key("arith", {"max_digits": 4}, Budget(max_steps=100)) != base
    assert task_key("arith", {}, Budget(max_steps=101)) != base
    assert task_key("xml", {}, Budget(max_steps=100)) != base
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    # The search space is part of the key; spelling out a default changes nothing.
    assert task_key("arith", {}, Budget(max_steps=100), {"hidden_size": 256}) != base
    assert task_key("arith", {}, Budget(max_steps=100), {"batch_size": 32}) == base


def test_a_job_with_another_search_space_does_not_share_evaluations() -> None:
    def keys(job_hparams: dict, task_hparams: dict) -> list[str]:
        spec = JobSpec.from_dict(
            {
                "name": "k",
                "strategy": {"kind": "fixed", "cells": ["gru"]},
                "hparams": job_hparams,
                "tasks": [{"name": "memorize"}, {"name": "arith", "hparams": task_hparams}],
            }
        )
        return [t.key for t in JobSpec.from_dict(spec.to_dict()).tasks]  # as stored and reloaded

    base = keys({}, {})
    assert keys({}, {}) == base
    wider = keys({"hidden_size": [64, 128, 256]}, {})
    assert wider[0] != base[0] and wider[1] != base[1]
    arith_only = keys({}, {"learning_rate": 0.01})
    assert arith_only[0] == base[0] and arith_only[1] != base[1]
    # The task's override wins over the job's, as in the search space the trials get.
    assert keys({"num_layers": 2}, {"num_layers": 1})[1] == keys({}, {"num_layers": 1})[1]


def test_filter_threshold_follows_the_metric_direction() -> None:
    spec = JobSpec.from_dict(
        with_changes(
            tasks=[
                {"name": "memorize", "role": "filter", "threshold": 0.9},
                {"name": "text", "role": "filter", "threshold": 200, "settings": {"preset": "ptb"}},
                {"name": "arith"},
            ]
        )
    )
    memorize, text = spec.tasks[0], spec.tasks[1]
    assert (
        memorize.passes_filter(0.95) and not memorize.passes_filter(0.5) and not memorize.passes_filter(None)
    )
    assert text.direction == "minimize" and text.passes_filter(150.0) and not text.passes_filter(250.0)


def test_settings_that_would_do_something_are_kept() -> None:
    """The controls of the idle-setting refusals: one below the budget, a threshold at the bound."""
    evolution = {"kind": "regularized_evolution", "population_size": 9, "sample_size": 3}
    assert JobSpec.from_dict(with_changes(strategy=evolution)).strategy.kind == "regularized_evolution"
    no_limit = with_changes(strategy={"kind": "regularized_evolution"}, budget={"max_seconds": 60})
    assert JobSpec.from_dict(no_limit).budget.max_architectures is None  # the budget is not known
    tasks = [{"name": "memorize", "role": "filter", "threshold": 1.0}, {"name": "arith"}]
    assert JobSpec.from_dict(with_changes(tasks=tasks)).tasks[0].threshold == 1.0


@pytest.mark.parametrize(
    ("text", "population"), [("off", "off"), ("false", "off"), ("auto", "auto"), ("4", 4)]
)
def test_population_off_is_read_as_yaml_writes_it(text: str, population: str | int) -> None:
    """YAML 1.1 reads a bare ``off`` as false: the documented ``population: off`` means off."""
    job = yaml.safe_dump(VALID) + f"population: {text}\n"
    assert JobSpec.from_yaml_text(job).population == population
    assert JobSpec.from_dict(JobSpec.from_yaml_text(job).to_dict()).population == population  # stored


@pytest.mark.parametrize("text", ["on", "true", "yes"])
def test_population_on_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(JobError, match=r"population: expected 'auto', 'off' or an integer"):
        JobSpec.from_yaml_text(yaml.safe_dump(VALID) + f"population: {text}\n")


def test_gpus_whole_above_one_and_fractions_below() -> None:
    assert JobSpec.from_dict(with_changes(resources={"gpus": 0.25})).resources.gpus == 0.25
    assert JobSpec.from_dict(with_changes(resources={"gpus": 2})).resources.gpus == 2
    assert JobSpec.from_dict(with_changes(population=50)).population == 50


def test_stored_spec_round_trips() -> None:
    spec = JobSpec.from_dict(VALID)
    again = JobSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.tasks[1].key == spec.tasks[1].key


# -- the database URL ------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_database_url_names_db_url(tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"^db_url: cannot connect to postgresql\+psycopg://postgres:\*\*\*@"):
        check_db_url(f"postgresql+psycopg://postgres:secret@127.0.0.1:{_closed_port()}/x")
    with pytest.raises(JobError, match=r"^db_url: cannot use sqlite:///.*: folder .* does not exist"):
        check_db_url(f"sqlite:///{tmp_path}/missing/dir/results.db")
    with pytest.raises(JobError, match=r"^db_url: not a database URL"):
        check_db_url("not a url")


def test_reachable_sqlite_url_is_not_created_by_the_check(tmp_path: Path) -> None:
    target = tmp_path / "results.db"
    check_db_url(f"sqlite:///{target}")
    assert not target.exists()


# -- property: any job dict validates or fails naming fields, never crashes ------------------

# Independent places to corrupt: (path in the dict, bad values, good alternatives).
FIELDS: list[tuple[tuple[Any, ...], list[Any], list[Any]]] = [
    (("name",), ["", None, 3, ["x"]], ["other", "a b c"]),
    (
        ("strategy",),
        [{"kind": "x"}, {}, "jozefowicz", {"kind": "jozefowicz", "top_k": -1}],
        [{"kind": "random"}],
    ),
    (("seed_cells",), [["zz"], "lstm", [1]], [[], ["gru", "mut1"]]),
    (("tasks", 1, "name"), ["nope", 5, None], ["xml"]),
    (("tasks", 1, "budget", "max_steps"), [0, -3, "many", 1.5], [1, 10]),
    (("tasks", 0, "threshold"), ["high", [0.1]], [0.1, 1]),
    (("budget", "max_architectures"), [0, -1, "x"], [1, 10**6]),
    (
        ("resources",),
        [{"gpus": 1.01}, {"cpus": -1}, {"gpus": -1}, {"ram": 3}],
        [{"gpus": 0.5, "cpus": 2}, {}],
    ),
    (("population",), ["on", -2, True, 1.5], ["off", False, "auto", 7]),
    (("sampler",), ["grid", 1], ["tpe"]),
    (("trials_per_task",), [0, -1, "x"], [1, 50]),
    (
        ("hparams",),
        [{"nope": 1}, {"learning_rate": -1}, {"num_layers": {"low": 3, "high": 1}}],
        [{"num_layers": 2}],
    ),
    (("surplus",), [1, "x"], []),
]


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


@st.composite
def job_dicts(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A job dict with some fields replaced by good or bad values, and the paths made bad."""
    data = copy.deepcopy(VALID)
    broken: list[str] = []
    for path, bad, good in FIELDS:
        choice = draw(st.sampled_from(["keep", "bad", "good"] if good else ["keep", "bad"]))
        if choice == "bad":
            _set(data, path, draw(st.sampled_from(bad)))
            broken.append(".".join(str(p) for p in path))
        elif choice == "good":
            _set(data, path, draw(st.sampled_from(good)))
    return data, broken


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job_dicts())
def test_random_job_dicts_validate_or_name_every_bad_field(case: tuple[dict[str, Any], list[str]]) -> None:
    data, broken = case
    try:
        spec = JobSpec.from_dict(data)
    except JobError as exc:
        assert broken, f"a valid job was refused: {exc}"
        for line in exc.errors:
            assert re.match(r"^[\w.\-()]+: \S", line), line
        for path in broken:
            assert any(line.split(": ", 1)[0].startswith(path) for line in exc.errors), (path, exc.errors)
    else:
        assert not broken, f"accepted a job with bad {broken}"
        assert spec.name == data["name"]
