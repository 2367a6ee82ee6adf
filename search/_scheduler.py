"""The trial scheduler: trials out to Ray, results back, retries, and the pruner's relay.

The one module of ``search`` that imports Ray. :meth:`TrialScheduler.launch` asks the
(architecture, task) study for hyperparameters, records the trials as started (one
transaction) and sends them to Ray: one alone, or several of one shape as a population
(:func:`workers.train_population`, one Ray task). :meth:`TrialScheduler.wait` waits for the
first of the running tasks or the relay's poll, records what finished (the store and the
study each in one transaction), runs again a trial whose worker died (up to ``max_retries``
times) and relays intermediate values to the pruner. Every start and end is reported to the
architecture book and to the progress feed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ray
from ray import exceptions as ray_errors

from cells import first_line
from search._book import Architecture, ArchitectureBook
from search._cluster_fit import ClusterFitError, FitWatch
from search._job_budget import JobBudget
from search._jobspec import JobSpec, TaskEntry
from search._progress import ProgressFeed
from search._result_store import ResultStore
from search._tuning import TunedStudy
from workers import (
    Evaluate,
    PopulationRequest,
    TrialRequest,
    TrialResult,
    TrialStatus,
    plan_populations,
    population_runner,
    population_size,
    start_relay,
    trial_runner,
)

MAX_RETRIES = 2
"""A trial whose worker dies is run again this many times, then recorded ``failed``."""

POLL_SECONDS = 1.0
"""Longest wait of the loop: budget checks, Ctrl-C and the display never wait longer."""

_RETRYABLE = (
    ray_errors.WorkerCrashedError,
    ray_errors.NodeDiedError,
    ray_errors.OutOfMemoryError,
    ray_errors.ObjectLostError,
    ray_errors.OwnerDiedError,
    ray_errors.LocalRayletDiedError,
    ray_errors.RaySystemError,
)


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Join the cluster at ``address`` or start a local instance, unless Ray is up already."""
    if ray.is_initialized():
        yield
        return
    # Ray warns at every start that token authentication is on (its default): noise on the
    # terminal of every job, and in front of the one line a refused job prints.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterFitError(f"cannot join the Ray cluster at {address}: {first_line(exc)}") from None
    try:
        yield
    finally:
        ray.shutdown()


@dataclass
class _Running:
    """A trial on Ray."""

    trial_id: int
    arch: Architecture
    task: TaskEntry
    study: TunedStudy
    number: int
    hparams: dict[str, Any]
    attempt: int
    key: str


