"""The architecture book of a job: its candidates, their stages, the baselines, their scores.

The book knows nothing of Ray. It records every architecture the strategy proposes (or the job
starts with, the baselines) in the store, walks each through the job's task stages
(:class:`~search._strategies.Stages`), learns the best baseline value of each task, and once an
architecture's stages are over scores it against the baselines, tells the strategy and records
the score (:meth:`ArchitectureBook.settle`). The trial scheduler reports each trial's start and
end back (:meth:`ArchitectureBook.trial_started`, :meth:`ArchitectureBook.trial_ended`).

The book learns results in launch order (:mod:`search._launch_order`), so what it proposes and
launches is a function of the job file, its seed and the results. A resumed job builds a new
book and replays the stopped run's launches through it (:mod:`search._replay`): its writes to
the store set what the stopped run set.

Queries (:meth:`ArchitectureBook.next_launch`, :meth:`ArchitectureBook.may_propose`) change nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cells import CellGraph
from search._final_round import FINAL_SUFFIX, FinalRound
from search._job_budget import JobBudget
from search._jobspec import JobSpec, TaskEntry
from search._origin import random_origin
from search._progress import ProgressFeed
from search._records import EvaluationRecord
from search._result_store import ResultStore
from search._score_bounds import evaluation_interval, score_bounds
from search._states import EvaluationStatus
from search._strategies import Candidate, Ladder, Outcome, Refine, Stages, StageStatus, Strategy, best_of
from search._tuning import StudyBook, TunedStudy, study_name

logger = logging.getLogger(__name__)

OUTCOMES = {StageStatus.DONE: "evaluated", StageStatus.FILTERED: "filtered", StageStatus.STOPPED: "stopped"}
"""Stage status of a retired architecture -> the outcome the display and trackers count."""


@dataclass
class Architecture:
    """An architecture of this job and its progress through the stages."""

    id: int
    hash: str
    graph: CellGraph
    label: str
    baseline: bool
    stages: Stages
    parent_hash: str | None = None
    evaluations: dict[str, int] = field(default_factory=dict)
    """Task name -> evaluation id in this job."""
    recorded: set[str] = field(default_factory=set)
    """Tasks whose evaluation status is final in the store."""
    best_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Task id -> the sampled hyperparameters of the best ``ok`` trial in this run."""
    filter_recorded: bool = False
    finalized: bool = False
    cell_data: dict[str, Any] = field(default_factory=dict)


