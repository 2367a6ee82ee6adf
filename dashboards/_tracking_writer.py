"""The MLflow side of tracking: applies the tracker's queued operations to an MLflow store.

One :class:`MlflowWriter` per tracker, used by one thread at a time (the tracker's worker
thread, or :meth:`Tracker.sync <dashboards._tracking.Tracker.sync>`). It reads what to log
from the results database and links each run it creates there (:mod:`dashboards._links`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import Engine

from dashboards._experiment_view import JOB_NOTE, experiment_name, log_leaderboard, set_experiment_view
from dashboards._run_pages import NOTE_TAG, diagram_png, epoch_ms
from dashboards._tracking_ops import (
    JOB_RUN_STATUS,
    METRICS_PER_BATCH,
    PARAMS_PER_BATCH,
    ArchitectureDone,
    JobEnd,
    JobStart,
    Operation,
    ProgressSample,
    Sweep,
    Transient,
    artifact_location,
    first_line,
    is_transient,
)
from dashboards._tracking_payload import architecture_payload, flatten_params, metric_key
from search import JobState, ResultStore, job_tasks, use_fast_sqlite_commits

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)


class MlflowWriter:
    """The job's MLflow runs: the job's run, and beside it a run per finished architecture."""

    def __init__(self, tracking_uri: str, db_url: str, experiment: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.db_url = db_url
        self.experiment = experiment
        self._client: MlflowClient | None = None
        self._store: ResultStore | None = None
        self.job_id: int | None = None
        self.job_run_id: str | None = None
        """The MLflow run of the job, once created (or found)."""
        self._experiment_id: str | None = None
        self._job_meta: dict[str, str] = {}
        self._arch_runs: dict[int, str] = {}
        self._logged_scores: dict[int, tuple[float | None, float | None]] = {}
        """Architecture -> the (score, final score) this writer logged last."""
        self._updates: dict[int, int] = {}
        self.logged_architectures = 0
        """Architecture runs created so far."""

    def apply(self, op: Operation | list[ProgressSample]) -> None:
        """Apply one operation (a run of progress samples: one batch); an error worth a retry
        is raised as :class:`Transient`, with the steps done remembered on the operation."""
        try:
            if isinstance(op, JobStart):
                self._job_start(op)
            elif isinstance(op, ProgressSample | list):
                self._progress(op)
            elif isinstance(op, ArchitectureDone):
                self._architecture(op)
            elif isinstance(op, Sweep):
                self._sweep(op)
            else:
                self._job_end(op)
        except Transient:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise Transient(str(exc)) from exc
            raise

    def _mlflow(self) -> MlflowClient:
        if self._client is None:
            for name, value in (
                ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"),
                ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
            ):
                os.environ.setdefault(name, value)  # we retry ourselves, without blocking anyone
            from mlflow import MlflowClient

            from dashboards._store_lock import store_creation_lock

            with store_creation_lock(self.tracking_uri):  # a fresh store's tables: one job at a time
                self._client = MlflowClient(tracking_uri=self.tracking_uri)
            # MLflow's SQLite store fsyncs every commit: about 70 of the 90 ms its calls take
            # per architecture here. Its engine is MLflow's own attribute: skipped if it moves.
            store = getattr(getattr(self._client, "_tracking_client", None), "store", None)
            if isinstance(getattr(store, "engine", None), Engine):
                use_fast_sqlite_commits(store.engine)  # type: ignore[union-attr]
        return self._client

    def _results(self) -> ResultStore:
        if self._store is None:
            self._store = ResultStore.open(self.db_url, upgrade=False, create=False)
        return self._store

    def close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _job_start(self, op: JobStart) -> None:
        from dashboards._links import ensure_links_table, record_run, runs_of
        from dashboards._views import ensure_views

        store = self._results()
        job = store.get_job(op.job_id)
        if self.job_id != op.job_id:
            ensure_views(store.engine)
            ensure_links_table(store.engine)
            self.job_id = op.job_id
            self._job_meta = {
                "cellsearch.job_id": str(job.id),
                "cellsearch.job_name": job.name,
                "cellsearch.strategy": str(job.spec.get("strategy", {}).get("kind", "")),
                "cellsearch.results_db": store.url,
            }
            links = runs_of(store.engine, job_id=op.job_id, tracking_uri=self.tracking_uri)
            self._arch_runs = {r.arch_id: r.run_id for r in links if r.arch_id is not None}
            self._logged_scores = {}
            job_links = [r for r in links if r.arch_id is None]
            if job_links:
                self.job_run_id, self._experiment_id = job_links[-1].run_id, job_links[-1].experiment_id
            else:
                self.job_run_id = None
        client = self._mlflow()
        if self.job_run_id is not None:
            run = client.get_run(self.job_run_id)  # raises (dropped) if someone deleted it
            self._experiment_id = run.info.experiment_id
            if job.state == JobState.RUNNING and run.info.status != "RUNNING":
                client.update_run(self.job_run_id, status="RUNNING")  # a resumed job
            return
        self._experiment_id = self._experiment_for(experiment_name(self.experiment, job.name, job.id))
        set_experiment_view(client, self._experiment_id, job_tasks(store, job.id), job.id)
        run = client.create_run(
            self._experiment_id,
            start_time=epoch_ms(job.started_at or job.created_at),
            run_name=f"job-{job.id}",
            tags={**self._job_meta, "cellsearch.kind": "job", NOTE_TAG: JOB_NOTE},
        )
        self.job_run_id = run.info.run_id
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flatten_params(job.spec).items()]
        for start in range(0, len(params), PARAMS_PER_BATCH):
            client.log_batch(self.job_run_id, params=params[start : start + PARAMS_PER_BATCH])
        client.log_text(self.job_run_id, yaml.safe_dump(job.spec, sort_keys=False), "job.yaml")
        record_run(
            store.engine,
            self.tracking_uri,
            job_id=job.id,
            arch_id=None,
            experiment_id=self._experiment_id,
            run_id=self.job_run_id,
        )

    def _experiment_for(self, name: str) -> str:
        client = self._mlflow()
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        try:
            return str(client.create_experiment(name, artifact_location=artifact_location(self.tracking_uri)))
        except Exception as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_ALREADY_EXISTS":  # created meanwhile
                found = client.get_experiment_by_name(name)
                if found is not None:
                    return str(found.experiment_id)
            raise

    def _progress(self, op: ProgressSample | list[ProgressSample]) -> None:
        if self.job_run_id is None:
            return  # no job yet: nothing to attach the sample to
        from mlflow.entities import Metric

        samples = op if isinstance(op, list) else [op]
        metrics = [
            Metric(metric_key(name), value, sample.timestamp_ms, sample.step)
            for sample in samples
            for name, value in sample.metrics.items()
        ]
        for start in range(0, len(metrics), METRICS_PER_BATCH):
            self._mlflow().log_batch(self.job_run_id, metrics=metrics[start : start + METRICS_PER_BATCH])

    def _architecture(self, op: ArchitectureDone) -> None:
        if self.job_id is None or self.job_run_id is None:
            return
        from mlflow.entities import Metric, Param, RunTag

        from dashboards._links import record_run

        client = self._mlflow()
        if op.payload is None:
            op.payload = architecture_payload(self._results(), self.job_id, op.arch_id)
        payload = op.payload
        if payload is None:
            return  # not part of the job, or not finished
        now = int(time.time() * 1000)
        existing = self._arch_runs.get(op.arch_id)
        if existing is not None and op.run_id is None:
            # Logged before (by the sweep, or by an earlier run of a resumed job): only a score
            # changed since (a refinement, the final round) is worth new metric values, one step
            # further.
            if not self._changed(op.arch_id, existing, payload):
                self._logged_scores.setdefault(op.arch_id, payload["score"])
                return
            step = self._updates[op.arch_id] = self._updates.get(op.arch_id, 0) + 1
            metrics = [Metric(k, v, now, step) for k, v in payload["metrics"].items()]
            client.log_batch(
                existing, metrics=metrics, tags=[RunTag(k, v) for k, v in payload["tags"].items()]
            )
            self._logged_scores[op.arch_id] = payload["score"]
            return
        if op.run_id is None:
            tags = {
                **self._job_meta,
                **payload["tags"],
                NOTE_TAG: payload["description"],
                "cellsearch.job_run_id": self.job_run_id,
                "cellsearch.kind": "architecture",
            }
            assert self._experiment_id is not None
            run = client.create_run(
                self._experiment_id, start_time=payload["start_ms"], run_name=payload["run_name"], tags=tags
            )
            op.run_id = run.info.run_id
            record_run(
                self._results().engine,
                self.tracking_uri,
                job_id=self.job_id,
                arch_id=op.arch_id,
                experiment_id=self._experiment_id,
                run_id=op.run_id,
            )
            self._arch_runs[op.arch_id] = op.run_id
            self.logged_architectures += 1
        if not op.batch_done:
            params = [Param(k, v) for k, v in payload["params"].items()]
            at = payload["end_ms"] or now
            metrics = [Metric(k, v, at, 0) for k, v in payload["metrics"].items()]
            metrics += [
                Metric(k, v, at, step) for k, points in payload["curves"].items() for step, v in points
            ]
            metrics.append(Metric("train_seconds", payload["train_seconds"], at, 0))
            client.log_batch(op.run_id, metrics=metrics[:METRICS_PER_BATCH], params=params[:PARAMS_PER_BATCH])
            for start in range(PARAMS_PER_BATCH, len(params), PARAMS_PER_BATCH):
                client.log_batch(op.run_id, params=params[start : start + PARAMS_PER_BATCH])
            for start in range(METRICS_PER_BATCH, len(metrics), METRICS_PER_BATCH):
                client.log_batch(op.run_id, metrics=metrics[start : start + METRICS_PER_BATCH])
            op.batch_done = True
        if "cell.png" not in op.artifacts_done or set(payload["artifacts"]) - op.artifacts_done:
            self._artifacts(op, payload)
        client.set_terminated(op.run_id, status="FINISHED", end_time=payload["end_ms"])
        self._logged_scores[op.arch_id] = payload["score"]

    def _artifacts(self, op: ArchitectureDone, payload: dict[str, Any]) -> None:
        """The cell's JSON, equations, DOT and diagram, in one upload of a folder (a quarter
        of the store calls of one file each)."""
        assert op.run_id is not None
        artifacts = {k: v for k, v in payload["artifacts"].items() if k not in op.artifacts_done}
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            for file, text in artifacts.items():
                (folder / file).write_text(text, encoding="utf-8")
            if "cell.png" not in op.artifacts_done:
                try:
                    diagram_png(payload["graph"], folder)
                except Exception as exc:  # a drawing failure costs the picture, not the run
                    logger.info("no diagram for architecture %s: %s", op.arch_id, first_line(exc))
            if any(folder.iterdir()):
                self._mlflow().log_artifacts(op.run_id, str(folder))
        op.artifacts_done.update(artifacts, {"cell.png"})

    def _changed(self, arch_id: int, run_id: str, payload: dict[str, Any]) -> bool:
        """Whether a logged architecture's scores changed since: against what this writer logged,
        else (logged by an earlier process: a resumed job, ``sync-mlflow``) whether the run
        lacks the final round's score that the database has."""
        if arch_id in self._logged_scores:
            return self._logged_scores[arch_id] != payload["score"]
        final = payload["score"][1]
        return final is not None and self._mlflow().get_run(run_id).data.metrics.get("final_score") != final

    def _sweep(self, op: Sweep) -> None:
        if self.job_id is None or self.job_run_id is None:
            return
        if op.pending is None:
            rows = self._results().settled_scores(self.job_id)
            op.pending = [
                ArchitectureDone(arch_id)
                for arch_id, score in rows
                if arch_id not in self._arch_runs
                or (arch_id in self._logged_scores and self._logged_scores[arch_id] != score)
                or (arch_id not in self._logged_scores and score[1] is not None)  # see _changed
            ]
        while op.pending:
            self._architecture(op.pending[0])
            op.pending.pop(0)

    def _job_end(self, op: JobEnd) -> None:
        if self.job_id is None or self.job_run_id is None:
            return
        self._sweep(op.sweep)
        state = op.state or self._results().get_job(self.job_id).state
        if state not in JOB_RUN_STATUS and not op.close_running:
            return  # sync() of a job that is still running: its own tracker will close the run
        client = self._mlflow()
        if not op.table_done:
            log_leaderboard(client, self._results(), self.job_id, self.job_run_id)
            op.table_done = True
        client.set_tag(self.job_run_id, "cellsearch.job_state", state)
        finished = self._results().get_job(self.job_id).finished_at
        client.set_terminated(
            self.job_run_id, status=JOB_RUN_STATUS.get(state, "KILLED"), end_time=epoch_ms(finished)
        )
