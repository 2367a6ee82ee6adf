"""MLflow tracking of jobs: a parent run per job, a nested run per finished architecture.

The :class:`Tracker` never holds up the search. The driver (or a progress feed it
follows) only puts small records on a queue; a background thread reads the details from
the results database and logs them with ``MlflowClient.log_batch``. When the MLflow store
is unreachable the thread warns once, keeps the queue, retries with backoff and catches
up when the store is back; :meth:`Tracker.close` waits a bounded time for the backlog.
The results database is the source of truth: whatever could not be logged can be logged
later with :meth:`Tracker.sync` (``cellsearch results sync-mlflow``).

Wiring it to a job (what ``cellsearch launch`` does)::

    feed = ProgressFeed()
    with track_job(settings, feed):
        run_job(spec, settings, progress=feed)

The tracker follows the feed: it opens the job's run when ``feed.job_id`` is set, samples
``feed.metrics()`` (the counts the terminal display shows) as progress metrics, logs an
architecture when the feed reports it done, sweeps the database for finished
architectures the feed does not report (baselines, refinements), and closes the job's
run with the job's final state. A driver without a feed can call the ``on_*`` hooks.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> tracker = Tracker(f"sqlite:///{folder}/mlflow.db", f"sqlite:///{folder}/results.db")
    >>> tracker.close(timeout=5)  # nothing was tracked: nothing to wait for
    True
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import Engine, or_, select

from search import ResultStore, use_fast_sqlite_commits
from search._schema import JobArchitecture
from search._settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from search._progress import ProgressFeed

logger = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000
"""MLflow's limit on a parameter's value (longer values are cut, with a marker)."""
MAX_KEY_LENGTH = 250
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000

JOB_RUN_STATUS = {
    "finished": "FINISHED",
    "failed": "FAILED",
    "interrupted": "KILLED",
    "stopped": "KILLED",
}
"""Job state -> MLflow run status (a job still ``running`` when the tracker closes: FAILED)."""

_TRANSIENT_CODES = frozenset(
    {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED", "IO_ERROR"}
)


class _Transient(Exception):
    """Wraps an error worth retrying (the store is down, slow or busy)."""


# -- operations on the queue -----------------------------------------------------------------
# Each is applied by the worker thread and may be retried after a transient error: steps
# that succeeded are remembered on the operation, so a retry continues where it stopped.


@dataclass
class _JobStart:
    job_id: int


@dataclass
class _Progress:
    metrics: dict[str, float]
    step: int
    timestamp_ms: int


@dataclass
class _ArchitectureDone:
    arch_id: int
    payload: dict[str, Any] | None = None
    run_id: str | None = None
    batch_done: bool = False
    artifacts_done: set[str] = field(default_factory=set)


@dataclass
class _Sweep:
    """Log every finished architecture of the job that has no run yet (or a changed score)."""

    pending: list[_ArchitectureDone] | None = None


@dataclass
class _JobEnd:
    state: str | None
    close_running: bool = True
    """Close the job's run even if the job is not over (the tracker is closing)."""
    sweep: _Sweep = field(default_factory=_Sweep)


_Operation = _JobStart | _Progress | _ArchitectureDone | _Sweep | _JobEnd


