"""The driver loop: a strategy proposes cells, Ray trains them, Optuna tunes them, the store records.

:func:`run_job` owns one job run. It keeps up to ``max_in_flight`` trials busy on Ray
(``ray.wait``), walks every architecture through the job's task stages
(:class:`~search._strategies.Stages`), asks each (architecture, task) study for
hyperparameters (ask-and-tell, :mod:`search._tuning`), relays intermediate values to the
pruner through a Ray actor, and records every trial through the
:class:`~search._result_store.ResultStore` as it starts and ends (one transaction each, so a
killed driver loses no finished work). It is the only writer of the database.

Trials of one (architecture, task) that share a shape (layers, hidden size, batch size,
optimizer) are asked of the study together and trained as one population
(:func:`workers.train_population`, one Ray task) unless the job's ``population`` is ``off``;
each member still reports to its own Optuna trial through the relay and is recorded as its own
trial. With the job's ``prefilter`` on, mutants the strategy's zero-cost screen drops are
recorded in the job as filtered out (``filter_passed`` false, no trials) and never trained.

Resuming a job (``resume=True``) marks trials left ``running`` as interrupted, rebuilds
every architecture's progress from the database, reloads the strategy's state and runs
only what is unfinished. Ctrl-C (SIGINT) stops cleanly: running trials are cancelled and
recorded ``interrupted``, the state is saved and the job is marked ``interrupted``.

Example (a sketch; see ``examples/quickstart.yaml``)::

    from search import load_job, resolve_settings, run_job
    job_id = run_job(load_job("examples/quickstart.yaml"), resolve_settings())
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import ray
from ray import exceptions as ray_errors

from cells import CellGraph
from search._joblock import JobStateError, hold_job
from search._jobspec import JobSpec, TaskEntry
from search._progress import ProgressFeed
from search._records import EvaluationRecord
from search._result_store import ResultStore
from search._settings import Settings
from search._strategies import (
    Candidate,
    Outcome,
    Refine,
    Stages,
    Strategy,
    best_of,
    make_prefilter,
    make_strategy,
)
from search._tuning import StudyBook, TunedStudy, study_name
from workers import TrialResult, TrialStatus
from workers._population import plan_populations, population_size
from workers._runner import (
    Evaluate,
    PopulationRequest,
    TrialRequest,
    population_runner,
    start_relay,
    trial_runner,
)

logger = logging.getLogger(__name__)

MAX_RETRIES = 2
"""A trial whose worker dies is run again this many times, then recorded ``failed``."""

_POLL_SECONDS = 1.0
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


@dataclass
class _Arch:
    """An architecture of this job and its progress through the stages."""

    id: int
    hash: str
    graph: CellGraph
    label: str
    baseline: bool
    stages: Stages
    parent_hash: str | None = None
    reuse: bool = False
    """Known before this job: its evaluations may be copied from earlier jobs."""
    evaluations: dict[str, int] = field(default_factory=dict)
    """Task name -> evaluation id in this job."""
    recorded: set[str] = field(default_factory=set)
    """Tasks whose evaluation status is final in the store."""
    best_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Task id -> the sampled hyperparameters of the best ``ok`` trial in this run."""
    filter_recorded: bool = False
    finalized: bool = False
    cell_data: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Running:
    """A trial on Ray."""

    trial_id: int
    arch: _Arch
    task: TaskEntry
    study: TunedStudy
    number: int
    hparams: dict[str, Any]
    attempt: int
    key: str


