"""The trial scheduler: trials out to Ray, results back in launch order, retries, the pruner's relay.

The one module of ``search`` that imports Ray. :meth:`TrialScheduler.launch` numbers a new
launch (:mod:`search._launch_order`), asks the (architecture, task) study for hyperparameters,
gives each trial its seed (derived from the job's seed, the task and the trial's place among the
evaluation's trials, so every cell of a task meets the same seeds), records the trials as started
(one transaction) and sends them to Ray: one alone, or several of one shape as a population
(:func:`workers.train_population`, one Ray task). :meth:`TrialScheduler.wait` waits for the
first of the running tasks or the relay's poll, records what finished in the store at once,
runs again a trial whose worker died (up to ``max_retries`` times) and relays intermediate
values to the pruner. :meth:`TrialScheduler.release` hands the oldest launch's results to the
study (one transaction) and the architecture book, in launch order.

A resumed job replays (:mod:`search._replay`): a launch its stopped run made takes the stored
trials (results, or the same hyperparameters and Optuna numbers to train again) instead of
asking the study.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray
from ray import exceptions as ray_errors

from cells import first_line
from search._book import Architecture, ArchitectureBook
from search._cluster_fit import FitWatch
from search._honest_results import honest_result
from search._job_budget import JobBudget
from search._jobspec import JobSpec, TaskEntry
from search._launch_order import LaunchOrder
from search._progress import ProgressFeed
from search._ray_cluster import cluster_slots
from search._records import TrialRecord
from search._replay import FINAL_STATUSES, RecordedLaunches
from search._result_store import ResultStore
from search._tuning import TunedStudy, derived_seed
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


@dataclass(frozen=True)
class _Planned:
    """A trial to start: its Optuna number, its place among its evaluation's trials, its hyperparameters."""

    number: int
    ordinal: int
    hparams: dict[str, Any]


@dataclass
class _Running:
    """A trial on Ray (or, replayed, one whose result is stored)."""

    trial_id: int
    arch: Architecture
    task: TaskEntry
    study: TunedStudy
    number: int
    hparams: dict[str, Any]
    attempt: int
    key: str
    launch: int
    ordinal: int


@dataclass(frozen=True)
class _Ended:
    """A trial's end, waiting for its launch's release."""

    running: _Running
    status: TrialStatus
    value: float | None