class Tracker:
    """Logs jobs to an MLflow tracking store from a background thread.

    ``tracking_uri``: the MLflow store (``sqlite:///mlflow.db``, ``http://host:5000``).
    ``db_url``: the results database the job writes (read here, on its own connection;
    a file or server, not an in-memory database). ``experiment``: the MLflow experiment
    (default: the job's name). ``progress_interval``: seconds between progress samples.
    ``flush_timeout``: how long :meth:`close` waits for the backlog by default.
    ``retry_initial`` / ``retry_max``: the backoff between retries when the store fails.

    The tracker retries on its own, so it sets MLflow's HTTP retries low for the process
    (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=1``, ``MLFLOW_HTTP_REQUEST_TIMEOUT=30``) unless the
    environment sets them.
    """

    def __init__(
        self,
        tracking_uri: str,
        db_url: str,
        *,
        experiment: str | None = None,
        progress_interval: float = 10.0,
        flush_timeout: float = 60.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.db_url = db_url
        self.experiment = experiment
        self.progress_interval = progress_interval
        self.flush_timeout = flush_timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._queue: deque[_Operation] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._give_up_at = float("inf")
        self._feed: ProgressFeed | None = None
        self._feed_job_queued = False
        self._ended = False
        # Owned by the worker thread (or by sync() when no thread runs):
        self._client: MlflowClient | None = None
        self._store: ResultStore | None = None
        self._job_id: int | None = None
        self._job_run_id: str | None = None
        self._experiment_id: str | None = None
        self._job_meta: dict[str, str] = {}
        self._arch_runs: dict[int, str] = {}
        self._logged_scores: dict[int, float | None] = {}
        self._updates: dict[int, int] = {}
        self._outage_since: float | None = None
        self._last_sample = 0.0
        self._sample_step = 0
        self.logged_architectures = 0
        """Architecture runs created so far (for reports and tests)."""
        self.dropped: list[str] = []
        """Operations given up on (the store refused them): one line each."""

    @property
    def pending(self) -> int:
        """Operations waiting to be logged (the backlog while the store is unreachable)."""
        with self._cond:
            return len(self._queue)

    @property
    def job_run_id(self) -> str | None:
        """The MLflow run of the job, once created."""
        return self._job_run_id

    # -- hooks: any thread, never blocking -----------------------------------------------

    def follow(self, feed: ProgressFeed) -> None:
        """Track the job that ``feed`` reports (see the module docstring)."""
        self._feed = feed
        feed.subscribe(self._on_feed_event)
        self._start()

    def on_job_start(self, job_id: int) -> None:
        self._put(_JobStart(job_id))

    def on_progress(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Progress metrics (a :meth:`ProgressFeed.metrics` snapshot) at ``step`` (default:
        architectures finished so far)."""
        values = {k: float(v) for k, v in metrics.items()}
        if step is None:
            step = int(
                values.get("architectures_evaluated", 0)
                + values.get("architectures_filtered", 0)
                + values.get("architectures_stopped", 0)
            )
        self._put(_Progress(values, step, int(time.time() * 1000)))

    def on_architecture_done(self, arch_id: int) -> None:
        self._put(_ArchitectureDone(arch_id))

    def on_job_end(self, state: str | None = None) -> None:
        """The job ended (``state``: its final state; ``None``: read it from the database)."""
        self._ended = True
        self._put(_JobEnd(state))

    def close(self, timeout: float | None = None) -> bool:
        """End tracking: close the job's run (if :meth:`on_job_end` was not called) and wait
        up to ``timeout`` seconds (default ``flush_timeout``) for the backlog. Returns whether
        everything was logged; if not, warns how to log the rest later."""
        timeout = self.flush_timeout if timeout is None else timeout
        if self._feed is not None and self._feed.job_id is not None and not self._ended:
            self.on_progress(self._feed.metrics())
            self.on_job_end()
        with self._cond:
            self._closing = True
            self._give_up_at = time.monotonic() + timeout
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)  # the thread gives up at the deadline, between calls
        with self._cond:
            left = len(self._queue)
            alive = self._thread is not None and self._thread.is_alive()
        if left or alive:
            job = f" --job {self._job_id}" if self._job_id is not None else ""
            logger.warning(
                "MLflow tracking at %s gave up %d operation(s) after %.0f s; the results database has "
                "everything: log the rest with `cellsearch results sync-mlflow%s --mlflow %s`",
                self.tracking_uri,
                left,
                timeout,
                job,
                self.tracking_uri,
            )
            return False
        self._close_store()
        return True

    def sync(self, job_id: int) -> int:
        """Log a job to MLflow now, in this thread: its run (created if missing) and every
        finished architecture without a run; returns the architecture runs created. The
        job's run is closed with the job's state when the job is over."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("sync: the tracker's thread is running; close it first")
        before = self.logged_architectures
        try:
            for op in (_JobStart(job_id), _JobEnd(None, close_running=False)):
                self._apply(op)
        except _Transient as exc:
            raise RuntimeError(str(exc.__cause__ or exc)) from None
        finally:
            self._close_store()
        return self.logged_architectures - before

    # -- the worker thread ---------------------------------------------------------------

    def _on_feed_event(self, event: str, data: dict[str, Any]) -> None:
        """Called on the driver's thread: enqueue and return."""
        if event == "architecture":
            self.on_architecture_done(int(data["arch_id"]))
            if self._feed is not None:
                self.on_progress(self._feed.metrics())

    def _put(self, op: _Operation) -> None:
        with self._cond:
            self._queue.append(op)
            self._cond.notify_all()
        self._start()

    def _start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mlflow-tracker", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        backoff = self.retry_initial
        while True:
            with self._cond:
                if not self._queue or (self._closing and time.monotonic() >= self._give_up_at):
                    if self._closing:
                        return
                    self._cond.wait(timeout=min(0.2, self.progress_interval))
                self._poll_feed()
                if not self._queue:
                    continue
                op = self._queue[0]
                ops: list[_Operation] = self._take_progress_run() if isinstance(op, _Progress) else [op]
            try:
                if isinstance(op, _Progress):
                    self._apply(_merge_progress(ops))  # one log_batch for the whole run of samples
                else:
                    self._apply(op)
            except _Transient as exc:
                self._outage(exc.__cause__ or exc)
                with self._cond:  # the operations stay at the head of the queue for the retry
                    wait = min(backoff, max(0.0, self._give_up_at - time.monotonic()))
                    self._cond.wait(timeout=wait)  # a close() wakes it up early
                backoff = min(backoff * 2, self.retry_max)
                continue
            except Exception as exc:  # the store refused it (bad value, deleted run) or a bug: drop it
                self.dropped.append(f"{type(ops[0]).__name__}: {type(exc).__name__}: {exc}")
                logger.error("MLflow tracking dropped %s: %s", type(ops[0]).__name__, exc, exc_info=True)
            with self._cond:
                for each in ops:
                    if self._queue and self._queue[0] is each:
                        self._queue.popleft()
            if self._outage_since is not None:
                logger.warning(
                    "MLflow at %s is reachable again after %.0f s; catching up (%d operations queued)",
                    self.tracking_uri,
                    time.monotonic() - self._outage_since,
                    self.pending,
                )
                self._outage_since = None
            backoff = self.retry_initial

    def _take_progress_run(self) -> list[_Operation]:
        """Consecutive progress samples at the head of the queue (left there until logged),
        as many as one ``log_batch`` takes."""
        ops: list[_Operation] = []
        for op in self._queue:
            if not isinstance(op, _Progress) or (
                ops and (len(ops) + 1) * len(op.metrics) > METRICS_PER_BATCH
            ):
                break
            ops.append(op)
        return ops

    def _poll_feed(self) -> None:
        """Worker side of :meth:`follow`: start the job's run, sample progress, sweep the database."""
        feed = self._feed
        if feed is None or feed.job_id is None or self._ended:
            return
        if not self._feed_job_queued:
            self._feed_job_queued = True
            self._queue.appendleft(_JobStart(feed.job_id))
            self._last_sample = time.monotonic()
            return
        now = time.monotonic()
        if now - self._last_sample >= self.progress_interval:
            self._last_sample = now
            metrics = feed.metrics()
            step = int(
                metrics.get("architectures_evaluated", 0)
                + metrics.get("architectures_filtered", 0)
                + metrics.get("architectures_stopped", 0)
            )
            self._queue.append(_Progress(metrics, step, int(time.time() * 1000)))
            if not any(isinstance(op, _Sweep) for op in self._queue):
                self._queue.append(_Sweep())

    def _outage(self, error: BaseException) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.warning(
                "MLflow at %s is unreachable (%s); the search goes on, tracking catches up when it is back",
                self.tracking_uri,
                _first_line(error),
            )

    # -- applying operations -------------------------------------------------------------

    def _apply(self, op: _Operation | list[_Progress]) -> None:
        try:
            if isinstance(op, _JobStart):
                self._job_start(op)
            elif isinstance(op, _Progress | list):
                self._progress(op)
            elif isinstance(op, _ArchitectureDone):
                self._architecture(op)
            elif isinstance(op, _Sweep):
                self._sweep(op)
            else:
                self._job_end(op)
        except _Transient:
            raise
        except Exception as exc:
            if _is_transient(exc):
                raise _Transient(str(exc)) from exc
            raise

    def _mlflow(self) -> MlflowClient:
        if self._client is None:
            for name, value in (
                ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"),
                ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
            ):
                os.environ.setdefault(name, value)  # we retry ourselves, without blocking anyone
            from mlflow import MlflowClient

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

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _job_start(self, op: _JobStart) -> None:
        from dashboards._links import ensure_links_table, record_run, runs_of
        from dashboards._views import ensure_views

        store = self._results()
        job = store.get_job(op.job_id)
        if self._job_id != op.job_id:
            ensure_views(store.engine)
            ensure_links_table(store.engine)
            self._job_id = op.job_id
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
                self._job_run_id, self._experiment_id = job_links[-1].run_id, job_links[-1].experiment_id
            else:
                self._job_run_id = None
        client = self._mlflow()
        if self._job_run_id is not None:
            run = client.get_run(self._job_run_id)  # raises (dropped) if someone deleted it
            self._experiment_id = run.info.experiment_id
            if job.state == "running" and run.info.status != "RUNNING":
                client.update_run(self._job_run_id, status="RUNNING")  # a resumed job
            return
        self._experiment_id = self._experiment_for(self.experiment or job.name)
        run = client.create_run(
            self._experiment_id, run_name=f"job-{job.id}", tags={**self._job_meta, "cellsearch.kind": "job"}
        )
        self._job_run_id = run.info.run_id
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flatten_params(job.spec).items()]
        for start in range(0, len(params), PARAMS_PER_BATCH):
            client.log_batch(self._job_run_id, params=params[start : start + PARAMS_PER_BATCH])
        client.log_text(self._job_run_id, yaml.safe_dump(job.spec, sort_keys=False), "job.yaml")
        record_run(
            store.engine,
            self.tracking_uri,
            job_id=job.id,
            arch_id=None,
            experiment_id=self._experiment_id,
            run_id=self._job_run_id,
        )

    def _experiment_for(self, name: str) -> str:
        client = self._mlflow()
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        try:
            return str(
                client.create_experiment(name, artifact_location=_artifact_location(self.tracking_uri))
            )
        except Exception as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_ALREADY_EXISTS":  # created meanwhile
                found = client.get_experiment_by_name(name)
                if found is not None:
                    return str(found.experiment_id)
            raise

    def _progress(self, op: _Progress | list[_Progress]) -> None:
        if self._job_run_id is None:
            return  # no job yet: nothing to attach the sample to
        from mlflow.entities import Metric

        samples = op if isinstance(op, list) else [op]
        metrics = [
            Metric(_metric_key(name), value, sample.timestamp_ms, sample.step)
            for sample in samples
            for name, value in sample.metrics.items()
        ]
        for start in range(0, len(metrics), METRICS_PER_BATCH):
            self._mlflow().log_batch(self._job_run_id, metrics=metrics[start : start + METRICS_PER_BATCH])

    def _architecture(self, op: _ArchitectureDone) -> None:
        if self._job_id is None or self._job_run_id is None:
            return
        from mlflow.entities import Metric, Param, RunTag

        from dashboards._links import record_run

        client = self._mlflow()
        if op.payload is None:
            op.payload = architecture_payload(self._results(), self._job_id, op.arch_id)
        payload = op.payload
        if payload is None:
            return  # not part of the job, or not finished
        now = int(time.time() * 1000)
        existing = self._arch_runs.get(op.arch_id)
        if existing is not None and op.run_id is None:
            # Logged before (by the sweep, or by an earlier run of a resumed job): only a score
            # changed since (a refinement) is worth new metric values, one step further.
            if op.arch_id not in self._logged_scores or self._logged_scores[op.arch_id] == payload["score"]:
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
                "mlflow.parentRunId": self._job_run_id,
                "cellsearch.kind": "architecture",
            }
            assert self._experiment_id is not None
            run = client.create_run(self._experiment_id, run_name=payload["run_name"], tags=tags)
            op.run_id = run.info.run_id
            record_run(
                self._results().engine,
                self.tracking_uri,
                job_id=self._job_id,
                arch_id=op.arch_id,
                experiment_id=self._experiment_id,
                run_id=op.run_id,
            )
            self._arch_runs[op.arch_id] = op.run_id
            self.logged_architectures += 1
        if not op.batch_done:
            params = [Param(k, v) for k, v in payload["params"].items()]
            metrics = [Metric(k, v, now, 0) for k, v in payload["metrics"].items()]
            client.log_batch(op.run_id, metrics=metrics, params=params[:PARAMS_PER_BATCH])
            for start in range(PARAMS_PER_BATCH, len(params), PARAMS_PER_BATCH):
                client.log_batch(op.run_id, params=params[start : start + PARAMS_PER_BATCH])
            op.batch_done = True
        artifacts = {k: v for k, v in payload["artifacts"].items() if k not in op.artifacts_done}
        if artifacts:  # one upload of a folder: a quarter of the store calls of one file each
            with tempfile.TemporaryDirectory() as folder:
                for name, text in artifacts.items():
                    (Path(folder) / name).write_text(text, encoding="utf-8")
                client.log_artifacts(op.run_id, folder)
            op.artifacts_done.update(artifacts)
        client.set_terminated(op.run_id, status="FINISHED")
        self._logged_scores[op.arch_id] = payload["score"]

    def _sweep(self, op: _Sweep) -> None:
        if self._job_id is None or self._job_run_id is None:
            return
        if op.pending is None:
            ja = JobArchitecture
            with self._results().engine.connect() as conn:
                rows = conn.execute(
                    select(ja.architecture_id, ja.score)
                    .where(
                        ja.job_id == self._job_id,
                        or_(ja.evaluated.is_(True), ja.filter_passed.is_(False), ja.score.is_not(None)),
                    )
                    .order_by(ja.proposed_at, ja.architecture_id)
                ).all()
            op.pending = [
                _ArchitectureDone(arch_id)
                for arch_id, score in rows
                if arch_id not in self._arch_runs
                or (arch_id in self._logged_scores and self._logged_scores[arch_id] != score)
            ]
        while op.pending:
            self._architecture(op.pending[0])
            op.pending.pop(0)

    def _job_end(self, op: _JobEnd) -> None:
        if self._job_id is None or self._job_run_id is None:
            return
        self._sweep(op.sweep)
        state = op.state or self._results().get_job(self._job_id).state
        if state not in JOB_RUN_STATUS and not op.close_running:
            return  # sync() of a job that is still running: its own tracker will close the run
        client = self._mlflow()
        client.set_tag(self._job_run_id, "cellsearch.job_state", state)
        client.set_terminated(self._job_run_id, status=JOB_RUN_STATUS.get(state, "KILLED"))


