"""MLflow tracking of jobs: an experiment per job, holding the job's run and a run per finished architecture.

The :class:`Tracker` is one observer of the driver: it follows the job's progress feed
(:meth:`Tracker.follow`, the feed's events), so ``search`` never imports it; whoever composes
the command wires the two (:func:`track_job`). What gets logged is built in
:mod:`dashboards._tracking_payload`; :class:`~dashboards._tracking_writer.MlflowWriter` logs it.

The tracker never holds up the search. The driver (or a progress feed it
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
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dashboards._tracking_ops import (
    METRICS_PER_BATCH,
    ArchitectureDone,
    JobEnd,
    JobStart,
    Operation,
    ProgressSample,
    Sweep,
    Transient,
    first_line,
)
from dashboards._tracking_payload import architecture_payload, flatten_params
from dashboards._tracking_writer import MlflowWriter
from search import Settings

if TYPE_CHECKING:
    from search import ProgressFeed

__all__ = ["Tracker", "architecture_payload", "flatten_params", "track_job"]

logger = logging.getLogger(__name__)


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
        self._queue: deque[Operation] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._give_up_at = float("inf")
        self._feed: ProgressFeed | None = None
        self._feed_job_queued = False
        self._ended = False
        # Owned by the worker thread (or by sync() when no thread runs):
        self._writer = MlflowWriter(tracking_uri, db_url, experiment)
        self._outage_since: float | None = None
        self._last_sample = 0.0
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
        return self._writer.job_run_id

    @property
    def logged_architectures(self) -> int:
        """Architecture runs created so far (for reports and tests)."""
        return self._writer.logged_architectures

    # -- hooks: any thread, never blocking -----------------------------------------------

    def follow(self, feed: ProgressFeed) -> None:
        """Track the job that ``feed`` reports (see the module docstring)."""
        self._feed = feed
        feed.subscribe(self._on_feed_event)
        self._start()

    def on_job_start(self, job_id: int) -> None:
        self._put(JobStart(job_id))

    def on_progress(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Progress metrics (a :meth:`ProgressFeed.metrics` snapshot) at ``step`` (default:
        architectures finished so far)."""
        values = {k: float(v) for k, v in metrics.items()}
        if step is None:
            step = _architectures_finished(values)
        self._put(ProgressSample(values, step, int(time.time() * 1000)))

    def on_architecture_done(self, arch_id: int) -> None:
        self._put(ArchitectureDone(arch_id))

    def on_job_end(self, state: str | None = None) -> None:
        """The job ended (``state``: its final state; ``None``: read it from the database)."""
        self._ended = True
        self._put(JobEnd(state))

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
            job = f" --job {self._writer.job_id}" if self._writer.job_id is not None else ""
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
        self._writer.close_store()
        return True

    def sync(self, job_id: int) -> int:
        """Log a job to MLflow now, in this thread: its run (created if missing) and every
        finished architecture without a run; returns the architecture runs created. The
        job's run is closed with the job's state when the job is over."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("sync: the tracker's thread is running; close it first")
        before = self.logged_architectures
        try:
            for op in (JobStart(job_id), JobEnd(None, close_running=False)):
                self._writer.apply(op)
        except Transient as exc:
            raise RuntimeError(str(exc.__cause__ or exc)) from None
        finally:
            self._writer.close_store()
        return self.logged_architectures - before

    # -- the worker thread ---------------------------------------------------------------

    def _on_feed_event(self, event: str, data: dict[str, Any]) -> None:
        """Called on the driver's thread: enqueue and return."""
        if event == "architecture":
            self.on_architecture_done(int(data["arch_id"]))
            if self._feed is not None:
                self.on_progress(self._feed.metrics())

    def _put(self, op: Operation) -> None:
        with self._cond:
            self._queue.append(op)
            self._cond.notify_all()
        self._start()

    def _start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run_safely, name="mlflow-tracker", daemon=True)
                self._thread.start()

    def _run_safely(self) -> None:
        """The worker thread: a bug here ends tracking with one line, never the job."""
        try:
            self._run()
        except Exception as exc:
            logger.error(
                "MLflow tracking at %s stopped (%s: %s); the search goes on; log the rest later with "
                "`cellsearch results sync-mlflow`",
                self.tracking_uri,
                type(exc).__name__,
                first_line(exc),
            )
            with self._cond:
                self._closing = True
                self._queue.clear()

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
                # A run of progress samples goes as one log_batch.
                batch: Operation | list[ProgressSample] = (
                    self._take_progress_run() if isinstance(op, ProgressSample) else op
                )
                ops: list[Operation] = list(batch) if isinstance(batch, list) else [batch]
            try:
                self._writer.apply(batch)
            except Transient as exc:
                self._outage(exc.__cause__ or exc)
                with self._cond:  # the operations stay at the head of the queue for the retry
                    wait = min(backoff, max(0.0, self._give_up_at - time.monotonic()))
                    self._cond.wait(timeout=wait)  # a close() wakes it up early
                backoff = min(backoff * 2, self.retry_max)
                continue
            except Exception as exc:  # the store refused it (bad value, deleted run) or a bug: drop it
                # One line, no traceback: the job goes on, and its own output must stay readable.
                self.dropped.append(f"{type(ops[0]).__name__}: {type(exc).__name__}: {first_line(exc)}")
                logger.error(
                    "MLflow tracking at %s dropped %s (%s: %s); the search goes on",
                    self.tracking_uri,
                    type(ops[0]).__name__,
                    type(exc).__name__,
                    first_line(exc),
                )
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

    def _take_progress_run(self) -> list[ProgressSample]:
        """Consecutive progress samples at the head of the queue (left there until logged),
        as many as one ``log_batch`` takes."""
        ops: list[ProgressSample] = []
        for op in self._queue:
            if not isinstance(op, ProgressSample) or (
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
            self._queue.appendleft(JobStart(feed.job_id))
            self._last_sample = time.monotonic()
            return
        now = time.monotonic()
        if now - self._last_sample >= self.progress_interval:
            self._last_sample = now
            metrics = feed.metrics()
            sample = ProgressSample(metrics, _architectures_finished(metrics), int(time.time() * 1000))
            self._queue.append(sample)
            if not any(isinstance(op, Sweep) for op in self._queue):
                self._queue.append(Sweep())

    def _outage(self, error: BaseException) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.warning(
                "MLflow at %s is unreachable (%s); the search goes on, tracking catches up when it is back",
                self.tracking_uri,
                first_line(error),
            )


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
        except Exception as exc:  # tracking must never turn a finished job into an error
            logger.error("closing the MLflow tracker failed (%s: %s)", type(exc).__name__, first_line(exc))


def _architectures_finished(metrics: Mapping[str, float]) -> int:
    """The step of a progress sample: architectures finished so far, whatever their outcome."""
    return int(
        metrics.get("architectures_evaluated", 0)
        + metrics.get("architectures_filtered", 0)
        + metrics.get("architectures_stopped", 0)
    )