def trial_seed(job_seed: int, task_id: str, ordinal: int) -> int:
    """The seed of an evaluation's trial ``ordinal`` on a task: the same for every cell of the task."""
    return derived_seed(job_seed, "trial", task_id, ordinal)


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
        self.spaces = {t.id: spec.search_space(t) for t in spec.stage_tasks}
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
        self.seeded = {t.id: "seed" not in spec.hparams and "seed" not in t.hparams for t in spec.stage_tasks}
        """Tasks whose trials get derived seeds (the job does not set ``seed`` itself)."""
        self.order = LaunchOrder(window=1)
        self.recorded = RecordedLaunches()
        self.ordinals: dict[int, int] = {}
        """Evaluation id -> trials launched for it so far (the next trial's ordinal)."""
        self.running: dict[ray.ObjectRef, list[_Running]] = {}
        """Ray task -> its trials: one, or the members of a population (in the request's order)."""
        self.by_key: dict[str, _Running] = {}
        self.relay: Any = None
        self.poll: Any = None
        self.max_in_flight = 1
        self.fit_watch = FitWatch(spec.resources)

    # -- life ----------------------------------------------------------------------------

    def open(self, window: int | None = None, recorded: RecordedLaunches | None = None) -> None:
        """Size the concurrency to the cluster (or to the ``window`` of the job's first run: the
        launches in flight decide what the driver knows at each decision), take the ``recorded``
        launches of a resumed job, and start the pruner's relay."""
        self.max_in_flight = window or self.spec.resources.max_in_flight or cluster_slots(self.spec)
        self.order = LaunchOrder(self.max_in_flight)
        self.recorded = recorded or RecordedLaunches()
        self.relay = start_relay(node_id=ray.get_runtime_context().get_node_id())
        # Wait for it: a trial's first report (or its start notice) must not queue behind its start-up.
        ray.get(self.relay.workers.remote())
        self.poll = self.relay.poll.remote(POLL_SECONDS)

    def close(self) -> None:
        if self.relay is not None:
            ray.kill(self.relay)

    def add_tasks(self, tasks: dict[str, TaskEntry]) -> None:
        """Run trials of new task entries too (search task id -> entry: the final round's)."""
        for search_id, task in tasks.items():
            self.spaces[task.id] = self.spaces[search_id]
            self.seeded[task.id] = self.seeded[search_id]

    @property
    def has_room(self) -> bool:
        """Whether a launch may be decided now (the window of launches is not full)."""
        return self.order.has_room

    @property
    def idle(self) -> bool:
        return not self.running

    @property
    def all_released(self) -> bool:
        """Every launch's results are learned: nothing runs, nothing waits."""
        return self.order.all_released

    @property
    def replaying(self) -> bool:
        """A resumed job still makes launches its stopped run made."""
        return self.order.opened < self.recorded.count

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
        """Start launch ``k`` (the next number): ``count`` trials of ``arch`` on ``task``, one alone
        or several asked of the study at once and trained as populations of one shape."""
        study = self.book.study(arch, task)
        evaluation_id = self.book.evaluation(arch, task)
        number = self.order.open(count)
        self.budget.count_trials(count)
        recorded = self.recorded.get(number)
        if recorded is not None:
            what = f"architecture {arch.id} on {task.id}"
            self.recorded.check(number, recorded, evaluation_id, count, what)
            self._replay(number, arch, task, study, recorded)
            return
        self._submit_groups(arch, task, study, self.ask(arch, task, count), attempt=1, launch=number)

    def ask(self, arch: Architecture, task: TaskEntry, count: int) -> list[_Planned]:
        """The next ``count`` trials of ``arch`` on ``task``, asked of its study (recorded there,
        not started): their Optuna numbers, places among the evaluation's trials and
        hyperparameters. The ``k``-th trial of every cell of a task gets the same draw and seed
        (``docs/fair-comparisons.md``)."""
        study = self.book.study(arch, task)
        evaluation_id = self.book.evaluation(arch, task)
        first = self.ordinals.get(evaluation_id, 0)
        ordinals = list(range(first, first + count))
        self.ordinals[evaluation_id] = first + count
        asked = study.ask_many(count, ordinals)
        return [
            _Planned(a.number, ordinal, self._hparams(task, a.params, ordinal))
            for a, ordinal in zip(asked, ordinals, strict=True)
        ]

    def _hparams(self, task: TaskEntry, params: dict[str, Any], ordinal: int) -> dict[str, Any]:
        """A trial's hyperparameters: the sample, the fixed fields and, unless the job sets it, the seed."""
        if self.seeded[task.id] and "seed" not in params:
            params = {**params, "seed": trial_seed(self.spec.seed, task.id, ordinal)}
        return dict(self.spaces[task.id].hparams_from(params).model_dump(mode="json"))

    def _submit_groups(
        self,
        arch: Architecture,
        task: TaskEntry,
        study: TunedStudy,
        planned: list[_Planned],
        attempt: int,
        launch: int,
    ) -> None:
        if len(planned) == 1:
            self._submit(arch, task, study, planned, attempt, launch)
            return
        for group in plan_populations([p.hparams for p in planned], len(planned)):
            self._submit(arch, task, study, [planned[i] for i in group], attempt, launch)

    def _replay(
        self, number: int, arch: Architecture, task: TaskEntry, study: TunedStudy, recorded: list[TrialRecord]
    ) -> None:
        """A launch the stopped run made: stored results wait for release as if they had just come
        back; trials left unfinished train again with their hyperparameters and Optuna numbers."""
        evaluation_id = recorded[0].evaluation_id
        ordinals = [int(t.ordinal or 0) for t in recorded]
        self.ordinals[evaluation_id] = max(self.ordinals.get(evaluation_id, 0), max(ordinals) + 1)
        again, attempt = [], 1
        for trial, ordinal in zip(recorded, ordinals, strict=True):
            trial_number = int(trial.optuna_trial_number or 0)
            study.adopt(trial_number)
            if trial.status not in FINAL_STATUSES:
                again.append(_Planned(trial_number, ordinal, trial.hparams))
                attempt = max(attempt, trial.attempt + 1)
                continue
            running = _Running(
                trial.id, arch, task, study, trial_number, trial.hparams, trial.attempt, "", number, ordinal
            )
            self.book.trial_started(arch, task)
            value = trial.value if trial.status == TrialStatus.OK else None
            self.order.end(number, ordinal, _Ended(running, TrialStatus(trial.status), value))
        if again:
            self._submit_groups(arch, task, study, again, attempt, number)

    def _start_trials(
        self,
        arch: Architecture,
        task: TaskEntry,
        study: TunedStudy,
        trials: list[_Planned],
        attempt: int,
        launch: int,
    ) -> list[_Running]:
        """Record trials as started (their rows in one transaction, the stages, the display)
        before they go to Ray."""
        trial_ids = self.store.start_trials(
            self.book.evaluation(arch, task),
            [t.hparams for t in trials],
            study_name=study.name,
            numbers=[t.number for t in trials],
            attempt=attempt,
            launch=launch,
            ordinals=[t.ordinal for t in trials],
        )
        started = []
        for trial_id, trial in zip(trial_ids, trials, strict=True):
            running = _Running(
                trial_id,
                arch,
                task,
                study,
                trial.number,
                trial.hparams,
                attempt,
                f"job{self.job_id}-trial{trial_id}",
                launch,
                trial.ordinal,
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
        trials: list[_Planned],
        attempt: int,
        launch: int,
    ) -> None:
        """Send trials of one shape to Ray: a group of one alone, a larger one as a population."""
        members = self._start_trials(arch, task, study, trials, attempt, launch)
        cell = self.book.cell_data(arch)
        report = self.spec.pruner != "none"
        if len(members) == 1:
            request: TrialRequest | PopulationRequest = TrialRequest(
                key=members[0].key,
                cell=cell,
                task=task.name,
                settings=task.settings,
                hparams=trials[0].hparams,
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
            hparams=[t.hparams for t in trials],
            budget=task.budget,
            device=self.spec.device,
            report=report,
        )
        self.running[self.submit_population.remote(request, self.relay)] = members

    def release(self) -> bool:
        """Hand the oldest launch's results to its study (one transaction) and the architecture
        book, if every trial of it has ended; ``False`` if it has not."""
        if not self.order.head_ready:
            return False
        ended: list[_Ended] = self.order.release()
        ended[0].running.study.tell_many([(e.running.number, e.status, e.value) for e in ended])
        for end in ended:
            self.book.trial_ended(end.running.arch, end.running.task, end.value, hparams=end.running.hparams)
        if self.order.released == self.recorded.count:
            self._replayed()
        return True

    def _replayed(self) -> None:
        """The replay of a resumed job caught up: the display counts from the store again."""
        trials = self.store.job_summary(self.job_id).trials
        self.feed.resumed(self.budget.elapsed_before, self.budget.proposed, trials)

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
        trials = [_Planned(m.number, m.ordinal, m.hparams) for m in members]
        self._submit(first.arch, first.task, first.study, trials, first.attempt + 1, first.launch)

    def _record_results(self, members: list[_Running], results: list[TrialResult]) -> None:
        """Record the results of one Ray task's trials in the store (one transaction) and the
        display; they wait for their launch's release to reach the study and the book."""
        # An ``ok`` value that is no result (an overflow) is a divergence: checked here, before
        # the store, the study and the book see it, so none of them ranks it.
        pairs = list(zip(members, [honest_result(result) for result in results], strict=True))
        self.store.finish_trials([(running.trial_id, result) for running, result in pairs])
        for running, result in pairs:
            value = result.value if result.status == TrialStatus.OK else None
            ended = _Ended(running, TrialStatus(result.status), value)
            self.order.end(running.launch, running.ordinal, ended)
            self.feed.trial_finished(running.key, result.status)

    def _end(self, running: _Running, status: TrialStatus, error: str) -> None:
        """A trial that produced no result: ``failed`` counts as finished (and is released in its
        launch's turn), ``interrupted`` (the job stops) runs again when the job is resumed."""
        self.store.fail_trial(running.trial_id, error, status=status)
        self.feed.trial_finished(running.key, status)
        if status == TrialStatus.INTERRUPTED:
            self.book.trial_ended(running.arch, running.task, None, counted=False)
        else:
            self.order.end(running.launch, running.ordinal, _Ended(running, status, None))

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