def _merge_progress(ops: list[_Operation]) -> list[_Progress]:
    return [op for op in ops if isinstance(op, _Progress)]


@contextmanager
def track_job(settings: Settings, feed: ProgressFeed, **options: Any) -> Iterator[Tracker]:
    """Track the job that ``feed`` reports while the block runs (see :class:`Tracker`).

    ``settings.mlflow_uri`` is the store, ``settings.db_url`` the results database.
    Closing waits up to ``flush_timeout`` seconds for the backlog, and never raises.
    """
    tracker = Tracker(settings.mlflow_uri, settings.db_url, **options)
    tracker.follow(feed)
    try:
        yield tracker
    finally:
        try:
            tracker.close()
        except Exception:  # tracking must never turn a finished job into an error
            logger.exception("closing the MLflow tracker failed")


# -- what gets logged ------------------------------------------------------------------------


def architecture_payload(store: ResultStore, job_id: int, arch_id: int) -> dict[str, Any] | None:
    """The run of a finished architecture of a job: run name, params, metrics, tags and
    artifacts (file name -> text); ``None`` when it is not part of the job or not finished."""
    from cells import CellGraph, render_svg, to_dot, to_markdown
    from dashboards._queries import describe_architecture, job_tasks

    member = store.job_architecture(job_id, arch_id)
    if member is None or not (member.evaluated or member.filter_passed is False or member.score is not None):
        return None
    details = describe_architecture(store, arch_id, job_id=job_id)
    parent = details.lineage[1] if len(details.lineage) > 1 else None
    [membership] = details.jobs
    params: dict[str, str] = {
        "arch_id": str(arch_id),
        "canonical_hash": details.canonical_hash,
        "parent_id": str(parent.arch_id) if parent else "",
        "parent_hash": parent.canonical_hash if parent else "",
        "mutation": details.lineage[0].mutation or "",
        "generation": str(membership.generation),
        "num_states": str(details.num_states),
        "num_nodes": str(details.num_nodes),
        "parameter_count": str(details.parameter_count),
        "library_name": details.library_name or "",
        **{f"ops.{op}": str(count) for op, count in sorted(details.op_counts.items())},
    }
    metrics: dict[str, float] = {}
    if membership.score is not None:
        metrics["score"] = float(membership.score)
    for task in membership.tasks:
        result = task.result
        key = _metric_key(result.task)
        if result.value is not None:
            metrics[f"{key}.best"] = float(result.value)
        if result.relative is not None:
            metrics[f"{key}.relative"] = float(result.relative)
        metrics[f"{key}.trials"] = float(result.trials)
    evaluated_tasks = {t.result.task for t in membership.tasks if t.result.status == "done"}
    if membership.filter_passed is False:
        outcome = "filtered"
    elif set(job_tasks(store, job_id)) <= evaluated_tasks:
        outcome = "evaluated"
    else:
        outcome = "stopped"  # at a search task's threshold: the later tasks never ran
    tags = {
        "cellsearch.arch_id": str(arch_id),
        "cellsearch.outcome": outcome,
        "cellsearch.library_name": details.library_name or "",
        "cellsearch.listed": str(membership.listed).lower(),
    }
    graph = CellGraph.parse(details.graph)
    artifacts = {
        "cell.json": graph.model_dump_json(indent=2),
        "equations.md": to_markdown(graph),
        "cell.dot": to_dot(graph),
    }
    try:
        svg = render_svg(graph)
    except (RuntimeError, OSError) as exc:  # a Graphviz failure costs the picture, not the run
        logger.info("no diagram for architecture %s: %s", arch_id, exc)
        svg = None
    if svg is not None:
        artifacts["cell.svg"] = svg
    name = f"arch-{arch_id}" + (f"-{details.library_name}" if details.library_name else "")
    return {
        "run_name": name,
        "params": {_truncate(k, MAX_KEY_LENGTH): _truncate(v, MAX_PARAM_LENGTH) for k, v in params.items()},
        "metrics": metrics,
        "tags": tags,
        "artifacts": artifacts,
        "score": membership.score,
    }