class TrialScheduler:
    """Keeps up to ``max_in_flight`` Ray tasks busy with the book's trials."""

    def __init__(
        self,
        spec: JobSpec,
        job_id: int,
        store: ResultStore,
        book: ArchitectureBook,
        budget: JobBudget,
        feed: ProgressFeed,
        evaluate: Evaluate | None = None,
        max_retries: int = MAX_RETRIES,
    ) -> None:
        self.spec, self.job_id, self.store, self.book = spec, job_id, store, book
        self.budget, self.feed, self.max_retries = budget, feed, max_retries
        self.spaces = {t.id: spec.search_space(t) for t in spec.tasks}
        resources = spec.resources
        options: dict[str, Any] = {"num_cpus": resources.cpus, "num_gpus": resources.gpus}
        if resources.custom:
            options["resources"] = dict(resources.custom)
        self.submit = trial_runner(evaluate).options(**options)
        self.submit_population = population_runner(evaluate).options(**options)
        # The workers' device decides ``auto``, not the driver's: a trial asking for a GPU gets one.
        device = spec.device if spec.device != "auto" else "cuda" if resources.gpus > 0 else "cpu"
        self.population_limit = population_size(spec.population, device)
        """Most trials of one (cell, task) trained together as one population (1: each alone)."""
        self.running: dict[ray.ObjectRef, list[_Running]] = {}
        """Ray task -> its trials: one, or the members of a population (in the request's order)."""
        self.by_key: dict[str, _Running] = {}
        self.relay: Any = None
        self.poll: Any = None
        self.max_in_flight = 1
        self.fit_watch = FitWatch(spec.resources)

    # -- life ----------------------------------------------------------------------------

    def open(self) -> None:
        """Size the concurrency to the cluster and start the pruner's relay."""
        self.max_in_flight = self.spec.resources.max_in_flight or cluster_slots(self.spec)
        self.relay = start_relay(node_id=ray.get_runtime_context().get_node_id())
        # Wait for it: a trial's first report (or its start notice) must not queue behind its start-up.
        ray.get(self.relay.workers.remote())
        self.poll = self.relay.poll.remote(POLL_SECONDS)

    def close(self) -> None:
        if self.relay is not None:
            ray.kill(self.relay)

    @property
    def has_room(self) -> bool:
        return len(self.running) < self.max_in_flight

    @property
    def idle(self) -> bool:
        return not self.running

    def cancel_all(self, reason: str | None, status: TrialStatus = TrialStatus.INTERRUPTED) -> None:
        """Cancel every running Ray task; with a ``reason``, record its trials ``status``
        (interrupted: they run again on resume; failed: they count as finished)."""
        for ref, members in list(self.running.items()):
            ray.cancel(ref, force=True)
            if reason is not None:
                for running in members:
                    self._end(running, status, reason)
        if reason is not None:
            self.running.clear()
            self.by_key.clear()

    # -- out -----------------------------------------------------------------------------

    def launch(self, arch: Architecture, task: TaskEntry, count: int) -> None:
        """Start ``count`` trials of ``arch`` on ``task``: one alone, or several asked of the
        study at once and trained as populations of one shape."""
        study = self.book.study(arch, task)
        asked = study.ask_many(count)
        hparams = [self.spaces[task.id].hparams_from(a.params).model_dump(mode="json") for a in asked]
        self.budget.count_trials(count)
        if count == 1:
            self._submit(arch, task, study, [(asked[0].number, hparams[0])], attempt=1)
            return
        for group in plan_populations(hparams, count):
            self._submit(arch, task, study, [(asked[i].number, hparams[i]) for i in group], attempt=1)

    def _start_trials(
        self,
        arch: Architecture,
        task: TaskEntry,
        study: TunedStudy,
        trials: list[tuple[int, dict[str, Any]]],
        attempt: int,
    ) -> list[_Running]:
        """Record ``(optuna number, hparams)`` trials as started (their rows in one transaction,
        the stages, the display) before they go to Ray."""
        trial_ids = self.store.start_trials(
            self.book.evaluation(arch, task),
            [hp for _, hp in trials],
            study_name=study.name,
            numbers=[number for number, _ in trials],
            attempt=attempt,
        )
        started = []
        for trial_id, (number, hparams) in zip(trial_ids, trials, strict=True):
            running = _Running(
                trial_id, arch, task, study, number, hparams, attempt, f"job{self.job_id}-trial{trial_id}"
            )
            self.by_key[running.key] = running
            self.book.trial_started(arch, task)
            self.feed.trial_submitted(running.key)
            started.append(running)
        return started

    def _submit(
        self,
        arch: Architecture,
        task: TaskEntry,
        study: TunedStudy,
        trials: list[tuple[int, dict[str, Any]]],
        attempt: int,
    ) -> None:
        """Send ``(optuna number, hparams)`` trials of one shape to Ray: a group of one alone,
        a larger one as a population."""
        members = self._start_trials(arch, task, study, trials, attempt)
        cell = self.book.cell_data(arch)
        report = self.spec.pruner != "none"
        if len(members) == 1:
            request: TrialRequest | PopulationRequest = TrialRequest(
                key=members[0].key,
                cell=cell,
                task=task.name,
                settings=task.settings,
                hparams=trials[0][1],
                budget=task.budget,
                device=self.spec.device,
                report=report,
            )
            self.running[self.submit.remote(request, self.relay)] = members
            return
        request = PopulationRequest(
            keys=[m.key for m in members],
            cell=cell,
            task=task.name,
            settings=task.settings,
            hparams=[hp for _, hp in trials],
            budget=task.budget,
            device=self.spec.device,
            report=report,
        )
        self.running[self.submit_population.remote(request, self.relay)] = members

    # -- back ----------------------------------------------------------------------------

    def wait(self) -> None:
        """Wait up to :data:`POLL_SECONDS` for a running task or the relay; handle what came."""
        ready, _ = ray.wait([*self.running, self.poll], num_returns=1, timeout=POLL_SECONDS)
        if not ready:
            self._check_fit()
            return
        done = (
            ray.wait(list(self.running), num_returns=len(self.running), timeout=0)[0] if self.running else []
        )
        if self.poll in ready:
            self._relay(*ray.get(self.poll))
            self.poll = self.relay.poll.remote(POLL_SECONDS)
        finished_keys = []
        for ref in done:
            members = self.running.pop(ref)
            for running in members:
                self.by_key.pop(running.key, None)
                finished_keys.append(running.key)
            self._collect(ref, members)
        if finished_keys:
            self.relay.forget.remote(finished_keys)

    def _check_fit(self) -> None:
        """No node has been able to run a trial for a while (the cluster lost it): fail the
        waiting trials with that reason and stop the job, instead of waiting forever."""
        lost = self.fit_watch.lost() if self.running else None
        if lost is not None:
            self.cancel_all(f"no node can run it: {lost}", status=TrialStatus.FAILED)
            self.budget.lose_cluster(f"the cluster lost every node that can run a trial: {lost}")

    def _collect(self, ref: ray.ObjectRef, members: list[_Running]) -> None:
        """Record the trials of a Ray task that ended: their results, a retry, or a failure."""
        first = members[0]
        try:
            outcome: TrialResult | list[TrialResult] = ray.get(ref)
        except ray_errors.TaskCancelledError:
            for running in members:
                self._end(running, TrialStatus.INTERRUPTED, "cancelled")
            return
        except _RETRYABLE as exc:
            reason = f"{type(exc).__name__}: {first_line(exc)}"
            if first.attempt <= self.max_retries and self.budget.stop_reason is None:
                self._retry(members, reason)
            else:
                for running in members:
                    self._end(running, TrialStatus.FAILED, f"{reason} (after {running.attempt} attempts)")
            return
        except ray_errors.RayTaskError as exc:  # a bug in the runner itself: no retry
            for running in members:
                self._end(running, TrialStatus.FAILED, f"{type(exc).__name__}: {first_line(exc)}")
            return
        self._record_results(members, outcome if isinstance(outcome, list) else [outcome])

    def _retry(self, members: list[_Running], reason: str) -> None:
        """The worker died: record the attempt interrupted and send the same trials again."""
        first = members[0]
        for running in members:
            error = f"attempt {running.attempt}: {reason}"
            self.store.fail_trial(running.trial_id, error, status=TrialStatus.INTERRUPTED)
            self.book.trial_ended(first.arch, first.task, None, counted=False)
            self.feed.trial_finished(running.key, TrialStatus.INTERRUPTED, retried=True)
        trials = [(m.number, m.hparams) for m in members]
        self._submit(first.arch, first.task, first.study, trials, first.attempt + 1)

    def _record_results(self, members: list[_Running], results: list[TrialResult]) -> None:
        """Record the results of one Ray task's trials (one arch, task and study): the store and
        the study each in one transaction, then the stages and the display."""
        arch, task, study = members[0].arch, members[0].task, members[0].study
        pairs = list(zip(members, results, strict=True))
        evaluations = self.store.finish_trials([(running.trial_id, result) for running, result in pairs])
        study.tell_many([(running.number, result.status, result.value) for running, result in pairs])
        for running, result, evaluation in zip(members, results, evaluations, strict=True):
            best = running.hparams if evaluation.best_trial_id == running.trial_id else None
            value = result.value if result.status == TrialStatus.OK else None
            self.book.trial_ended(arch, task, value, best_hparams=best)
            self.feed.trial_finished(running.key, result.status)

    def _end(self, running: _Running, status: TrialStatus, error: str) -> None:
        """A trial that produced no result: ``failed`` counts as finished, ``interrupted`` runs again."""
        self.store.fail_trial(running.trial_id, error, status=status)
        running.study.tell(running.number, status, None)
        self.book.trial_ended(running.arch, running.task, None, counted=status == TrialStatus.FAILED)
        self.feed.trial_finished(running.key, status)

    def _relay(
        self, reports: list[tuple[str, int, float]], started: list[tuple[str, dict[str, Any]]]
    ) -> None:
        """Show where trials started; answer the pruner's question for each intermediate value."""
        for key, worker in started:
            if key in self.by_key:
                self.feed.trial_on_worker(key, worker)
        if not reports:
            return
        decisions = []
        for key, step, value in reports:
            running = self.by_key.get(key)
            stop = True if running is None else running.study.report(running.number, step, value)
            decisions.append((key, step, stop))
        self.relay.answer.remote(decisions)


def cluster_slots(spec: JobSpec) -> int:
    """Trials the cluster can run at once with the job's resources per trial."""
    total = ray.cluster_resources()
    resources = spec.resources
    slots = [total.get("CPU", 1.0) / resources.cpus]
    if resources.gpus > 0:
        slots.append(total.get("GPU", 0.0) / resources.gpus)
    for name, amount in resources.custom.items():
        slots.append(total.get(name, 0.0) / amount)
    return max(1, int(min(slots) + 1e-9))