def run_job(
    spec: JobSpec | None,
    settings: Settings,
    job_id: int | None = None,
    resume: bool = False,
    progress: ProgressFeed | None = None,
    evaluate: Evaluate | None = None,
    max_retries: int = MAX_RETRIES,
) -> int:
    """Run a job to its end (or to Ctrl-C, or SIGTERM) and return its id.

    ``spec``: the job to launch (``None`` with ``resume``: the stored spec is used).
    ``settings``: where the results database and Ray are (the spec's own ``db_url``, if set,
    wins over the default but not over an explicit setting: resolve it before). ``resume``:
    continue job ``job_id``. ``progress``: a feed the caller displays. ``evaluate``: replaces
    :func:`workers.evaluate_trial` on the workers (benchmarks). The job's final state is in
    the store: ``finished``, ``interrupted`` (Ctrl-C) or ``failed``. Resuming a finished job,
    or one that another process is running, raises :class:`JobStateError`.
    """
    store = ResultStore.open(settings.db_url)

    def drive(spec: JobSpec, job_id: int) -> None:
        feed = progress or ProgressFeed()
        feed.job_id, feed.job_name = job_id, spec.name
        _Driver(spec, job_id, store, settings.db_url, feed, evaluate, max_retries).run(resume)

    try:
        if resume:
            if job_id is None:
                raise ValueError("resume needs a job id")
            # The lock first: a live driver of this job refuses us before anything is touched.
            with hold_job(store.engine, job_id):
                if store.get_job(job_id).state == "finished":
                    raise JobStateError(f"job {job_id} is already finished; nothing to resume")
                spec = spec or store.load_job_spec(job_id)
                make_prefilter(spec)
                with _ray_session(settings.ray_address):
                    drive(spec, job_id)
            return job_id
        if spec is None:
            raise ValueError("launch needs a job spec")
        make_prefilter(spec)  # a bad prefilter section fails before anything is recorded
        with _ray_session(settings.ray_address):  # first: a cluster that cannot be joined records no job
            job_id = store.create_job(spec)
            with hold_job(store.engine, job_id):
                drive(spec, job_id)
        return job_id
    finally:
        store.close()


@contextmanager
def _ray_session(address: str | None) -> Iterator[None]:
    """Join the cluster at ``address`` or start a local instance, unless Ray is up already."""
    if ray.is_initialized():
        yield
        return
    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