def flatten_params(data: Any, prefix: str = "") -> dict[str, str]:
    """A nested mapping as MLflow parameters: dotted keys (list items by index), values as
    text cut to MLflow's limits.

    Example:
        >>> flatten_params({"strategy": {"kind": "fixed", "cells": ["gru", "lstm"]}, "seed": 0})
        {'strategy.kind': 'fixed', 'strategy.cells.0': 'gru', 'strategy.cells.1': 'lstm', 'seed': '0'}
    """
    out: dict[str, str] = {}
    if isinstance(data, Mapping):
        items: Any = data.items()
    elif isinstance(data, list | tuple):
        items = enumerate(data)
    else:
        return {_truncate(prefix or "value", MAX_KEY_LENGTH): _truncate(_text(data), MAX_PARAM_LENGTH)}
    for key, value in items:
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping | list | tuple) and value:
            out.update(flatten_params(value, name))
        else:
            out[_truncate(name, MAX_KEY_LENGTH)] = _truncate(_text(value), MAX_PARAM_LENGTH)
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping | list | tuple):
        return "{}" if isinstance(value, Mapping) else "[]"
    return str(value)


def _truncate(text: str, limit: int) -> str:
    marker = "...[cut]"
    return text if len(text) <= limit else text[: limit - len(marker)] + marker


def _metric_key(name: str) -> str:
    """MLflow allows letters, digits and ``_ - . / :`` and spaces in keys."""
    return "".join(c if c.isalnum() or c in "_-./: " else "_" for c in name)[:MAX_KEY_LENGTH]


def _artifact_location(tracking_uri: str) -> str | None:
    """Artifacts of a SQLite store go in ``mlartifacts`` beside the file (MLflow's default,
    ``./mlruns``, would depend on the working directory); a server decides for itself."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    path = tracking_uri[len(prefix) :]
    if not path or path == ":memory:":
        return None
    return (Path(path).resolve().parent / "mlartifacts").as_uri()


def _is_transient(exc: BaseException) -> bool:
    code = getattr(exc, "error_code", None)
    if code is not None:
        return code in _TRANSIENT_CODES
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OSError | ConnectionError | TimeoutError | OperationalError) or type(
        exc
    ).__module__.startswith(("requests", "urllib3"))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
