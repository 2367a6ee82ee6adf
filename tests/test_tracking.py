"""MLflow tracking of a real job: what the store holds, and surviving a server outage.

A real job (Ray, training, the driver) runs once per session with a tracker following its
progress feed into a real MLflow server (``cellsearch dashboard`` on a SQLite store in the
test's folder). The server is stopped at the job's first finished trial and started again
on the same port and store after the job ends (see ``_dashboard_data.real_job``); the
tests read what MLflow then holds with ``MlflowClient``. Logging straight into a SQLite
store (no server) is checked by syncing the same job into a fresh one.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import time
import urllib.request
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from _dashboard_data import REAL_JOB_YAML, RealJob, build_synthetic, free_port, real_job
from _final_data import build_final_job, record_final_round
from typer.testing import CliRunner

from cells import CellGraph, canonical_hash, to_equations
from cellsearch._cli import app
from dashboards import Tracker, runs_of
from dashboards._tracking import flatten_params
from search import ResultStore, parameter_count
from search._jobspec import JobSpec

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> RealJob:
    return real_job(tmp_path_factory, pytestconfig)


@pytest.fixture(scope="module")
def client(real: RealJob) -> MlflowClient:
    return MlflowClient(tracking_uri=real.server.url)


def finished_architectures(db_url: str, job_id: int) -> dict[int, float | None]:
    """Architectures of the job whose evaluation is over, with their scores (from the database)."""
    with ResultStore.open(db_url, upgrade=False, create=False) as store:
        return {
            m.architecture_id: m.score
            for m in store.job_architectures(job_id)
            if m.evaluated or m.filter_passed is False or m.score is not None
        }


def job_and_children(client: MlflowClient, job_id: int) -> tuple[Any, list[Any]]:
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], f"tags.`cellsearch.job_id` = '{job_id}'"
    )
    [job_run] = [r for r in runs if r.data.tags.get("cellsearch.kind") == "job"]
    children = [r for r in runs if r.data.tags.get("cellsearch.job_run_id") == job_run.info.run_id]
    assert {r.info.experiment_id for r in children} <= {job_run.info.experiment_id}
    return job_run, children


# -- a real job tracked into a SQLite store --------------------------------------------------


def test_the_job_went_on_while_the_server_was_down(real: RealJob) -> None:
    assert real.stopped_mid_job
    assert real.state_before_restart == "finished"  # the search did not wait for MLflow
    assert real.pending_before_restart > 0  # finished architectures waited for the server
    assert sum("unreachable" in m for m in real.warnings) == 1, real.warnings  # once, not per retry
    assert sum("reachable again" in m for m in real.warnings) == 1, real.warnings
    assert not any("gave up" in m for m in real.warnings), real.warnings
    assert real.dropped == []


def test_job_run_holds_the_spec_and_progress_over_time(real: RealJob, client: MlflowClient) -> None:
    job_run, _ = job_and_children(client, real.job_id)
    assert job_run.info.status == "FINISHED"
    assert job_run.info.run_name == f"job-{real.job_id}"
    experiment = client.get_experiment(job_run.info.experiment_id)
    assert experiment.name == f"dash-real (job {real.job_id})"  # an experiment per job
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # not GenAI
    view = json.loads(experiment.tags["mlflow.sharedViewState.cellsearch"])
    assert view["orderByKey"] == "metrics.`score`" and view["orderByAsc"] is False
    assert {"metrics.`score`", "metrics.`memorize.relative`", "params.`parameter_count`"} <= set(
        view["selectedColumns"]
    )
    params = job_run.data.params
    assert params["strategy.kind"] == "jozefowicz"
    assert params["tasks.0.name"] == "memorize"
    assert params["budget.max_architectures"] == "2"
    spec = yaml.safe_load(Path(client.download_artifacts(job_run.info.run_id, "job.yaml")).read_text())
    assert JobSpec.from_dict(spec).to_dict() == JobSpec.from_yaml_text(REAL_JOB_YAML).to_dict()
    assert job_run.data.tags["cellsearch.job_state"] == "finished"

    with ResultStore.open(real.db_url, upgrade=False, create=False) as store:
        summary = store.job_summary(real.job_id)
    evaluated = client.get_metric_history(job_run.info.run_id, "architectures_evaluated")
    assert len(evaluated) >= 3  # sampled as the job went, not once at the end
    assert [m.value for m in evaluated] == sorted(m.value for m in evaluated)
    assert evaluated[-1].value == summary.architectures.evaluated - 1  # the baseline is not counted
    best = client.get_metric_history(job_run.info.run_id, "best_score")
    assert best[-1].value == pytest.approx(summary.best_score)
    assert client.get_metric_history(job_run.info.run_id, "trials_done")[-1].value == summary.trials.completed
    assert job_run.data.metrics["trials_per_minute"] > 0


def test_every_finished_architecture_is_a_top_level_run(real: RealJob, client: MlflowClient) -> None:
    finished = finished_architectures(real.db_url, real.job_id)
    _, children = job_and_children(client, real.job_id)
    assert real.dropped == []
    assert real.logged_architectures == len(finished) == len(children) >= 3  # GRU, tanh, mutants
    by_arch = {int(r.data.params["arch_id"]): r for r in children}
    assert set(by_arch) == set(finished)
    with ResultStore.open(real.db_url, upgrade=False, create=False) as store:
        for arch_id, run in by_arch.items():
            record = store.get_architecture(arch_id)
            member = store.job_architecture(real.job_id, arch_id)
            assert member is not None
            [evaluation] = store.evaluations(real.job_id, arch_id=arch_id)
            params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
            assert run.info.status == "FINISHED"
            assert "mlflow.parentRunId" not in tags  # a row of the runs table, nothing to expand
            assert params["canonical_hash"] == record.canonical_hash
            assert params["parent_id"] == ("" if record.parent_id is None else str(record.parent_id))
            assert params["mutation"] == (record.mutation or "")
            assert params["generation"] == str(member.generation)
            assert params["num_nodes"] == str(record.num_nodes)
            assert {k[4:]: int(v) for k, v in params.items() if k.startswith("ops.")} == record.op_counts
            # Counted at the job's hidden size, which the run names (the cell's layer at that size).
            hidden = int(params["parameter_hidden"])
            assert hidden == 16  # the real job's hparams
            assert int(params["parameter_count"]) == parameter_count(record.graph, hidden) > 0
            assert params["origin"].startswith("mutated: " if record.parent_id else "library cell ")
            assert metrics["memorize.best"] == pytest.approx(evaluation.best_value)
            assert metrics["memorize.relative"] == pytest.approx(evaluation.relative_score)
            assert metrics["score"] == pytest.approx(finished[arch_id])
            # One trial per task: nothing to resample, so no interval metrics.
            assert evaluation.best_interval is None and "memorize.best_low" not in metrics
            assert tags["cellsearch.job_id"] == str(real.job_id)
            assert tags["cellsearch.strategy"] == "jozefowicz"
            assert tags["cellsearch.library_name"] == (record.library_name or "")
            assert tags["cellsearch.outcome"] == "evaluated"
    assert {r.data.tags["cellsearch.library_name"] for r in children} >= {"gru", "tanh"}
    mutants = [r for r in children if r.data.params["mutation"]]
    assert mutants and all(r.data.params["parent_hash"] for r in mutants)


def test_architecture_artifacts(real: RealJob, client: MlflowClient, tmp_path: Path) -> None:
    _, children = job_and_children(client, real.job_id)
    for run in children:
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert names == {"cell.json", "equations.txt", "cell.dot", "cell.png"}
        folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id)))
        graph = CellGraph.from_json((folder / "cell.json").read_text())
        assert canonical_hash(graph) == run.data.params["canonical_hash"]
        assert (folder / "equations.txt").read_text() == to_equations(graph) + "\n"
        assert (folder / "cell.dot").read_text().startswith("digraph ")
        assert (folder / "cell.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # drawn without Graphviz


def test_architecture_pages_read_as_text_and_last_as_long_as_training(
    real: RealJob, client: MlflowClient
) -> None:
    """The description shows the equations as plain text (no LaTeX, nothing Markdown reads as
    a link), the curves are step metrics, and a run lasts from its first trial's start to its
    last trial's end."""
    _, children = job_and_children(client, real.job_id)
    with ResultStore.open(real.db_url, upgrade=False, create=False) as store:
        for run in children:
            arch_id = int(run.data.params["arch_id"])
            graph = CellGraph.parse(store.get_architecture(arch_id).graph)
            note = run.data.tags["mlflow.note.content"]
            assert note.startswith("```text\n" + to_equations(graph) + "\n```")  # line breaks kept
            assert "\\begin" not in note and "$$" not in note and "](" not in note
            [evaluation] = store.evaluations(real.job_id, arch_id=arch_id)
            trials = store.trials(evaluation_id=evaluation.id)
            for number, trial in enumerate(trials):
                history = client.get_metric_history(run.info.run_id, f"memorize.trial_{number}")
                assert [(m.step, m.value) for m in history] == [(s, pytest.approx(v)) for s, v in trial.curve]
            best = next(t for t in trials if t.id == evaluation.best_trial_id)
            curve = client.get_metric_history(run.info.run_id, "memorize.curve")
            assert [(m.step, m.value) for m in curve] == [(s, pytest.approx(v)) for s, v in best.curve]
            start = min(t.started_at for t in trials).replace(tzinfo=UTC).timestamp() * 1000
            end = max(t.finished_at for t in trials).replace(tzinfo=UTC).timestamp() * 1000
            assert run.info.start_time == pytest.approx(start, abs=2)
            assert run.info.end_time == pytest.approx(end, abs=2)
            assert run.data.metrics["train_seconds"] == pytest.approx(sum(t.seconds for t in trials))


