"""The driver loop: a strategy proposes cells, Ray trains them, Optuna tunes them, the store records.

:func:`run_job` owns one job run and wires three parts into one loop:

- the architecture book (:class:`~search._book.ArchitectureBook`, no Ray): every architecture
  of the job, its walk through the job's task stages, the baselines, the scores, the strategy;
- the trial scheduler (:class:`~search._scheduler.TrialScheduler`, the one user of Ray): up to
  ``max_in_flight`` trials on Ray, their results back, retries, the pruner's relay;
- the job budget (:class:`~search._job_budget.JobBudget`): what may still start, and why it stops.

Each trial is recorded through the :class:`~search.ResultStore` as it starts and ends
(one transaction each, so a killed driver loses no finished work); the driver is the only
writer of the database. Trials of one (architecture, task) that share a shape are asked of the
study together and trained as one population unless the job's ``population`` is ``off``; with
the job's ``prefilter`` on, mutants the strategy's zero-cost screen drops are recorded in the job
as filtered out and never trained.

Results reach the book, the strategy and Optuna in launch order (:mod:`search._launch_order`)
and every trial's seed derives from the job's seed and the trial's identity, so the same job
file and seed give the same architectures, hyperparameters and scores however trials interleave
on the cluster. Resuming a job (``resume=True``) marks trials left ``running`` as interrupted and
replays the stopped run's launches (:mod:`search._replay`): stored results are taken, unfinished
trials train again, and the job ends where it would have ended without the stop.
Ctrl-C (SIGINT) or SIGTERM stops cleanly: running trials are cancelled and recorded
``interrupted``, the state is saved and the job is marked ``interrupted``.

Everything that happens is reported to the progress feed; observers (the live display, MLflow
tracking) follow the feed (``run_job(observers=...)`` or ``feed.subscribe``).

Example (a sketch; see ``examples/quickstart.yaml``)::

    from search import load_job, resolve_settings, run_job
    job_id = run_job(load_job("examples/quickstart.yaml"), resolve_settings())
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from search._book import ArchitectureBook
from search._book_final import begin_final, record_final
from search._cluster_fit import check_cluster_fit
from search._job_budget import JobBudget, StopReason
from search._job_outcome import job_unscored_reason
from search._job_strategy import make_strategy
from search._joblock import JobStateError, hold_job
from search._jobspec import JobSpec
from search._progress import ProgressFeed, Subscriber
from search._ray_cluster import ray_session
from search._replay import RecordedLaunches
from search._result_store import ResultStore
from search._scheduler import MAX_RETRIES, TrialScheduler
from search._settings import Settings
from search._states import JobState
from search._tuning import StudyBook

if TYPE_CHECKING:
    from workers import Evaluate

__all__ = ["MAX_RETRIES", "JobStateError", "run_job"]

logger = logging.getLogger(__name__)


def run_job(
    spec: JobSpec | None,
    settings: Settings,
    job_id: int | None = None,
    resume: bool = False,
    progress: ProgressFeed | None = None,
    evaluate: Evaluate | None = None,
    max_retries: int = MAX_RETRIES,
    observers: Sequence[Subscriber] = (),
) -> int:
    """Run a job to its end (or to Ctrl-C, or SIGTERM) and return its id.

    ``spec``: the job to launch (``None`` with ``resume``: the stored spec is used).
    ``settings``: where the results database and Ray are (the spec's own ``db_url``, if set,
    wins over the default but not over an explicit setting: resolve it before). ``resume``:
    continue job ``job_id``. ``progress``: a feed the caller displays. ``evaluate``: replaces
    :func:`workers.evaluate_trial` on the workers (benchmarks). ``observers``: called with every
    event of the feed. The job's final state is in the store: ``finished``, ``interrupted``
    (Ctrl-C) or ``failed``. Resuming a finished job, or one that another process is running,
    raises :class:`JobStateError`.
    """
    feed = progress or ProgressFeed()
    for observer in observers:
        feed.subscribe(observer)
    if resume:
        if job_id is None:
            raise ValueError("resume needs a job id")
        _resume(job_id, spec, settings, feed, evaluate, max_retries)
        return job_id
    if spec is None:
        raise ValueError("launch needs a job spec")
    # Ray first, and the cluster checked: a cluster that cannot be joined, or on which no node can
    # run a trial, records no job (and creates no schema).
    with ray_session(settings.ray_address):
        check_cluster_fit(spec.resources)
        store = ResultStore.open(settings.db_url)
        try:
            job_id = store.create_job(spec)
            with hold_job(store.engine, job_id):
                _drive(spec, job_id, store, settings.db_url, feed, evaluate, max_retries, resume=False)
        finally:
            store.close()
    return job_id


def _resume(
    job_id: int,
    spec: JobSpec | None,
    settings: Settings,
    feed: ProgressFeed,
    evaluate: Evaluate | None,
    max_retries: int,
) -> None:
    store = ResultStore.open(settings.db_url, create=False)
    try:
        # The lock first: a live driver of this job refuses us before anything is touched.
        with hold_job(store.engine, job_id):
            if store.get_job(job_id).state == JobState.FINISHED:
                raise JobStateError(f"job {job_id} is already finished; nothing to resume")
            spec = spec or store.load_job_spec(job_id)
            with ray_session(settings.ray_address):
                check_cluster_fit(spec.resources)
                _drive(spec, job_id, store, settings.db_url, feed, evaluate, max_retries, resume=True)
    finally:
        store.close()


def _drive(
    spec: JobSpec,
    job_id: int,
    store: ResultStore,
    db_url: str,
    feed: ProgressFeed,
    evaluate: Evaluate | None,
    max_retries: int,
    resume: bool,
) -> None:
    """One run of a job: build the three parts, run the loop, record how it ended."""
    feed.job_opened(job_id, spec.name)
    budget = JobBudget(spec.budget)
    studies = StudyBook(db_url, sampler=spec.sampler, pruner=spec.pruner, seed=spec.seed)
    book = ArchitectureBook(spec, job_id, store, studies, make_strategy(spec), budget, feed)
    scheduler = TrialScheduler(spec, job_id, store, book, budget, feed, evaluate, max_retries)
    try:
        window, recorded = _resumed_run(job_id, store, studies, budget, feed) if resume else (None, None)
        scheduler.open(window=window, recorded=recorded)
        book.window = scheduler.max_in_flight
        previous_handlers = _install_stop_signals(budget)
        try:
            book.start()
            store.set_job_state(job_id, JobState.RUNNING)
            feed.state_changed(JobState.RUNNING)
            _loop(book, scheduler, budget)
            if budget.interrupted:
                feed.state_changed("interrupting")
                scheduler.cancel_all(f"interrupted by the user ({budget.stop_signal})")
            book.save()
            end, error = _ending(spec, job_id, store, budget)
            store.set_job_state(job_id, end, error=error)
            feed.state_changed(end)
        except BaseException as exc:
            _abandon(job_id, store, scheduler, f"driver error: {type(exc).__name__}: {exc}")
            feed.state_changed(JobState.FAILED)
            raise
        finally:
            _restore_signals(previous_handlers)
    finally:
        studies.close()
        scheduler.close()


def _resumed_run(
    job_id: int, store: ResultStore, studies: StudyBook, budget: JobBudget, feed: ProgressFeed
) -> tuple[int | None, RecordedLaunches]:
    """What a resume takes from the stopped run: its window, its clock and its launches (the
    trials it left running are recorded interrupted; they train again in the replay)."""
    feed.trials_interrupted_on_resume(store.mark_running_trials_interrupted(job_id))
    recorded = RecordedLaunches.load(store, job_id)
    studies.keep_running = recorded.study_numbers()
    driver_state = (store.load_strategy_state(job_id) or {}).get("driver", {})
    budget.elapsed_before = float(driver_state.get("elapsed", 0.0))
    window = driver_state.get("window")
    return (int(window) if window else None), recorded


def _loop(book: ArchitectureBook, scheduler: TrialScheduler, budget: JobBudget) -> None:
    """Decide while the window has room and there is something to start; else learn the oldest
    launch's results (waiting for them if need be); until nothing is left. The order of decisions
    and releases depends on results only (:mod:`search._launch_order`). Out of time: nothing new
    starts, the running trials finish. Ctrl-C: leave at once."""
    while not budget.interrupted:
        if not scheduler.replaying:  # the stopped run decided its launches in its own time
            budget.check_time()
        book.settle()
        if scheduler.has_room and _decide(book, scheduler, budget):
            continue
        if scheduler.release():
            continue
        if scheduler.all_released:
            if begin_final(book):  # the search is over: its best go to the final round
                scheduler.add_tasks(book.final.tasks if book.final else {})
                continue
            break
        scheduler.wait()
    book.settle()
    if not budget.interrupted:
        record_final(book)


def _decide(book: ArchitectureBook, scheduler: TrialScheduler, budget: JobBudget) -> bool:
    """One decision: start the trials the book wants, or ask the strategy for an architecture;
    ``False`` when nothing can be decided on what is known."""
    if book.final is None and budget.trials_left() <= 0:  # the final round is outside the search's budget
        return False
    launch = book.next_launch()
    if launch is not None:
        arch, task, wanted = launch
        count = min(wanted, scheduler.population_limit, budget.trials_left())
        scheduler.launch(arch, task, int(count))
        return True
    if book.may_propose(scheduler.max_in_flight):
        book.propose()
        return True
    return False


def _ending(spec: JobSpec, job_id: int, store: ResultStore, budget: JobBudget) -> tuple[JobState, str | None]:
    """How a job that left its loop ends: interrupted, failed (the cluster was lost, or nothing was
    scored: there is no result to rank, and the error says why) or finished."""
    if budget.interrupted:
        return JobState.INTERRUPTED, None
    if budget.stop_reason is StopReason.CLUSTER_LOST:
        return JobState.FAILED, budget.stop_detail
    unscored = job_unscored_reason(store, spec, job_id, spent=budget.spent_limit())
    return (JobState.FAILED, unscored) if unscored else (JobState.FINISHED, None)


def _abandon(job_id: int, store: ResultStore, scheduler: TrialScheduler, error: str) -> None:
    """The driver itself failed: cancel what runs, keep what finished, mark the job failed (the
    studies' open trials stay open: a resume runs them again)."""
    try:
        scheduler.cancel_all(reason=None)
        store.mark_running_trials_interrupted(job_id)
        store.set_job_state(job_id, JobState.FAILED, error=error)
    except Exception:  # the database itself may be what failed; the original error wins
        logger.exception("could not record the failure of job %s", job_id)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _install_stop_signals(budget: JobBudget) -> dict[int, Any] | None:
    """Ctrl-C (and SIGTERM, e.g. ``docker stop``) ask the loop to stop cleanly; only the main
    thread can handle signals, elsewhere they keep their default."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: FrameType | None) -> None:
        budget.interrupt(signal.Signals(signum).name)

    return {sig: signal.signal(sig, handler) for sig in _STOP_SIGNALS}


def _restore_signals(previous: dict[int, Any] | None) -> None:
    for sig, handler in (previous or {}).items():
        signal.signal(sig, handler)
