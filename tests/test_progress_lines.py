"""Progress when the output is not a terminal: the plain lines of ``launch``/``resume``, their
interval, ``--progress-every``, and the libraries' start-up logs kept out unless ``--verbose``."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cellsearch._cli import app
from search._intervals import Interval
from search._library_logs import RAY_TOKEN_LOGGER, configure_library_logs, ray_logging
from search._progress import ProgressFeed
from search._progress_lines import ProgressLines, check_every, progress_line

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(
    r"\[(\d+):(\d\d):(\d\d)\] job (\d+) (\S[^:]*): architectures (\d+) proposed, (\d+) filtered, "
    r"(\d+) evaluated[^;]*; trials (\d+) done, (\d+) running[^;]*; best (.+)"
)
RAY_TOKEN_WARNING = "Token authentication is"
MLFLOW_TABLES = "Creating initial MLflow database tables"


def running_feed() -> ProgressFeed:
    feed = ProgressFeed(job_id=3, job_name="demo")
    feed.state_changed("running")
    for _ in range(4):
        feed.architecture_proposed()
    feed.architecture_done(5, "filtered", None)
    feed.architecture_done(6, "evaluated", 1.2)
    for key in ("a", "b", "c"):
        feed.trial_submitted(key)
    feed.trial_finished("a", "ok")
    feed.trial_finished("b", "pruned")
    return feed


# -- the line ----------------------------------------------------------------------------------


def test_a_line_says_the_clock_state_counts_and_best_with_its_interval() -> None:
    feed = running_feed()
    assert progress_line(feed, elapsed=3725.9) == (
        "[1:02:05] job 3 running: architectures 4 proposed, 1 filtered, 1 evaluated; "
        "trials 2 done, 1 running, 1 pruned; best none yet"
    )
    feed.new_best(6, 1.23076, "lstm", "h' = ...", interval=Interval(1.0, 1.28))
    line = progress_line(feed, elapsed=12.0)
    assert line.endswith("; best 1.2308 [1.000, 1.280] arch 6 (lstm)"), line
    match = LINE.fullmatch(line)
    assert match is not None and match.group(4, 5, 6, 7, 8, 9, 10) == (
        "3",
        "running",
        "4",
        "1",
        "1",
        "2",
        "1",
    )


def test_a_line_stays_one_line_and_short_with_a_long_mutation_and_no_interval() -> None:
    feed = running_feed()
    feed.architecture_done(7, "stopped", 0.5)
    feed.new_best(
        7, 0.5, "inserted node 'n10' =\nrelu(n_h) after 'n_h'; replaced node 'r_lin' by tanh(x)", ""
    )
    line = progress_line(feed, elapsed=0.0)
    assert "\n" not in line and "2 evaluated" not in line and "1 stopped at a threshold" in line
    best = line.split("; best ")[1]
    assert best.startswith("0.5000 arch 7 (inserted node 'n10' = relu(n_h) after") and best.endswith("…)")
    assert len(best) < 70, best


def test_the_line_counts_are_the_feeds_metrics() -> None:
    feed = running_feed()
    m = feed.metrics()
    match = LINE.fullmatch(progress_line(feed))
    assert match is not None
    assert [int(match.group(i)) for i in (6, 7, 8, 9, 10)] == [
        int(m[k])
        for k in (
            "architectures_proposed",
            "architectures_filtered",
            "architectures_evaluated",
            "trials_done",
            "trials_running",
        )
    ]


# -- the interval --------------------------------------------------------------------------------


def test_lines_fall_on_a_steady_grid_and_a_late_one_does_not_shift_the_next() -> None:
    out = io.StringIO()
    lines = ProgressLines(running_feed(), out, every=10, clock=lambda: 100.0)
    due = [t for t in (105, 109.99, 110, 111, 119, 120.5, 125, 147, 149, 150) if lines.poll(now=t)]
    # 110 and 120.5 are on the grid; 147 comes late (140 was missed) and the next is still 150.
    assert due == [110, 120.5, 147, 150]
    assert lines.lines == 4 and len(out.getvalue().splitlines()) == 4


def test_nothing_is_written_before_the_job_is_recorded() -> None:
    out = io.StringIO()
    feed = ProgressFeed(job_name="demo")
    lines = ProgressLines(feed, out, every=1, clock=lambda: 0.0)
    assert not lines.poll(now=1.5)  # Ray is starting, no job yet: the tick passes silently
    lines.final()
    assert out.getvalue() == ""
    feed.job_opened(1, "demo")
    assert lines.poll(now=2.0) and out.getvalue().startswith("[")


def test_the_thread_writes_at_its_interval_and_a_last_line_on_a_clean_exit() -> None:
    out = io.StringIO()
    feed = running_feed()
    with ProgressLines(feed, out, every=0.1):
        time.sleep(0.55)
        feed.state_changed("finished")
    written = out.getvalue().splitlines()
    assert 4 <= len(written) <= 7, written
    assert all(LINE.fullmatch(line) for line in written), written
    assert " finished: " in written[-1] and " running: " in written[0]


def test_no_last_line_after_an_error_and_none_at_all_when_disabled() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError), ProgressLines(running_feed(), out, every=3600):
        raise RuntimeError("refused")
    with ProgressLines(running_feed(), out, every=0.05, enabled=False):
        time.sleep(0.2)
    assert out.getvalue() == ""


def test_a_closed_stream_stops_the_lines_without_failing_the_job() -> None:
    out = io.StringIO()
    lines = ProgressLines(running_feed(), out, every=1, clock=lambda: 0.0)
    out.close()
    assert lines.poll(now=1.0) is False
    assert lines.enabled is False and lines.lines == 0


@pytest.mark.parametrize("value", [0.0, -1.0, 0.99, 3600.5, float("nan"), float("inf"), float("-inf")])
def test_check_every_refuses_values_outside_one_second_to_an_hour(value: float) -> None:
    problem = check_every(value)
    assert problem is not None and "from 1 to 3600" in problem


@pytest.mark.parametrize("value", [1.0, 2.5, 10.0, 3600.0])
def test_check_every_takes_values_from_one_second_to_an_hour(value: float) -> None:
    assert check_every(value) is None


# -- the option ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "3601", "nan", "inf", "abc", ""])
@pytest.mark.parametrize("command", ["launch", "resume"])
def test_progress_every_out_of_range_is_refused_in_one_line_writing_nothing(
    tmp_path: Path, command: str, value: str
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job()))
    target = [str(job)] if command == "launch" else ["1"]
    db = f"sqlite:///{tmp_path}/r.db"
    result = CliRunner().invoke(app, [command, *target, "--no-mlflow", "--db", db, "--progress-every", value])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "--progress-every" in lines[0] and "Traceback" not in result.output, lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]


# -- the libraries' logs ---------------------------------------------------------------------------


def test_library_loggers_are_held_at_warning_unless_verbose() -> None:
    names = ("mlflow.store", "alembic.runtime.migration", RAY_TOKEN_LOGGER)
    try:
        configure_library_logs(verbose=False, loggers=("mlflow.store",))
        store, token = logging.getLogger("mlflow.store"), logging.getLogger(RAY_TOKEN_LOGGER)
        assert not store.isEnabledFor(logging.INFO) and store.isEnabledFor(logging.WARNING)
        assert not token.isEnabledFor(logging.WARNING) and token.isEnabledFor(logging.ERROR)
        assert ray_logging() == {"log_to_driver": False, "logging_level": logging.WARNING}
        configure_library_logs(verbose=True, loggers=("mlflow.store",))
        assert all(logging.getLogger(name).level == logging.NOTSET for name in names)
        assert ray_logging() == {"log_to_driver": True, "logging_level": logging.INFO}
    finally:
        configure_library_logs()


# -- the real command, its output piped ------------------------------------------------------------


def tiny_job() -> dict[str, object]:
    """A fixed cell and its baseline on one cheap task, two trials each."""
    return {
        "name": "piped",
        "strategy": {"kind": "fixed", "cells": ["tanh"]},
        "seed_cells": [],
        "baselines": ["gru"],
        "tasks": [
            {
                "name": "memorize",
                "settings": {
                    "min_length": 2,
                    "max_length": 3,
                    "symbols": 4,
                    "valid_size": 32,
                    "test_size": 16,
                },
                "budget": {"max_steps": 60, "eval_every": 30, "eval_batch_size": 16},
            }
        ],
        "hparams": {"hidden_size": 8, "num_layers": 1, "batch_size": 8},
        "trials_per_task": 2,
        "resources": {"cpus": 1},
        "device": "cpu",
        "seed": 0,
    }


def launch_piped(folder: Path, *options: str) -> tuple[int, str]:
    """``cellsearch launch`` as a user runs it with ``2>&1 | tee``: one pipe for both streams,
    a local Ray of its own."""
    folder.mkdir()
    (folder / "job.yaml").write_text(yaml.safe_dump(tiny_job()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "CELLSEARCH_DB"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "cellsearch", "launch", "job.yaml", "--db", "sqlite:///r.db"]
    done = subprocess.run(
        [*command, "--mlflow", "sqlite:///mlflow.db", *options],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout


@pytest.mark.slow
def test_piped_launch_prints_progress_lines_then_the_table_and_no_library_logs(tmp_path: Path) -> None:
    code, out = launch_piped(tmp_path / "quiet", "--progress-every", "1")
    assert code == 0, out
    lines = out.splitlines()
    table = next(i for i, line in enumerate(lines) if "top architectures" in line)
    progress = [i for i, line in enumerate(lines) if LINE.fullmatch(line)]
    assert len(progress) >= 2 and max(progress) < table, out
    # Everything before the table is a progress line: cellsearch's own, nothing of Ray or MLflow.
    assert progress == list(range(table)), out
    last = LINE.fullmatch(lines[progress[-1]])
    assert last is not None and last.group(5) == "finished" and last.group(10) == "0", lines[progress[-1]]
    assert int(last.group(9)) == 4  # two trials of tanh, two of the baseline
    seconds = [
        int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) for m in map(LINE.fullmatch, lines[: table - 1]) if m
    ]
    assert seconds == sorted(seconds) and len(set(seconds)) == len(seconds), seconds  # one a second
    assert RAY_TOKEN_WARNING not in out and MLFLOW_TABLES not in out and "alembic" not in out.lower()
    assert "mlflow.store" not in out and "INFO" not in out, out

    code, verbose = launch_piped(tmp_path / "verbose", "--progress-every", "1", "--verbose")
    assert code == 0, verbose
    assert RAY_TOKEN_WARNING in verbose and MLFLOW_TABLES in verbose, verbose
    assert "Started a local Ray instance" in verbose
    assert any(LINE.fullmatch(line) for line in verbose.splitlines())