class ArchitectureBook:
    """Every architecture of one job run, the baselines' bests and the strategy that proposes."""

    def __init__(
        self,
        spec: JobSpec,
        job_id: int,
        store: ResultStore,
        studies: StudyBook,
        strategy: Strategy,
        budget: JobBudget,
        feed: ProgressFeed,
    ) -> None:
        self.spec, self.job_id, self.store, self.studies = spec, job_id, store, studies
        self.tasks = spec.stage_tasks
        """The stages: the job's tasks, with the lower rungs of its laddered ones (``halving``)."""
        self.ladder = None if spec.halving is None else Ladder(spec.tasks, spec.halving)
        self.promoted_again: set[str] = set()
        """Architectures a later result promoted after they had been scored at a lower rung."""
        self.strategy, self.budget, self.feed = strategy, budget, feed
        self.archs: dict[str, Architecture] = {}
        self.active: dict[str, Architecture] = {}
        """Architectures with stages left, oldest first (their trials go out first)."""
        self.baseline_hashes: list[str] = []
        self.baseline_best: dict[str, float | None] = {}
        """Best baseline value of each task whose baselines are complete."""
        self.refined: dict[str, int] = {}
        """Extra trials per search task given to each refined architecture (survives resume)."""
        self.prefiltered: set[str] = set()
        """Hashes of the mutants the pre-filter dropped (in the job, never trained)."""
        self.strategy_idle = False
        self.distributions = {t.id: spec.search_space(t).to_optuna() for t in self.tasks}
        self.final: FinalRound | None = None
        """The job's final round, once the search is over (``spec.final``)."""
        self.window = 1
        """Launches in flight at once (the scheduler's window), kept so a resume decides alike."""

    # -- queries -------------------------------------------------------------------------

    def next_launch(self) -> tuple[Architecture, TaskEntry, int] | None:
        """The oldest active architecture with trials to launch, its task and how many (in the
        final round: the first entry with seeds left, one trial at a time)."""
        if self.final is not None:
            entry = self.final.next_launch()
            return None if entry is None else (self.archs[entry.arch_hash], entry.task, 1)
        for arch in self.active.values():
            wanted = arch.stages.wanted(self.baseline_best)
            if wanted:
                return arch, self.spec.task(wanted[0][0]), wanted[0][1]
        return None

    def may_propose(self, max_in_flight: int) -> bool:
        """Whether to ask the strategy for another architecture now."""
        if self.strategy_idle or self.strategy.finished or not self.budget.may_propose():
            return False
        # Enough architectures in progress to keep the workers busy: finish those first.
        return len(self.active) <= max_in_flight

    def baseline_candidates(self) -> list[Candidate]:
        return [
            Candidate.of(g, "baseline", library_name=n, gated=False) for n, g in self.spec.baseline_graphs
        ]

    # -- architectures -------------------------------------------------------------------

    def start(self) -> None:
        """A new job: add its baselines."""
        for candidate in self.baseline_candidates():
            if candidate.hash in self.archs:
                continue
            self.strategy.register(candidate)
            self.add(candidate)
        self.baseline_hashes = list(dict.fromkeys(c.hash for c in self.baseline_candidates()))
        self.save()

    def add(self, candidate: Candidate, arch_id: int | None = None) -> Architecture:
        """Record a proposed candidate (or adopt one the job has already, ``arch_id``) and start
        its stages."""
        if candidate.hash in self.archs:
            return self.archs[candidate.hash]
        reuse = False  # known before this job: its evaluations may be copied from earlier jobs
        if arch_id is None:
            arch_id, created = self._store_candidate(candidate)
            if not created:
                reuse = True
                self.store.update_job_architecture(self.job_id, arch_id, duplicate=True)
        trials = {t.id: self.spec.trials_for(t) for t in self.tasks}
        ladder = self.ladder if candidate.gated else None
        arch = Architecture(
            id=arch_id,
            hash=candidate.hash,
            graph=candidate.graph,
            label=candidate.library_name or candidate.mutation or candidate.origin,
            baseline=candidate.origin == "baseline",
            stages=Stages(
                self.tasks,
                trials,
                gated=candidate.gated,
                rungs=self.spec.rungs,
                promotion=None if ladder is None else partial(ladder.verdict, candidate.hash),
            ),
            parent_hash=candidate.parent_hash,
            cell_data=candidate.graph.model_dump(mode="json"),
        )
        self.archs[arch.hash] = arch
        self.active[arch.hash] = arch
        if reuse:
            self.reuse_evaluations(arch)
        return arch

    def _store_candidate(self, candidate: Candidate) -> tuple[int, bool]:
        """Add a candidate's architecture to the store (deduplicated by hash) under this job."""
        parent = self.archs.get(candidate.parent_hash or "")
        mutation = candidate.mutation
        if candidate.origin == "random":  # so it never reads as a seed cell (search._origin)
            mutation = random_origin(self.job_id, self.spec.seed)
        return self.store.add_architecture(
            candidate.graph,
            job_id=self.job_id,
            parent_id=parent.id if parent else None,
            mutation=mutation,
            generation=candidate.generation,
            library_name=candidate.library_name,
        )

    def reuse_evaluations(self, arch: Architecture) -> None:
        """Take finished evaluations of earlier jobs with the same task settings instead of training."""
        for task in self.tasks:
            if task.id in arch.evaluations:
                continue
            source = self.store.find_reusable_evaluation(arch.id, task.key, exclude_job_id=self.job_id)
            if source is None:
                continue
            copied = self.store.copy_evaluation_into_job(source.id, self.job_id, task_label=task.id)
            arch.evaluations[task.id] = copied.id
            arch.stages.restore(task.id, copied.trials_finished, copied.best_value)
            self.feed.evaluation_reused()

    def propose(self) -> None:
        """Ask the strategy for a new architecture (or a refinement of a listed one)."""
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
            self.budget.count_proposal()
            self.feed.architecture_proposed()
            self.add(proposal)
        self.feed.duplicates_skipped(self.strategy.duplicates)
        self.save()

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

    # -- trials, as the scheduler reports them -------------------------------------------

    def study(self, arch: Architecture, task: TaskEntry) -> TunedStudy:
        """The (architecture, task) study; a new child's starts from its parent's best setting."""
        name = study_name(self.job_id, arch.id, task.key, task.id)
        study = self.studies.cached(name)
        if study is None:
            # Paired by task: every cell's k-th trial on a task draws the same hyperparameters.
            study = self.studies.study(name, task.direction, self.distributions[task.id], pairing=task.id)
            if study.num_trials == 0 and self.final is not None and task.id in self.final.task_ids:
                search_task = self.spec.task(task.id.removesuffix(FINAL_SUFFIX))
                study.enqueue(self._best_params(arch, search_task) or {}, repeat=int(task.trials or 1))
            elif study.num_trials == 0 and arch.parent_hash is not None:
                params = self._best_params(self.archs.get(arch.parent_hash), task)
                if params:
                    study.enqueue(params)
        return study

    def _best_params(self, arch: Architecture | None, task: TaskEntry) -> dict[str, Any] | None:
        if arch is None:
            return None
        if task.id in arch.best_params:
            return arch.best_params[task.id]
        evaluation_id = arch.evaluations.get(task.id)
        # The store's best is read only for an evaluation whose every trial the book has learned
        # (one taken from an earlier job): with trials of it unreleased, the store may already
        # hold results the book must not know yet (search._launch_order).
        if evaluation_id is None or arch.stages.progress[task.id].running:
            return None
        best_trial = self.store.get_evaluation(evaluation_id).best_trial_id
        return None if best_trial is None else self.store.get_trial(best_trial).hparams

    def evaluation(self, arch: Architecture, task: TaskEntry) -> int:
        """The id of the (architecture, task) evaluation of this job, created on first use."""
        if task.id not in arch.evaluations:
            record: EvaluationRecord = self.store.get_or_create_evaluation(self.job_id, arch.id, task)
            arch.evaluations[task.id] = record.id
        return arch.evaluations[task.id]

    def cell_data(self, arch: Architecture) -> dict[str, Any]:
        """The cell as the workers take it (dropped on retirement, rebuilt for a refinement)."""
        if not arch.cell_data:
            arch.cell_data = arch.graph.model_dump(mode="json")
        return arch.cell_data

    def trial_started(self, arch: Architecture, task: TaskEntry) -> None:
        if self.final is not None and task.id in self.final.task_ids:
            self.final.started(arch.hash, task.id)
        else:
            arch.stages.started(task.id)

    def trial_ended(
        self,
        arch: Architecture,
        task: TaskEntry,
        value: float | None,
        counted: bool = True,
        hparams: dict[str, Any] | None = None,
    ) -> None:
        """A trial ended with ``value`` (``None``: no usable value) and ``hparams``; ``counted=False``
        for one that runs again. Results come in launch order, so of equal values the trial asked
        first stays the best, whatever order they finished in."""
        if self.final is not None and task.id in self.final.task_ids:
            self.final.finished(arch.hash, task.id, value, counted=counted)
            return
        progress = arch.stages.progress[task.id]
        improves = value is not None and (
            progress.best is None or task.direction.is_better(value, progress.best)
        )
        if counted and improves and hparams is not None:
            arch.best_params[task.id] = hparams
        arch.stages.finished(task.id, value, counted=counted)

    # -- settling ------------------------------------------------------------------------

    def settle(self) -> None:
        """Record finished stages and retire architectures whose stages are over, until nothing changes
        (a baseline finishing a task may decide the gates of others)."""
        changed = True
        while changed:
            changed = False
            for arch in list(self.active.values()):
                arch.stages.update(self.baseline_best)
                changed |= self._record_stages(arch)
                if arch.stages.status != StageStatus.RUNNING and not arch.stages.running:
                    self._retire(arch)
                    changed = True

    def _record_stages(self, arch: Architecture) -> bool:
        """Write finished stages to the store (evaluation status, the filter verdict); True when
        a baseline value became known."""
        stages = arch.stages
        known, promoted = len(self.baseline_best), False
        for task in self.tasks:
            progress = stages.progress[task.id]
            if task.id in arch.recorded or not progress.complete or progress.running:
                continue
            evaluation_id = arch.evaluations.get(task.id)
            if evaluation_id is not None:
                filtered = stages.status == StageStatus.FILTERED and stages.stopped_at == task.id
                status = EvaluationStatus.FILTERED_OUT if filtered else EvaluationStatus.DONE
                interval = evaluation_interval(self.store, evaluation_id, task.direction)
                self.store.set_evaluation(evaluation_id, status=status, best_interval=interval)
            arch.recorded.add(task.id)
            self.update_baseline_best(arch, task)
            promoted |= self._rung_finished(arch, task)
        filters = [t for t in self.spec.tasks if t.role == "filter"]
        if filters and not arch.filter_recorded and all(stages.progress[t.id].complete for t in filters):
            passed = all(t.passes_filter(stages.progress[t.id].best) for t in filters)
            self.store.update_job_architecture(self.job_id, arch.id, filter_passed=passed)
            arch.filter_recorded = True
        return len(self.baseline_best) != known or promoted

    def _rung_finished(self, arch: Architecture, task: TaskEntry) -> bool:
        """Rank a gated candidate that finished a lower rung; bring back the stopped candidates
        it promoted (:mod:`search._strategies._halving`). True when it promoted any."""
        if self.ladder is None or arch.baseline or not arch.stages.gated or not self.ladder.laddered(task.id):
            return False
        promoted = self.ladder.record(arch.hash, task.id, arch.stages.progress[task.id].best)
        for cell_hash in promoted:
            waiting = self.archs[cell_hash]
            if waiting.stages.promote():  # retired at this rung: it goes on
                waiting.finalized = False
                self.promoted_again.add(cell_hash)
                self.active[cell_hash] = waiting
        return bool(promoted)

    def update_baseline_best(self, arch: Architecture, task: TaskEntry) -> None:
        """Learn a task's best baseline value once every baseline finished it; then score the
        architectures that waited for it."""
        if not arch.baseline or task.id in self.baseline_best:
            return
        baselines = [self.archs[h] for h in self.baseline_hashes if h in self.archs]
        if len(baselines) == len(self.baseline_hashes) and all(
            b.stages.progress[task.id].complete for b in baselines
        ):
            values = [b.stages.progress[task.id].best for b in baselines]
            self.baseline_best[task.id] = best_of(values, task.direction)
            if task.role == "filter" and not any(task.passes_filter(v) for v in values):
                where = next(i for i, t in enumerate(self.spec.tasks) if t.id == task.id)
                self.feed.warned(_no_baseline_passes(where, task, self.baseline_best[task.id]))
            if self.baselines_complete():
                for waiting in self.archs.values():
                    if not waiting.finalized and waiting.hash not in self.active:
                        self.finalize(waiting)

    def baselines_complete(self) -> bool:
        return all(t.id in self.baseline_best for t in self.tasks if t.role != "filter")

    def _retire(self, arch: Architecture) -> None:
        """The architecture's stages are over: score it once the baselines are known."""
        self.active.pop(arch.hash, None)
        arch.cell_data = {}  # rebuilt if it is refined; thousands of retired cells stay small
        for task in self.tasks:
            self.studies.forget(study_name(self.job_id, arch.id, task.key, task.id))
        if self.baselines_complete() or arch.stages.status == StageStatus.FILTERED:
            self.finalize(arch)

    def finalize(self, arch: Architecture) -> None:
        """Score a retired architecture, record the score, report it and tell the strategy."""
        if arch.finalized:
            return
        arch.finalized = True
        stages = arch.stages
        relative = stages.relative(self.baseline_best)
        baselines = [self.archs[h] for h in self.baseline_hashes if h in self.archs]
        bounds = score_bounds(self.store, self.tasks, arch, baselines, relative, self.baseline_best)
        for task_name, value in relative.items():
            if task_name in arch.evaluations:
                self.store.set_evaluation(
                    arch.evaluations[task_name],
                    relative_score=value,
                    best_interval=bounds.best.get(task_name),
                    relative_interval=bounds.relative.get(task_name),
                )
        score = stages.score(self.baseline_best) if stages.status != StageStatus.FILTERED else None
        evaluated = stages.status in (StageStatus.DONE, StageStatus.STOPPED)
        self.store.update_job_architecture(
            self.job_id,
            arch.id,
            score=score,
            score_interval=None if score is None else bounds.score,
            evaluated=evaluated,
        )
        if arch.hash not in self.refined and arch.hash not in self.promoted_again:
            self.report_done(arch, score)
        if score is not None and (self.feed.best_score is None or score > self.feed.best_score):
            equations = self.store.get_architecture(arch.id).equations
            self.feed.new_best(arch.id, score, arch.label, equations, interval=bounds.score)
        self._tell(arch, arch.hash)
        self.save()

    def report_done(self, arch: Architecture, score: float | None) -> None:
        """Tell the display (and trackers) that a proposed architecture is over; not a baseline."""
        if not arch.baseline:
            self.feed.architecture_done(arch.id, OUTCOMES[arch.stages.status], score)

    def _tell(self, arch: Architecture | None, cell_hash: str) -> None:
        if arch is None:
            self.strategy.tell(Outcome(cell_hash, None, False))
        else:
            stages = arch.stages
            score = stages.score(self.baseline_best) if stages.status != StageStatus.FILTERED else None
            self.strategy.tell(Outcome(arch.hash, score, stages.complete, baseline=arch.baseline))
        self.strategy_idle = False
        listed = [self.archs[h].id for h in self.strategy.listed() if h in self.archs]
        self.store.set_listed(self.job_id, listed)

    # -- saving --------------------------------------------------------------------------

    def save(self) -> None:
        """Store what a resume needs that the records do not hold: the strategy's state, the
        refinements, the clock and the baselines."""
        strategy_state = self.strategy.state_dict()
        # The seen set is the job's architectures, which the store has: rebuilt on resume, not
        # rewritten after every architecture (it grows with the job).
        strategy_state.pop("seen", None)
        state = {
            "strategy": strategy_state,
            "driver": {
                "refined": self.refined,
                "proposed": self.budget.proposed,
                "elapsed": self.budget.elapsed(),
                "baselines": self.baseline_hashes,
                "window": self.window,
            },
        }
        self.store.save_strategy_state(self.job_id, state)


def _no_baseline_passes(where: int, task: TaskEntry, best: float | None) -> str:
    """The warning for a filter task that every baseline failed."""
    metric = task.task_class.primary_metric
    got = "no value" if best is None else f"{best:.4g}"
    return (
        f"tasks.{where}.threshold: no baseline reaches the filter ({metric} {task.threshold:g}; the best "
        f"baseline got {got}): most candidates will be filtered out; lower the threshold or stop the job"
    )