class _Driver:
    def __init__(
        self,
        spec: JobSpec,
        job_id: int,
        store: ResultStore,
        db_url: str,
        feed: ProgressFeed,
        evaluate: Evaluate | None,
        max_retries: int,
    ) -> None:
        self.spec = spec
        self.job_id = job_id
        self.store = store
        self.feed = feed
        self.max_retries = max_retries
        self.studies = StudyBook(db_url, sampler=spec.sampler, pruner=spec.pruner, seed=spec.seed)
        self.strategy: Strategy = make_strategy(spec)
        self.archs: dict[str, _Arch] = {}
        self.active: dict[str, _Arch] = {}
        """Architectures with stages left, oldest first (their trials go out first)."""
        self.running: dict[ray.ObjectRef, list[_Running]] = {}
        """Ray task -> its trials: one, or the members of a population (in the request's order)."""
        self.by_key: dict[str, _Running] = {}
        self.baseline_hashes: list[str] = []
        self.baseline_best: dict[str, float | None] = {}
        """Best baseline value of each task whose baselines are complete."""
        self.refined: dict[str, int] = {}
        """Extra trials per search task given to each refined architecture (survives resume)."""
        self.proposed = 0
        self.prefiltered: set[str] = set()
        """Hashes of the mutants the pre-filter dropped (in the job, never trained)."""
        self.trials_counted = 0
        self.strategy_idle = False
        self.stop_reason: str | None = None
        self.stop_signal = "SIGINT"
        self.clock_before = 0.0
        self.clock_start = time.monotonic()
        self.spaces = {t.id: spec.search_space(t) for t in spec.tasks}
        self.distributions = {name: space.to_optuna() for name, space in self.spaces.items()}
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
        self.relay: Any = None
        self.max_in_flight = 1

    # -- the loop ------------------------------------------------------------------------

    def run(self, resume: bool) -> None:
        self.max_in_flight = self.spec.resources.max_in_flight or _cluster_slots(self.spec)
        self.relay = start_relay(node_id=ray.get_runtime_context().get_node_id())
        # Wait for it: a trial's first report (or its start notice) must not queue behind its start-up.
        ray.get(self.relay.workers.remote())
        previous_handler = _install_sigint(self)
        try:
            if resume:
                self._restore()
            else:
                self._start()
            self.store.set_job_state(self.job_id, "running")
            self.feed.state = "running"
            self._loop()
            if self.stop_reason == "interrupted":
                self._interrupt()
            else:
                self._save()
                self.store.set_job_state(self.job_id, "finished")
                self.feed.state = "finished"
        except BaseException as exc:
            self._abandon(f"driver error: {type(exc).__name__}: {exc}")
            raise
        finally:
            _restore_sigint(previous_handler)
            self.studies.close()
            if self.relay is not None:
                ray.kill(self.relay)

    def _loop(self) -> None:
        poll = self.relay.poll.remote(_POLL_SECONDS)
        # Out of time: nothing new starts, the running trials finish. Ctrl-C: leave at once.
        while self.stop_reason != "interrupted":
            self._check_budget()
            self._settle()
            self._fill()
            if not self.running and not self._has_work():
                break
            ready, _ = ray.wait([*self.running, poll], num_returns=1, timeout=_POLL_SECONDS)
            if not ready:
                continue
            done = (
                ray.wait(list(self.running), num_returns=len(self.running), timeout=0)[0]
                if self.running
                else []
            )
            if poll in ready:
                self._relay(*ray.get(poll))
                poll = self.relay.poll.remote(_POLL_SECONDS)
            finished_keys = []
            for ref in done:
                members = self.running.pop(ref)
                for running in members:
                    self.by_key.pop(running.key, None)
                    finished_keys.append(running.key)
                self._collect(ref, members)
            if finished_keys:
                self.relay.forget.remote(finished_keys)
        self._settle()

    def _fill(self) -> None:
        """Submit trials until ``max_in_flight`` run, proposing architectures when none waits."""
        while len(self.running) < self.max_in_flight and self.stop_reason is None:
            if self._trial_budget_left() <= 0:
                return
            launch = self._next_launch()
            if launch is not None:
                self._launch(*launch)
                continue
            if not self._may_propose():
                return
            self._propose()

    def _has_work(self) -> bool:
        if self._trial_budget_left() > 0 and any(self._wanted(a) for a in self.active.values()):
            return True
        return self._may_propose()

    # -- architectures -------------------------------------------------------------------

    def _start(self) -> None:
        for name, graph in self.spec.baseline_graphs:
            candidate = Candidate.of(graph, "baseline", library_name=name, gated=False)
            if candidate.hash in self.archs:
                continue
            self.strategy.register(candidate)
            self._add(candidate)
        self.baseline_hashes = list(dict.fromkeys(c.hash for c in self._baseline_candidates()))
        self._save()

    def _baseline_candidates(self) -> list[Candidate]:
        return [
            Candidate.of(g, "baseline", library_name=n, gated=False) for n, g in self.spec.baseline_graphs
        ]

    def _store_candidate(self, candidate: Candidate) -> tuple[int, bool]:
        """Add a candidate's architecture to the store (deduplicated by hash) under this job."""
        parent = self.archs.get(candidate.parent_hash or "")
        return self.store.add_architecture(
            candidate.graph,
            job_id=self.job_id,
            parent_id=parent.id if parent else None,
            mutation=candidate.mutation,
            generation=candidate.generation,
            library_name=candidate.library_name,
        )

    def _add(self, candidate: Candidate, arch_id: int | None = None) -> _Arch:
        """Record a proposed candidate (or adopt one the job has already) and start its stages."""
        if candidate.hash in self.archs:
            return self.archs[candidate.hash]
        reuse = False
        if arch_id is None:
            arch_id, created = self._store_candidate(candidate)
            if not created:
                reuse = True
                self.store.update_job_architecture(self.job_id, arch_id, duplicate=True)
        trials = {t.id: self.spec.trials_for(t) for t in self.spec.tasks}
        arch = _Arch(
            id=arch_id,
            hash=candidate.hash,
            graph=candidate.graph,
            label=candidate.library_name or candidate.mutation or candidate.origin,
            baseline=candidate.origin == "baseline",
            stages=Stages(self.spec.tasks, trials, gated=candidate.gated),
            parent_hash=candidate.parent_hash,
            reuse=reuse,
            cell_data=candidate.graph.model_dump(mode="json"),
        )
        self.archs[arch.hash] = arch
        self.active[arch.hash] = arch
        if reuse:
            self._reuse_evaluations(arch)
        return arch

    def _reuse_evaluations(self, arch: _Arch) -> None:
        """Take finished evaluations of earlier jobs with the same task settings instead of training."""
        for task in self.spec.tasks:
            if task.id in arch.evaluations:
                continue
            source = self.store.find_reusable_evaluation(arch.id, task.key, exclude_job_id=self.job_id)
            if source is None:
                continue
            copied = self.store.copy_evaluation_into_job(source.id, self.job_id, task_label=task.id)
            arch.evaluations[task.id] = copied.id
            arch.stages.restore(task.id, copied.trials_finished, copied.best_value)
            self.feed.evaluations_reused += 1

    def _propose(self) -> None:
        proposal = self.strategy.ask()
        self._record_prefiltered()
        if proposal is None:
            self.strategy_idle = True
            return
        if isinstance(proposal, Refine):
            arch = self.archs.get(proposal.hash)
            if arch is None or arch.baseline or not arch.stages.refine(proposal.trials):
                self._tell(arch, proposal.hash)  # nothing to refine: give it straight back
            else:
                self.refined[arch.hash] = self.refined.get(arch.hash, 0) + proposal.trials
                arch.finalized = False
                self.active[arch.hash] = arch
        else:
            self.proposed += 1
            self.feed.architectures_proposed += 1
            self._add(proposal)
        self.feed.duplicates = self.strategy.duplicates
        self._save()

    def _record_prefiltered(self) -> None:
        """Record the mutants the strategy's pre-filter dropped: in the job, filtered out, never trained."""
        dropped = self.strategy.take_prefiltered()
        if not dropped:
            return
        reason = self.strategy.prefilter.reason if self.strategy.prefilter else "pre-filter"
        for candidate in dropped:
            arch_id, _ = self._store_candidate(candidate)
            self.store.update_job_architecture(self.job_id, arch_id, filter_passed=False, evaluated=False)
            self.prefiltered.add(candidate.hash)
            logger.info("architecture %s dropped before training (%s)", arch_id, reason)

    def _wanted(self, arch: _Arch) -> list[tuple[str, int]]:
        return arch.stages.advance(self.baseline_best)

    def _next_launch(self) -> tuple[_Arch, TaskEntry, int] | None:
        for arch in self.active.values():
            wanted = self._wanted(arch)
            if wanted:
                return arch, self.spec.task(wanted[0][0]), wanted[0][1]
        return None

    def _settle(self) -> None:
        """Record finished stages and retire architectures whose stages are over, until nothing changes
        (a baseline finishing a task may decide the gates of others)."""
        changed = True
        while changed:
            changed = False
            for arch in list(self.active.values()):
                arch.stages.advance(self.baseline_best)
                changed |= self._record_stages(arch)
                if arch.stages.status != "running" and not arch.stages.running:
                    self._retire(arch)
                    changed = True

    def _record_stages(self, arch: _Arch) -> bool:
        """Write finished stages to the store (evaluation status, the filter verdict); True when
        a baseline value became known."""
        stages = arch.stages
        known = len(self.baseline_best)
        for task in self.spec.tasks:
            progress = stages.progress[task.id]
            if task.id in arch.recorded or not progress.complete or progress.running:
                continue
            evaluation_id = arch.evaluations.get(task.id)
            if evaluation_id is not None:
                filtered = stages.status == "filtered" and stages.stopped_at == task.id
                self.store.set_evaluation(evaluation_id, status="filtered-out" if filtered else "done")
            arch.recorded.add(task.id)
            self._update_baseline_best(arch, task)
        filters = [t for t in self.spec.tasks if t.role == "filter"]
        if filters and not arch.filter_recorded and all(stages.progress[t.id].complete for t in filters):
            passed = all(t.passes_filter(stages.progress[t.id].best) for t in filters)
            self.store.update_job_architecture(self.job_id, arch.id, filter_passed=passed)
            arch.filter_recorded = True
        return len(self.baseline_best) != known

    def _update_baseline_best(self, arch: _Arch, task: TaskEntry) -> None:
        if not arch.baseline or task.id in self.baseline_best:
            return
        baselines = [self.archs[h] for h in self.baseline_hashes if h in self.archs]
        if len(baselines) == len(self.baseline_hashes) and all(
            b.stages.progress[task.id].complete for b in baselines
        ):
            values = [b.stages.progress[task.id].best for b in baselines]
            self.baseline_best[task.id] = best_of(values, task.direction)
            if self._baselines_complete():
                for waiting in self.archs.values():
                    if not waiting.finalized and waiting.hash not in self.active:
                        self._finalize(waiting)

    def _baselines_complete(self) -> bool:
        return all(t.id in self.baseline_best for t in self.spec.tasks if t.role != "filter")

    def _retire(self, arch: _Arch) -> None:
        """The architecture's stages are over: score it once the baselines are known."""
        self.active.pop(arch.hash, None)
        arch.cell_data = {}  # rebuilt if it is refined; thousands of retired cells stay small
        for task in self.spec.tasks:
            self.studies.forget(study_name(self.job_id, arch.id, task.key, task.id))
        if self._baselines_complete() or arch.stages.status == "filtered":
            self._finalize(arch)

    def _finalize(self, arch: _Arch) -> None:
        if arch.finalized:
            return
        arch.finalized = True
        stages = arch.stages
        relative = stages.relative(self.baseline_best)
        for task_name, value in relative.items():
            if task_name in arch.evaluations:
                self.store.set_evaluation(arch.evaluations[task_name], relative_score=value)
        score = stages.score(self.baseline_best) if stages.status != "filtered" else None
        self.store.update_job_architecture(
            self.job_id, arch.id, score=score, evaluated=stages.status in ("done", "stopped")
        )
        outcome = {"done": "evaluated", "filtered": "filtered", "stopped": "stopped"}[stages.status]
        if not arch.baseline and arch.hash not in self.refined:
            self.feed.architecture_done(arch.id, outcome, score)
        if score is not None and (self.feed.best_score is None or score > self.feed.best_score):
            equations = self.store.get_architecture(arch.id).equations
            self.feed.new_best(arch.id, score, arch.label, equations)
        self._tell(arch, arch.hash)
        self._save()

    def _tell(self, arch: _Arch | None, cell_hash: str) -> None:
        if arch is None:
            self.strategy.tell(Outcome(cell_hash, None, False))
        else:
            stages = arch.stages
            score = stages.score(self.baseline_best) if stages.status != "filtered" else None
            self.strategy.tell(Outcome(arch.hash, score, stages.complete, baseline=arch.baseline))
        self.strategy_idle = False
        listed = [self.archs[h].id for h in self.strategy.listed() if h in self.archs]
        self.store.set_listed(self.job_id, listed)

    # -- trials --------------------------------------------------------------------------

    def _launch(self, arch: _Arch, task: TaskEntry, wanted: int = 1) -> None:
        """Start ``wanted`` trials of ``arch`` on ``task`` (fewer if the trial budget says so): one
        alone, or several asked of the study at once and trained as populations of one shape."""
        count = int(max(1, min(wanted, self.population_limit, self._trial_budget_left())))
        study = self._study(arch, task)
        asked = study.ask_many(count)
        hparams = [self.spaces[task.id].hparams_from(a.params).model_dump(mode="json") for a in asked]
        self.trials_counted += count
        if count == 1:
            self._submit(arch, task, study, asked[0].number, hparams[0], attempt=1)
            return
        for group in plan_populations(hparams, count):
            trials = [(asked[i].number, hparams[i]) for i in group]
            self._submit_population(arch, task, study, trials, attempt=1)

    def _start_trials(
        self,
        arch: _Arch,
        task: TaskEntry,
        study: TunedStudy,
        trials: list[tuple[int, dict[str, Any]]],
        attempt: int,
    ) -> list[_Running]:
        """Record ``(optuna number, hparams)`` trials as started (their rows in one transaction,
        the stages, the display) before they go to Ray."""
        trial_ids = self.store.start_trials(
            self._evaluation(arch, task),
            [hp for _, hp in trials],
            study_name=study.name,
            numbers=[number for number, _ in trials],
            attempt=attempt,
        )
        if not arch.cell_data:
            arch.cell_data = arch.graph.model_dump(mode="json")
        started = []
        for trial_id, (number, hparams) in zip(trial_ids, trials, strict=True):
            running = _Running(
                trial_id, arch, task, study, number, hparams, attempt, f"job{self.job_id}-trial{trial_id}"
            )
            self.by_key[running.key] = running
            arch.stages.started(task.id)
            self.feed.trial_submitted(running.key)
            started.append(running)
        return started

    def _submit_population(
        self,
        arch: _Arch,
        task: TaskEntry,
        study: TunedStudy,
        trials: list[tuple[int, dict[str, Any]]],
        attempt: int,
    ) -> None:
        """Send ``(optuna number, hparams)`` trials of one shape as one population; a group of one
        goes alone."""
        if len(trials) == 1:
            self._submit(arch, task, study, trials[0][0], trials[0][1], attempt)
            return
        members = self._start_trials(arch, task, study, trials, attempt)
        request = PopulationRequest(
            keys=[m.key for m in members],
            cell=arch.cell_data,
            task=task.name,
            settings=task.settings,
            hparams=[hp for _, hp in trials],
            budget=task.budget,
            device=self.spec.device,
            report=self.spec.pruner != "none",
        )
        self.running[self.submit_population.remote(request, self.relay)] = members

    def _submit(
        self,
        arch: _Arch,
        task: TaskEntry,
        study: TunedStudy,
        number: int,
        hparams: dict[str, Any],
        attempt: int,
    ) -> None:
        (running,) = self._start_trials(arch, task, study, [(number, hparams)], attempt)
        request = TrialRequest(
            key=running.key,
            cell=arch.cell_data,
            task=task.name,
            settings=task.settings,
            hparams=hparams,
            budget=task.budget,
            device=self.spec.device,
            report=self.spec.pruner != "none",
        )
        self.running[self.submit.remote(request, self.relay)] = [running]

    def _study(self, arch: _Arch, task: TaskEntry) -> TunedStudy:
        name = study_name(self.job_id, arch.id, task.key, task.id)
        study = self.studies.cached(name)
        if study is None:
            study = self.studies.study(name, task.direction, self.distributions[task.id])
            if study.num_trials == 0 and arch.parent_hash is not None:
                params = self._best_params(self.archs.get(arch.parent_hash), task)
                if params:
                    study.enqueue(params)  # the child starts from its parent's best setting
        return study

    def _best_params(self, arch: _Arch | None, task: TaskEntry) -> dict[str, Any] | None:
        if arch is None:
            return None
        if task.id in arch.best_params:
            return arch.best_params[task.id]
        evaluation_id = arch.evaluations.get(task.id)
        if evaluation_id is None:
            return None
        best_trial = self.store.get_evaluation(evaluation_id).best_trial_id
        return None if best_trial is None else self.store.get_trial(best_trial).hparams

    def _evaluation(self, arch: _Arch, task: TaskEntry) -> int:
        if task.id not in arch.evaluations:
            record: EvaluationRecord = self.store.get_or_create_evaluation(self.job_id, arch.id, task)
            arch.evaluations[task.id] = record.id
        return arch.evaluations[task.id]

    def _collect(self, ref: ray.ObjectRef, members: list[_Running]) -> None:
        """Record the trials of a Ray task that ended: their results, a retry, or a failure."""
        first = members[0]
        arch, task = first.arch, first.task
        try:
            outcome: TrialResult | list[TrialResult] = ray.get(ref)
        except ray_errors.TaskCancelledError:
            for running in members:
                self._end(running, None, "interrupted", "cancelled")
            return
        except _RETRYABLE as exc:
            reason = f"{type(exc).__name__}: {_first_line(exc)}"
            if first.attempt <= self.max_retries and self.stop_reason is None:
                for running in members:
                    self.store.fail_trial(
                        running.trial_id, f"attempt {running.attempt}: {reason}", status="interrupted"
                    )
                    arch.stages.finished(task.id, None, counted=False)
                    self.feed.trial_finished(running.key, "interrupted", retried=True)
                trials = [(m.number, m.hparams) for m in members]
                self._submit_population(arch, task, first.study, trials, first.attempt + 1)
            else:
                for running in members:
                    self._end(running, None, "failed", f"{reason} (after {running.attempt} attempts)")
            return
        except ray_errors.RayTaskError as exc:  # a bug in the runner itself: no retry
            for running in members:
                self._end(running, None, "failed", f"{type(exc).__name__}: {_first_line(exc)}")
            return
        results = outcome if isinstance(outcome, list) else [outcome]
        self._record_results(members, results)

    def _record_results(self, members: list[_Running], results: list[TrialResult]) -> None:
        """Record the results of one Ray task's trials (one arch, task and study): the store and
        the study each in one transaction, then the stages and the display."""
        arch, task, study = members[0].arch, members[0].task, members[0].study
        pairs = list(zip(members, results, strict=True))
        evaluations = self.store.finish_trials([(running.trial_id, result) for running, result in pairs])
        study.tell_many([(running.number, result.status, result.value) for running, result in pairs])
        for running, result, evaluation in zip(members, results, evaluations, strict=True):
            if evaluation.best_trial_id == running.trial_id:
                arch.best_params[task.id] = running.hparams
            arch.stages.finished(task.id, result.value if result.status == "ok" else None)
            self.feed.trial_finished(running.key, result.status)

    def _end(self, running: _Running, result: TrialResult | None, status: str, error: str) -> None:
        """A trial that produced no result: ``failed`` counts as finished, ``interrupted`` runs again."""
        self.store.fail_trial(
            running.trial_id, error, status="failed" if status == "failed" else "interrupted"
        )
        running.study.tell(
            running.number, TrialStatus.FAILED if status == "failed" else TrialStatus.INTERRUPTED, None
        )
        running.arch.stages.finished(running.task.id, None, counted=status == "failed")
        self.feed.trial_finished(running.key, status)

    def _relay(
        self, reports: list[tuple[str, int, float]], started: list[tuple[str, dict[str, Any]]]
    ) -> None:
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

    # -- budget --------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return self.clock_before + time.monotonic() - self.clock_start

    def _check_budget(self) -> None:
        limit = self.spec.budget.max_seconds
        if limit is not None and self.stop_reason is None and self._elapsed() >= limit:
            self.stop_reason = "time"

    def _trial_budget_left(self) -> float:
        if self.stop_reason is not None:
            return 0
        limit = self.spec.budget.max_trials
        return float("inf") if limit is None else limit - self.trials_counted

    def _may_propose(self) -> bool:
        if self.stop_reason is not None or self.strategy_idle or self.strategy.finished:
            return False
        if self._trial_budget_left() <= 0:
            return False
        limit = self.spec.budget.max_architectures
        if limit is not None and self.proposed >= limit:
            return False
        # Enough architectures in progress to keep the workers busy: finish those first.
        return len(self.active) <= self.max_in_flight

    # -- saving, stopping, resuming ------------------------------------------------------

    def _save(self) -> None:
        strategy_state = self.strategy.state_dict()
        # The seen set is the job's architectures, which the store has: rebuilt on resume, not
        # rewritten after every architecture (it grows with the job).
        strategy_state.pop("seen", None)
        state = {
            "strategy": strategy_state,
            "driver": {
                "refined": self.refined,
                "proposed": self.proposed,
                "elapsed": self._elapsed(),
                "baselines": self.baseline_hashes,
            },
        }
        self.store.save_strategy_state(self.job_id, state)

    def _interrupt(self) -> None:
        """Ctrl-C or SIGTERM: cancel running trials, record them interrupted, save, mark the job."""
        self.feed.state = "interrupting"
        for ref, members in list(self.running.items()):
            ray.cancel(ref, force=True)
            for running in members:
                self._end(running, None, "interrupted", f"interrupted by the user ({self.stop_signal})")
        self.running.clear()
        self.by_key.clear()
        self._save()
        self.store.set_job_state(self.job_id, "interrupted")
        self.feed.state = "interrupted"

    def _abandon(self, error: str) -> None:
        """The driver itself failed: cancel what runs, keep what finished, mark the job failed."""
        try:
            for ref in list(self.running):
                ray.cancel(ref, force=True)
            self.store.mark_running_trials_interrupted(self.job_id)
            self.studies.abandon_open()
            self.store.set_job_state(self.job_id, "failed", error=error)
        except Exception:  # the database itself may be what failed; the original error wins
            logger.exception("could not record the failure of job %s", self.job_id)
        self.feed.state = "failed"

    def _restore(self) -> None:
        """Rebuild the job's progress from the database after a stop or a crash."""
        interrupted = self.store.mark_running_trials_interrupted(self.job_id)
        self.feed.trials_interrupted += interrupted
        saved = self.store.load_strategy_state(self.job_id) or {}
        members = self.store.job_architectures(self.job_id)
        records = {m.architecture_id: self.store.get_architecture(m.architecture_id) for m in members}
        if "strategy" in saved:
            pending = [e["hash"] for e in saved["strategy"].get("pending", [])]
            seen = {r.canonical_hash for r in records.values()} | set(pending)
            self.strategy.load_state_dict({**saved["strategy"], "seen": sorted(seen)})
        driver_state = saved.get("driver", {})
        self.refined = {k: int(v) for k, v in driver_state.get("refined", {}).items()}
        self.clock_before = float(driver_state.get("elapsed", 0.0))
        self.feed.elapsed_before = self.clock_before
        self.baseline_hashes = list(
            driver_state.get("baselines") or [c.hash for c in self._baseline_candidates()]
        )
        baseline_set = set(self.baseline_hashes)

        evaluations: dict[int, list[EvaluationRecord]] = {}
        for evaluation in self.store.evaluations(self.job_id):
            evaluations.setdefault(evaluation.architecture_id, []).append(evaluation)
        summary = self.store.job_summary(self.job_id).trials
        self.trials_counted = summary.completed + summary.pruned + summary.failed + summary.diverged
        by_id = {t.id: t for t in self.spec.tasks}
        gated = self.spec.strategy.kind != "fixed"
        hashes = {arch_id: r.canonical_hash for arch_id, r in records.items()}
        for member in members:
            record = records[member.architecture_id]
            if member.filter_passed is False and not evaluations.get(record.id):
                self.prefiltered.add(record.canonical_hash)  # dropped by the pre-filter: nothing to run
                continue
            graph = record.cell()
            is_baseline = record.canonical_hash in baseline_set
            parent = hashes.get(record.parent_id) if record.parent_id else None
            candidate = Candidate(
                graph=graph,
                hash=record.canonical_hash,
                origin="baseline" if is_baseline else "mutation",
                parent_hash=parent,
                mutation=record.mutation,
                library_name=record.library_name,
                generation=member.generation,
                gated=gated and not is_baseline,
            )
            arch = self._add(candidate, arch_id=record.id)
            arch.filter_recorded = member.filter_passed is not None
            if not is_baseline:
                self.proposed += 1
            for evaluation in evaluations.get(record.id, []):
                task = by_id.get(evaluation.task_label)
                if task is None:
                    continue
                arch.evaluations[task.id] = evaluation.id
                arch.stages.restore(task.id, evaluation.trials_finished, evaluation.best_value)
            if record.first_job_id != self.job_id:  # known from an earlier job: reuse what it has
                arch.reuse = True
                self._reuse_evaluations(arch)
            extra = self.refined.get(arch.hash, 0)
            for task in self.spec.tasks:
                progress = arch.stages.progress[task.id]
                if task.role == "search" and extra:
                    progress.target = max(progress.target, self.spec.trials_for(task) + extra)
            for evaluation in evaluations.get(record.id, []):
                task = by_id.get(evaluation.task_label)
                if task is not None and evaluation.status in ("done", "filtered-out"):
                    arch.recorded.add(task.id)
            if not self.strategy.is_known(arch.hash):
                self.strategy.register(candidate)
        self.proposed = max(self.proposed, int(driver_state.get("proposed", 0)))
        self.feed.architectures_proposed = self.proposed
        self.feed.trials_done = self.trials_counted
        self.feed.trials_pruned, self.feed.trials_failed = summary.pruned, summary.failed
        self.feed.trials_diverged = summary.diverged
        for cell_hash in self.baseline_hashes:  # baselines first: the yardstick of every gate
            if cell_hash in self.archs:
                for task in self.spec.tasks:
                    self._update_baseline_best(self.archs[cell_hash], task)
        for arch in list(self.archs.values()):
            arch.stages.advance(self.baseline_best)
            finished = arch.stages.status != "running"
            if finished:
                self.active.pop(arch.hash, None)
                # Told before the stop: nothing to do. Not told (stopped in between): tell now.
                arch.finalized = not self.strategy.awaiting(arch.hash)
                if not arch.finalized and (self._baselines_complete() or arch.stages.status == "filtered"):
                    self._finalize(arch)
                elif arch.finalized and not arch.baseline:
                    outcome = {"done": "evaluated", "filtered": "filtered", "stopped": "stopped"}
                    self.feed.architecture_done(arch.id, outcome[arch.stages.status], None)
        self._save()


def _cluster_slots(spec: JobSpec) -> int:
    """Trials the cluster can run at once with the job's resources per trial."""
    total = ray.cluster_resources()
    resources = spec.resources
    slots = [total.get("CPU", 1.0) / resources.cpus]
    if resources.gpus > 0:
        slots.append(total.get("GPU", 0.0) / resources.gpus)
    for name, amount in resources.custom.items():
        slots.append(total.get(name, 0.0) / amount)
    return max(1, int(min(slots) + 1e-9))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _install_sigint(driver: _Driver) -> dict[int, Any] | None:
    """Ctrl-C (and SIGTERM, e.g. ``docker stop``) ask the loop to stop cleanly; only the main
    thread can handle signals, elsewhere they keep their default."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: FrameType | None) -> None:
        driver.stop_reason = "interrupted"
        driver.stop_signal = signal.Signals(signum).name

    return {sig: signal.signal(sig, handler) for sig in _STOP_SIGNALS}


def _restore_sigint(previous: dict[int, Any] | None) -> None:
    for sig, handler in (previous or {}).items():
        signal.signal(sig, handler)
