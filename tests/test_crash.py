"""`cellsearch launch` killed (SIGKILL) or interrupted (SIGINT) mid-job, then `cellsearch resume`.

The CLI runs in subprocesses against one Ray head node started for the module (``ray start
--head`` with token authentication, as a cluster runs it), so a killed driver leaves nothing
behind but its database rows. The test reads the SQLite file while the job writes it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from _ray_head import RayHead, ray_head_node
from _ray_head import cellsearch as _cellsearch
from _ray_head import count as _count
from _ray_head import finish as _finish
from _ray_head import kill_group as _kill_group
from _ray_head import rows as _rows
from _ray_head import wait_for as _wait_for
from optuna.trial import TrialState

JOB = """\
name: crash-test
strategy: {kind: jozefowicz, top_k: 4, p_refine: 0.0}
seed_cells: [lstm]
baselines: [gru]
tasks:
  - name: memorize
    settings: {min_length: 3, max_length: 5, symbols: 4, valid_size: 32, test_size: 32}
    budget: {max_steps: 100000, max_seconds: %(seconds)s, eval_every: 20, eval_batch_size: 32}
trials_per_task: 2
hparams: {hidden_size: 16, num_layers: 1, batch_size: 16}
budget: {max_architectures: 3}
resources: {cpus: 1, max_in_flight: 2}
device: cpu
seed: 5
"""


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    with ray_head_node() as head:
        yield head


def _check_finished(db: Path, url: str) -> None:
    """The resumed job finished: each evaluation ran exactly its trials, each architecture once."""
    assert _rows(db, "SELECT state FROM cs_jobs") == [("finished",)]
    assert _rows(db, "SELECT count(*) FROM cs_trials WHERE status = 'running'") == [(0,)]
    members = _rows(
        db,
        "SELECT a.canonical_hash FROM cs_job_architectures ja "
        "JOIN cs_architectures a ON a.id = ja.architecture_id",
    )
    assert len(members) == len({h for (h,) in members}) == 4  # gru, lstm and two mutants, each once
    finished = _rows(
        db,
        "SELECT evaluation_id, optuna_trial_number FROM cs_trials "
        "WHERE status IN ('ok', 'pruned', 'failed', 'diverged')",
    )
    per_evaluation = Counter(e for e, _ in finished)
    evaluations = _rows(db, "SELECT id FROM cs_evaluations")
    assert evaluations and all(per_evaluation[e] == 2 for (e,) in evaluations)  # trials_per_task, no more
    assert len(set(finished)) == len(finished)  # no Optuna trial finished twice
    for summary in optuna.get_all_study_summaries(storage=url):
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        assert TrialState.RUNNING not in [t.state for t in study.trials]
        assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 2


def test_sigkill_mid_job_then_resume_loses_and_repeats_nothing(ray_head: RayHead, tmp_path: Path) -> None:
    db, log = tmp_path / "results.db", tmp_path / "cellsearch.log"
    url = f"sqlite:///{db}"
    (tmp_path / "job.yaml").write_text(JOB % {"seconds": 1.0})
    common = ["--db", url, "--ray-address", ray_head.address]
    launch = _cellsearch(["launch", "job.yaml", *common], ray_head.env, tmp_path, log)
    try:
        _wait_for(
            lambda: _count(db, "ok") >= 3,
            launch,
            log,
            "three trials were committed",
        )
    finally:
        _kill_group(launch)  # SIGKILL: no handler runs, nothing is cleaned up
    assert launch.returncode == -signal.SIGKILL
    done_before = _rows(
        db, "SELECT id, evaluation_id, optuna_trial_number, value FROM cs_trials WHERE status = 'ok'"
    )
    left_running = _rows(db, "SELECT id FROM cs_trials WHERE status = 'running'")
    assert _rows(db, "SELECT state FROM cs_jobs") == [("running",)]

    resume = _cellsearch(["resume", "1", *common], ray_head.env, tmp_path, log)
    assert _finish(resume, log) == 0, log.read_text()[-4000:]

    _check_finished(db, url)
    after = {
        row[0]: row
        for row in _rows(
            db, "SELECT id, evaluation_id, optuna_trial_number, value FROM cs_trials WHERE status = 'ok'"
        )
    }
    for row in done_before:  # every trial finished before the kill is still there, unchanged
        assert after[row[0]] == row
    for (trial_id,) in left_running:  # what ran at the kill is recorded interrupted and was run again
        assert _rows(db, f"SELECT status FROM cs_trials WHERE id = {trial_id}") == [("interrupted",)]


_STARTED_AFTER_A_RESULT = (
    "SELECT count(*) FROM cs_trials WHERE status = 'running' "
    "AND started_at > (SELECT max(finished_at) FROM cs_trials WHERE status = 'ok')"
)


def test_ctrl_c_interrupts_cleanly_with_exit_130_then_resume_finishes(
    ray_head: RayHead, tmp_path: Path
) -> None:
    db, log = tmp_path / "results.db", tmp_path / "cellsearch.log"
    url = f"sqlite:///{db}"
    # Trials of 5 s, and the signal is sent once a trial started after the first result came back:
    # that one is still running when the signal lands, even on a busy machine (the driver handles it
    # within its 1 s poll), where one started beside the first may finish just before it.
    (tmp_path / "job.yaml").write_text(JOB % {"seconds": 5.0})
    launch = _cellsearch(
        ["launch", "job.yaml", "--db", url, "--ray-address", ray_head.address], ray_head.env, tmp_path, log
    )

    try:
        _wait_for(
            lambda: _rows(db, _STARTED_AFTER_A_RESULT) not in ([], [(0,)]),
            launch,
            log,
            "a trial was done and another, started after it, running",
        )
        os.killpg(launch.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        code = _finish(launch, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launch.pid, signal.SIGKILL)
    assert code == 130, log.read_text()[-4000:]
    assert "cellsearch resume 1" in log.read_text()
    assert _rows(db, "SELECT state FROM cs_jobs") == [("interrupted",)]
    assert _rows(db, "SELECT count(*) FROM cs_trials WHERE status = 'running'") == [(0,)]
    interrupted = _rows(db, "SELECT error FROM cs_trials WHERE status = 'interrupted'")
    assert interrupted and all("SIGINT" in error for (error,) in interrupted)
    # The interrupted trials' Optuna trials stay open: the resume trains them again under the
    # same numbers (and tells them then: _check_finished finds none left running).
    interrupted_numbers = set(
        _rows(db, "SELECT study_name, optuna_trial_number FROM cs_trials WHERE status = 'interrupted'")
    )
    still_open = set()
    for summary in optuna.get_all_study_summaries(storage=url):
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        still_open |= {(study.study_name, t.number) for t in study.trials if t.state == TrialState.RUNNING}
    # ... and so do those of trials that finished while an older launch still ran: their results
    # are stored, and reach the study in their launch's turn (on resume).
    finished_numbers = set(
        _rows(db, "SELECT study_name, optuna_trial_number FROM cs_trials WHERE status IN ('ok', 'pruned')")
    )
    assert interrupted_numbers <= still_open <= interrupted_numbers | finished_numbers

    # Resumed without --ray-address: on a local Ray instance of its own, as on a laptop.
    env = {k: v for k, v in ray_head.env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    resume = _cellsearch(["resume", "1", "--db", url], env, tmp_path, log)
    try:
        assert _finish(resume, log) == 0, log.read_text()[-4000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(resume.pid, signal.SIGKILL)  # a local Ray instance's helpers, if any linger
    _check_finished(db, url)


def test_a_running_job_cannot_be_resumed_a_second_time(ray_head: RayHead, tmp_path: Path) -> None:
    db, log = tmp_path / "results.db", tmp_path / "cellsearch.log"
    url = f"sqlite:///{db}"
    (tmp_path / "job.yaml").write_text(JOB % {"seconds": 60.0})  # trials that outlast the test
    common = ["--db", url, "--ray-address", ray_head.address]
    launch = _cellsearch(["launch", "job.yaml", *common], ray_head.env, tmp_path, log)
    try:
        _wait_for(lambda: _count(db, "running") >= 1, launch, log, "a trial was running")
        running = _rows(db, "SELECT id FROM cs_trials WHERE status = 'running'")
        refused_log = tmp_path / "refused.log"
        refused = _cellsearch(["resume", "1", *common], ray_head.env, tmp_path, refused_log)
        assert _finish(refused, refused_log) == 1, refused_log.read_text()[-4000:]
        assert "job 1 is running in another process" in refused_log.read_text()
        # The live job is untouched: still running, and so are its trials.
        assert launch.poll() is None
        assert _rows(db, "SELECT state FROM cs_jobs") == [("running",)]
        assert _rows(db, "SELECT count(*) FROM cs_trials WHERE status = 'interrupted'") == [(0,)]
        still_running = set(_rows(db, "SELECT id FROM cs_trials WHERE status = 'running'"))
        assert set(running) <= still_running
    finally:
        _kill_group(launch)
    # Once its driver is gone (killed), the job can be resumed: the lock died with it.
    resume = _cellsearch(["resume", "1", *common], ray_head.env, tmp_path, log)
    try:
        _wait_for(lambda: _count(db, "interrupted") >= 1, resume, log, "the resumed job took over")
    finally:
        _kill_group(resume)
