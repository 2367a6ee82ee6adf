"""``cellsearch cells eval``: a small local study, its json and table output, and clear errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from workers._cli import eval_cell

# The command on a group of its own, as ``cellsearch cells`` mounts it.
cells_group = typer.Typer()
cells_group.command("eval")(eval_cell)
app = typer.Typer()
app.add_typer(cells_group, name="cells")

MEMORIZE = ["--task", "memorize", "--task-setting", "max_length=5", "--task-setting", "valid_size=100"]
FAST = ["--budget-steps", "4", "--eval-every", "2", "--device", "cpu"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text("num_layers: 1\nhidden_size: [8, 16]\ndropout: 0.0\n")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["cells", "eval", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_output_has_the_best_trial_and_every_trial(space_file: Path) -> None:
    code, out, _ = run(
        "tanh", *MEMORIZE, *FAST, "--trials", "3", "--space", str(space_file), "--format", "json"
    )
    assert code == 0, out
    report = json.loads(out)
    assert report["cell"] == "tanh" and report["task"] == "memorize"
    assert report["metric"] == "accuracy" and report["direction"] == "maximize"
    assert len(report["trials"]) == 3
    for trial in report["trials"]:
        assert trial["status"] == "ok" and 0.0 <= trial["value"] <= 1.0
        assert trial["hparams"]["hidden_size"] in (8, 16) and trial["hparams"]["num_layers"] == 1
    assert [t["hparams"]["seed"] for t in report["trials"]] == [0, 1, 2]
    best = report["best"]
    assert best["value"] == max(t["value"] for t in report["trials"])
    assert best["metrics"]["accuracy"] == best["value"]
    assert best["hparams"] == report["trials"][best["number"]]["hparams"]


def test_same_seed_same_study(space_file: Path) -> None:
    args = (
        "gru",
        *MEMORIZE,
        *FAST,
        "--trials",
        "2",
        "--space",
        str(space_file),
        "--format",
        "json",
        "--seed",
        "4",
    )
    first, second = (json.loads(run(*args)[1])["trials"] for _ in range(2))
    for trial in (*first, *second):
        del trial["seconds"]
    assert first == second and first[0]["hparams"]["seed"] == 4


def test_table_output(space_file: Path) -> None:
    code, out, _ = run(
        "lstm", *MEMORIZE, *FAST, "--trials", "2", "--space", str(space_file), "--sampler", "tpe"
    )
    assert code == 0, out
    assert "lstm on memorize" in out and "best: trial" in out and "hparams:" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["no-such-cell", "--task", "memorize"], 1, "'no-such-cell' is neither a library cell"),
        (["lstm", "--task", "no-such-task"], 2, "--task: unknown task 'no-such-task'"),
        (["lstm", "--task", "memorize", "--task-setting", "max_length"], 2, "expected KEY=VALUE"),
        (["lstm", "--task", "memorize", "--task-setting", "symbols=1"], 2, "symbols"),
    ],
)
def test_clear_errors(args: list[str], code: int, message: str) -> None:
    exit_code, _, err = run(*args)
    assert exit_code == code and message in err, err


def test_bad_space_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("num_layers: {low: 1, high: 7}\n")
    code, _, err = run("lstm", *MEMORIZE, "--space", str(path))
    assert code == 2 and "--space" in err and "'num_layers'" in err, err


def test_all_trials_failing_exits_nonzero(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("hidden_size: null\nparam_budget: 10\n")  # below the smallest model
    code, out, err = run("tanh", *MEMORIZE, *FAST, "--trials", "1", "--space", str(path), "--format", "json")
    assert code == 1 and "no trial of tanh on memorize completed" in err
    report = json.loads(out)
    assert report["best"] is None and report["trials"][0]["status"] == "failed"
    assert "param_budget 10" in report["trials"][0]["error"]


def test_the_cellsearch_app_mounts_the_command() -> None:
    from cellsearch._cli import app as cellsearch

    result = CliRunner().invoke(cellsearch, ["cells", "eval", "--help"])
    assert result.exit_code == 0 and "--budget-seconds" in result.stdout


def test_each_trial_prints_a_line_as_it_starts_and_as_it_ends(space_file: Path) -> None:
    code, out, err = run(
        "tanh", *MEMORIZE, *FAST, "--trials", "3", "--space", str(space_file), "--format", "json"
    )
    assert code == 0, err
    trials = json.loads(out)["trials"]  # the lines go to stderr: stdout stays one JSON document
    lines = [line for line in err.splitlines() if "] trial " in line]
    assert len(lines) == 6, err
    best = None
    for number, trial in enumerate(trials):
        started, ended = lines[2 * number], lines[2 * number + 1]
        assert re.fullmatch(rf"\[0:\d\d:\d\d\] trial {number} \({number + 1} of 3\) started: .*", started)
        assert f"hidden {trial['hparams']['hidden_size']}" in started and "layers 1" in started
        best = trial["value"] if best is None else max(best, trial["value"])
        assert re.fullmatch(
            rf"\[0:\d\d:\d\d\] trial {number} \({number + 1} of 3\) ok: accuracy {trial['value']:.4g} "
            rf"after 4 steps in \d+\.\d s; best {best:.4g}",
            ended,
        ), ended


def test_a_failed_trial_says_why_in_its_line(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("hidden_size: null\nparam_budget: 10\n")
    code, _, err = run("tanh", *MEMORIZE, *FAST, "--trials", "1", "--space", str(path))
    assert code == 1
    ended = [line for line in err.splitlines() if "trial 0 (1 of 1) failed:" in line]
    assert len(ended) == 1 and "param_budget 10" in ended[0] and ended[0].endswith("best -"), err


def test_the_defaults_are_a_trial_of_the_quickstart_job() -> None:
    from search import load_job
    from workers._cli import DEFAULT_EVAL_EVERY, DEFAULT_SPACE, DEFAULT_STEPS, DEFAULT_TRIALS

    quickstart = load_job(Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml")
    arith = quickstart.task("arith")
    assert (arith.budget.max_steps, arith.budget.eval_every) == (DEFAULT_STEPS, DEFAULT_EVAL_EVERY)
    assert quickstart.trials_per_task == DEFAULT_TRIALS
    for name, value in DEFAULT_SPACE.items():
        assert quickstart.hparams[name] == value, name
    # ... and a run with no options but a short budget trains that model, twice.
    code, out, _ = run("tanh", *MEMORIZE, "--budget-steps", "2", "--device", "cpu", "--format", "json")
    assert code == 0, out
    trials = json.loads(out)["trials"]
    assert len(trials) == DEFAULT_TRIALS
    for trial in trials:
        assert {k: trial["hparams"][k] for k in DEFAULT_SPACE} == DEFAULT_SPACE
    help_text = " ".join(CliRunner().invoke(app, ["cells", "eval", "--help"]).stdout.split())
    for words in ("2 trials of 200 steps", "every 100", "32 hidden units"):
        assert words in help_text.replace("│", "").replace("  ", " "), words