def test_job_run_holds_the_leaderboard_table(real: RealJob, client: MlflowClient, tmp_path: Path) -> None:
    job_run, _ = job_and_children(client, real.job_id)
    path = Path(client.download_artifacts(job_run.info.run_id, "leaderboard.json", str(tmp_path)))
    table = json.loads(path.read_text())  # MLflow's table format: columns and rows
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    result = CliRunner().invoke(
        app, ["results", "top", "--job", str(real.job_id), "-f", "json", "--db", real.db_url]
    )
    top = json.loads(result.stdout)
    assert [r["architecture"].split("-")[1] for r in rows][: len(top)] == [str(t["arch_id"]) for t in top]
    assert [r["score"] for r in rows][: len(top)] == [pytest.approx(t["score"]) for t in top]
    assert rows[0]["memorize.relative"] == pytest.approx(top[0]["per_task"]["memorize"]["relative"])


def test_results_show_links_the_run(real: RealJob) -> None:
    links = runs_of(sa.create_engine(real.db_url), job_id=real.job_id, tracking_uri=real.server.url)
    arch_link = next(link for link in links if link.arch_id is not None)
    result = CliRunner().invoke(
        app, ["results", "show", str(arch_link.arch_id), "--db", real.db_url], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.stderr
    url = f"{real.server.url}/#/experiments/{arch_link.experiment_id}/runs/{arch_link.run_id}"
    assert url in result.stdout
    with urllib.request.urlopen(url.split("#")[0], timeout=30) as page:  # the server answers there
        assert page.status == 200


def test_sync_into_a_sqlite_store_logs_what_is_missing_and_only_that(real: RealJob, tmp_path: Path) -> None:
    """The results database is the source of truth: a fresh store gets the whole job, its
    artifacts in ``mlartifacts`` beside the store's file."""
    db = tmp_path / "results.db"
    shutil.copy(real.db_url.removeprefix("sqlite:///"), db)  # the shared job's database stays as it is
    db_url = f"sqlite:///{db}"
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = CliRunner().invoke(
        app, ["results", "sync-mlflow", "--job", str(real.job_id), "--mlflow", uri, "--db", db_url]
    )
    assert result.exit_code == 0, result.stderr
    finished = finished_architectures(db_url, real.job_id)
    assert f"{len(finished)} architecture runs logged" in result.stdout
    fresh = MlflowClient(tracking_uri=uri)
    job_run, children = job_and_children(fresh, real.job_id)
    assert job_run.info.status == "FINISHED"
    location = fresh.get_experiment(job_run.info.experiment_id).artifact_location
    assert location == (tmp_path / "mlartifacts").as_uri()
    assert sorted(int(r.data.params["arch_id"]) for r in children) == sorted(finished)
    cell = Path(fresh.download_artifacts(children[0].info.run_id, "cell.json", str(tmp_path)))
    assert canonical_hash(CellGraph.from_json(cell.read_text())) == children[0].data.params["canonical_hash"]
    again = Tracker(uri, db_url)
    assert again.sync(real.job_id) == 0  # every architecture has its run already
    assert len(job_and_children(fresh, real.job_id)[1]) == len(finished)
    # The store was written with WAL journaling (no fsync per commit; the UI reads meanwhile).
    with sqlite3.connect(tmp_path / "fresh.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# -- the tracker on a hand-made database -----------------------------------------------------


def test_outcomes_and_missing_metrics(tmp_path: Path) -> None:
    data = build_synthetic(f"sqlite:///{tmp_path / 'results.db'}")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert Tracker(uri, data.url).sync(data.search_job) == 7
    job_run, children = job_and_children(MlflowClient(tracking_uri=uri), data.search_job)
    by_id = {int(r.data.params["arch_id"]): r for r in children}
    filtered = by_id[data.ids["filtered"]]
    assert filtered.data.tags["cellsearch.outcome"] == "filtered"
    assert "score" not in filtered.data.metrics and "arith.best" not in filtered.data.metrics
    assert by_id[data.ids["stopped"]].data.tags["cellsearch.outcome"] == "stopped"  # never reached xml
    child = by_id[data.ids["child"]].data.metrics
    assert child["xml-small.relative"] == pytest.approx(1.2)
    # The intervals are metrics of the architecture's run, where there are intervals.
    assert (child["score_low"], child["score_high"]) == (1.02, 1.16)
    assert (child["arith.best_low"], child["arith.best_high"]) == (0.85, 0.88)
    assert (child["xml-small.relative_low"], child["xml-small.relative_high"]) == (1.1, 1.3)
    gru = by_id[data.ids["gru"]].data.metrics
    assert "score" in gru and "score_low" not in gru and "arith.relative_low" not in gru
    assert by_id[data.ids["grandchild"]].data.params["parent_id"] == str(data.ids["child"])
    assert job_run.data.tags["cellsearch.job_state"] == "finished"


def test_close_gives_up_in_bounded_time_when_the_server_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens on the port: a real connection refusal, not a simulated one."""
    data = build_synthetic(f"sqlite:///{tmp_path / 'results.db'}")
    tracker = Tracker(f"http://127.0.0.1:{free_port()}", data.url, retry_initial=0.2, retry_max=0.5)
    caplog.set_level(logging.WARNING, logger="dashboards._tracking")
    start = time.monotonic()
    tracker.on_job_start(data.search_job)
    tracker.on_architecture_done(data.ids["child"])
    tracker.on_job_end("finished")
    assert tracker.close(timeout=3) is False
    assert time.monotonic() - start < 30
    assert tracker.pending == 3  # nothing was lost: all three wait for the server
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 1, messages
    assert any(f"sync-mlflow --job {data.search_job}" in m for m in messages), messages


def test_flatten_params_cuts_to_mlflow_limits() -> None:
    long = "x" * 7000
    params = flatten_params({"a": {"b": [1, {"c": long}], "empty": [], "none": None}, "k" * 300: 1})
    assert params["a.b.0"] == "1"
    assert len(params["a.b.1.c"]) == 6000 and params["a.b.1.c"].endswith("...[cut]")
    assert params["a.empty"] == "[]" and params["a.none"] == ""
    assert max(len(k) for k in params) == 250


def _final_values(client: MlflowClient, job_id: int, ids: dict[str, int]) -> dict[str, Any]:
    _, children = job_and_children(client, job_id)
    by_name = {v: k for k, v in ids.items()}
    return {by_name[int(r.data.params["arch_id"])]: r.data for r in children}


def test_the_final_round_reaches_the_architecture_runs(tmp_path: Path) -> None:
    """The final round is written after its cells' runs were logged: the tracker's end sweep
    (the same writer) and a later ``sync-mlflow`` (a fresh one) both log its values."""
    data = build_final_job(f"sqlite:///{tmp_path / 'results.db'}", with_final=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, data.url)
    assert tracker.sync(data.job) == 4
    client = MlflowClient(tracking_uri=uri)
    assert "final_score" not in _final_values(client, data.job, data.ids)["lstm"].metrics
    record_final_round(data)
    assert tracker.sync(data.job) == 0  # the runs are there: only their values change
    runs = _final_values(client, data.job, data.ids)
    lstm = runs["lstm"]
    assert (lstm.metrics["final_score"], lstm.metrics["final_low"], lstm.metrics["final_high"]) == (
        0.9,
        0.85,
        0.95,
    )
    assert lstm.metrics["arith.final.mean"] == 0.55 and lstm.metrics["arith.final.p_value"] == 0.003
    assert lstm.metrics["xml.final.p_value"] == 0.0004
    assert (lstm.tags["arith.final.verdict"], lstm.tags["xml.final.verdict"]) == ("better", "worse")
    assert lstm.metrics["score"] == 1.2  # the search's score stays
    assert "arith.final.verdict" not in runs["gru"].tags and runs["gru"].metrics["final_score"] == 1.0
    assert "final_score" not in runs["tanh"].metrics  # the round did not take it

    # A fresh writer (``sync-mlflow`` after an outage) finds runs without the final values.
    fresh = build_final_job(f"sqlite:///{tmp_path / 'results2.db'}", with_final=False)
    uri2 = f"sqlite:///{tmp_path / 'mlflow2.db'}"
    assert Tracker(uri2, fresh.url).sync(fresh.job) == 4
    record_final_round(fresh)
    result = CliRunner().invoke(
        app, ["results", "sync-mlflow", "--job", str(fresh.job), "--mlflow", uri2, "--db", fresh.url]
    )
    assert result.exit_code == 0, result.stderr
    client2 = MlflowClient(tracking_uri=uri2)
    mut1 = _final_values(client2, fresh.job, fresh.ids)["mut1"]
    assert mut1.metrics["final_score"] == 1.02 and mut1.tags["xml.final.verdict"] == "better"
    assert Tracker(uri2, fresh.url).sync(fresh.job) == 0
    [steps] = {
        len(client2.get_metric_history(r.info.run_id, "final_score"))
        for r in job_and_children(client2, fresh.job)[1]
        if "final_score" in r.data.metrics
    }
    assert steps == 1  # logged once: a second sync finds the values there
