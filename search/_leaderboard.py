"""The leaderboard: a job's architectures ranked, with their result on every task.

:func:`top_architectures` is the one leaderboard query: ``cellsearch status``, the table
``cellsearch launch`` prints, ``cellsearch results top`` and the exports and reports read
it (the ``leaderboard`` SQL view ranks by the same rule, see :mod:`search._ranking`).
Every query runs through SQLAlchemy with bound parameters (a task name or any other
filter value is data, never SQL) and reads a bounded number of rows per call, so it stays
fast at the paper's scale (10,000 architectures, 230,000 trials; see
``benchmarks/results_query.py``).

Example:
    >>> from search._jobspec import JobSpec
    >>> from search._result_store import ResultStore
    >>> from cells import library
    >>> from workers import TrialResult
    >>> spec = JobSpec.from_yaml_text(
    ...     "name: demo\\nstrategy: {kind: fixed, cells: [gru]}\\ntasks: [{name: memorize}]")
    >>> store = ResultStore.open("sqlite://")
    >>> job_id = store.create_job(spec)
    >>> arch_id, _ = store.add_architecture(library.get("gru"), job_id=job_id, library_name="gru")
    >>> evaluation = store.get_or_create_evaluation(job_id, arch_id, spec.tasks[0])
    >>> trial_id = store.start_trial(evaluation.id, hparams={"learning_rate": 0.01})
    >>> _ = store.finish_trial(trial_id, TrialResult(
    ...     status="ok", task="memorize", metric="accuracy", direction="maximize", value=0.9))
    >>> store.set_evaluation(evaluation.id, status="done", relative_score=1.0,
    ...                      relative_interval=Interval(0.95, 1.05))
    >>> store.update_job_architecture(job_id, arch_id, score=1.0, evaluated=True)
    >>> [top] = top_architectures(store, job_id)
    >>> top.to_dict()["per_task"]["memorize"]  # doctest: +NORMALIZE_WHITESPACE
    {'metric': 'accuracy', 'value': 0.9, 'value_low': None, 'value_high': None,
     'relative': 1.0, 'relative_low': 0.95, 'relative_high': 1.05, 'trials': 1, 'status': 'done'}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, or_, select
from sqlalchemy.orm import Session

from search._final_board import is_final_task
from search._intervals import Interval
from search._origin import origin_text
from search._ranking import by_final_score, by_score
from search._records import finite, interval_columns
from search._schema import Architecture, Evaluation, JobArchitecture
from search._store_errors import UnknownJobError, UnknownTaskError
from search._store_reader import StoreReader
from workers import Direction

PARAMETER_COUNT_HIDDEN = 128
"""Hidden (and input) size at which :func:`parameter_count` counts a cell's parameters when
the job does not fix one (:func:`job_hidden_size`)."""


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskResult:
    """An architecture's result on one task of a job (an evaluation)."""

    task: str
    """The task entry's id in the job: its label, else the task name."""
    task_name: str
    metric: str
    direction: str
    status: str
    value: float | None
    """The best value of the task's metric over the trials (``None``: no trial finished)."""
    relative: float | None
    """``value`` relative to the best baseline (above 1 beats it), ``None`` until known."""
    trials: int
    """Trials that ended (ok, pruned, failed or diverged)."""
    best_trial_id: int | None = None
    reused_from_id: int | None = None
    value_interval: Interval | None = None
    """How much ``value`` depends on which trials were drawn (a bootstrap; ``docs/uncertainty.md``)."""
    relative_interval: Interval | None = None
    """``value_interval`` against the best baseline's, by interval arithmetic."""
    mean: float | None = None
    """A final task's mean over its seeds (then ``value_interval`` is the mean's t-interval and
    ``relative`` the mean relative to the best baseline's); ``None`` for a search task."""
    verdict: str | None = None
    """A final task against its best baseline: ``better``, ``worse``, ``indistinguishable``
    (``None`` for that baseline itself)."""
    p_value: float | None = None

    @property
    def final(self) -> bool:
        """A final round's task (``arith.final``)."""
        return is_final_task(self.task)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "metric": self.metric,
            "value": finite(self.value),
            **interval_columns("value", self.value_interval),
            "relative": finite(self.relative),
            **interval_columns("relative", self.relative_interval),
            "trials": self.trials,
            "status": self.status,
        }
        if self.final:
            out |= {
                "mean": finite(self.mean),
                **interval_columns("mean", self.value_interval),
                "verdict": self.verdict,
                "p_value": finite(self.p_value),
            }
        return out


@dataclass(frozen=True)
class RankedArchitecture:
    """One row of a leaderboard (see :mod:`search._ranking` for its order)."""

    rank: int
    job_id: int
    arch_id: int
    score: float | None
    library_name: str | None
    parent_id: int | None
    mutation: str | None
    generation: int
    canonical_hash: str
    num_states: int
    num_nodes: int
    parameter_count: int
    """Parameters of one layer at ``parameter_hidden`` (:func:`parameter_count`)."""
    equations: str
    per_task: dict[str, TaskResult] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict, repr=False)
    """The cell's JSON (left out of :meth:`to_dict`)."""
    listed: bool = False
    """On the strategy's list in this job (the top-K list, or the living population)."""
    score_interval: Interval | None = None
    """The score's interval: the minimum over the search tasks of their relative intervals."""
    final_score: float | None = None
    """The final round's score (its worst final task relative to the best baseline);
    ``None`` where the round did not take it or the job has none."""
    final_interval: Interval | None = None
    parameter_hidden: int = PARAMETER_COUNT_HIDDEN
    """The input and hidden size ``parameter_count`` is counted at: the job's
    (:func:`job_hidden_size`), else :data:`PARAMETER_COUNT_HIDDEN`."""

    @property
    def origin(self) -> str:
        """How it came to be, in words (:func:`search._origin.origin_text`)."""
        return origin_text(self.library_name, self.parent_id, self.mutation)

    @property
    def architecture_id(self) -> int:
        """``arch_id``, by the name the store's records give it."""
        return self.arch_id

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what ``cellsearch results top --format json`` prints, one per row)."""
        return {
            "rank": self.rank,
            "job_id": self.job_id,
            "arch_id": self.arch_id,
            "score": finite(self.score),
            **interval_columns("score", self.score_interval),
            "final_score": finite(self.final_score),
            **interval_columns("final", self.final_interval),
            "library_name": self.library_name,
            "parent_id": self.parent_id,
            "mutation": self.mutation,
            "generation": self.generation,
            "canonical_hash": self.canonical_hash,
            "num_states": self.num_states,
            "num_nodes": self.num_nodes,
            "parameter_count": self.parameter_count,
            "parameter_hidden": self.parameter_hidden,
            "equations": self.equations,
            "per_task": {name: result.to_dict() for name, result in self.per_task.items()},
        }


# -- queries ---------------------------------------------------------------------------------


def resolve_job(store: StoreReader, job_id: int | None) -> int:
    """``job_id``, checked to exist; the latest job when ``None``."""
    if job_id is None:
        latest = store.latest_job_id()
        if latest is None:
            raise UnknownJobError(f"no jobs in {store.url} yet (start one with `cellsearch launch JOB.yaml`)")
        return latest
    store.get_job(job_id)  # raises UnknownJobError
    return job_id


def job_tasks(store: StoreReader, job_id: int) -> list[str]:
    """The task ids (labels, else names) of a job, in the job's order."""
    spec = store.get_job(job_id).spec
    return [str(t.get("label") or t["name"]) for t in spec.get("tasks", [])]


_LEADERBOARD_COLUMNS = (
    JobArchitecture.job_id,
    JobArchitecture.score,
    JobArchitecture.score_low,
    JobArchitecture.score_high,
    JobArchitecture.final_score,
    JobArchitecture.final_low,
    JobArchitecture.final_high,
    JobArchitecture.generation,
    JobArchitecture.listed,
    Architecture.id,
    Architecture.library_name,
    Architecture.parent_id,
    Architecture.mutation,
    Architecture.canonical_hash,
    Architecture.num_states,
    Architecture.num_nodes,
    Architecture.equations,
    Architecture.graph,
)
"""What a leaderboard row reads: the job's view of a cell joined with the cell (see :func:`_ranked`)."""


def top_architectures(
    store: StoreReader,
    job_id: int | None = None,
    *,
    task: str | None = None,
    limit: int = 10,
    all_jobs: bool = False,
    final_first: bool = True,
) -> list[RankedArchitecture]:
    """The best architectures of a job (default: the latest), best first.

    Ranked by overall score (the worst task's relative score), or with ``task`` by that
    task's relative score (then its best value). ``task`` is a task's label or name as
    in the job file; an unknown one raises :class:`UnknownTaskError` naming the known
    ones. ``all_jobs`` ranks every job's architectures together (a cell scored in two
    jobs appears twice). Equal scores (or task results) go to the lower architecture id:
    the one tie rule, :mod:`search._ranking`. ``final_first`` (the default) puts a final
    round's architectures first, by their final score (:func:`search._ranking.by_final_score`);
    without it the order is the search's alone (what the driver takes the round from).
    """
    order = by_final_score if final_first else by_score
    if limit < 1:
        raise ValueError(f"limit: must be at least 1, got {limit}")
    ja, a = JobArchitecture, Architecture
    if all_jobs:
        if task is not None:
            raise ValueError("task: give a job to rank by one task (not with all jobs)")
        query = (
            select(*_LEADERBOARD_COLUMNS)
            .join(a, a.id == ja.architecture_id)
            .where(ja.score.is_not(None))
            .order_by(*order(ja, across_jobs=True))
        )
    else:
        job_id = resolve_job(store, job_id)
        if task is None:
            query = (
                select(*_LEADERBOARD_COLUMNS)
                .join(a, a.id == ja.architecture_id)
                .where(ja.job_id == job_id, ja.score.is_not(None))
                .order_by(*order(ja))
            )
        else:
            label, direction = _resolve_task(store, job_id, task)
            e = Evaluation
            value_order = e.best_value.desc() if direction is Direction.MAXIMIZE else e.best_value.asc()
            query = (
                select(*_LEADERBOARD_COLUMNS)
                .select_from(e)
                .join(ja, and_(ja.job_id == e.job_id, ja.architecture_id == e.architecture_id))
                .join(a, a.id == e.architecture_id)
                .where(e.job_id == job_id, e.task_label == label, e.best_value.is_not(None))
                .order_by(
                    case((e.relative_score.is_(None), 1), else_=0),
                    e.relative_score.desc(),
                    value_order,
                    e.architecture_id,
                )
            )
    with Session(store.engine) as conn:
        rows = conn.execute(query.limit(limit)).all()
        per_task = _task_results(conn, [(r.job_id, r.id) for r in rows])
    sizes = {job: parameter_hidden(store, job) for job in {r.job_id for r in rows}}
    return [_ranked(rank, r, per_task, sizes[r.job_id]) for rank, r in enumerate(rows, start=1)]


def _ranked(
    rank: int, r: Any, per_task: dict[tuple[int, int], dict[str, TaskResult]], hidden: int
) -> RankedArchitecture:
    """A leaderboard row (job architecture joined with its architecture) as a record, its
    parameters counted at ``hidden``."""
    return RankedArchitecture(
        rank=rank,
        job_id=r.job_id,
        arch_id=r.id,
        score=r.score,
        library_name=r.library_name,
        parent_id=r.parent_id,
        mutation=r.mutation,
        generation=r.generation,
        canonical_hash=r.canonical_hash,
        num_states=r.num_states,
        num_nodes=r.num_nodes,
        parameter_count=parameter_count(r.graph, hidden),
        equations=r.equations,
        per_task=per_task.get((r.job_id, r.id), {}),
        graph=r.graph,
        listed=bool(r.listed),
        score_interval=Interval.of(r.score_low, r.score_high),
        final_score=r.final_score,
        final_interval=Interval.of(r.final_low, r.final_high),
        parameter_hidden=hidden,
    )


def job_architectures(store: StoreReader, job_id: int) -> list[RankedArchitecture]:
    """Every architecture of a job with its per-task results: scored ones ranked (best
    first), then the unscored ones (filtered out, unfinished; ``rank`` 0) by id."""
    job_id = resolve_job(store, job_id)
    ja, a = JobArchitecture, Architecture
    query = (
        select(*_LEADERBOARD_COLUMNS)
        .join(a, a.id == ja.architecture_id)
        .where(ja.job_id == job_id)
        .order_by(case((ja.score.is_(None), 1), else_=0), *by_final_score(ja))
    )
    with Session(store.engine) as conn:
        rows = conn.execute(query).all()
        per_task = _task_results(conn, None, job_id=job_id)
    hidden = parameter_hidden(store, job_id)
    out = []
    rank = 0
    for r in rows:
        if r.score is not None:
            rank += 1
        out.append(_ranked(rank if r.score is not None else 0, r, per_task, hidden))
    return out


def parameter_count(graph: dict[str, Any], hidden_size: int = PARAMETER_COUNT_HIDDEN) -> int:
    """Parameters of one layer of the cell with input and hidden size ``hidden_size``: a
    weight matrix per input of every ``linear`` plus its bias, a vector per ``diag``. What
    ``cells.build_layer(cell, H, H)`` holds: the model feeds the cell its embedding (or
    projection) of width ``H``, so a layer's input size is its hidden size.

    At one size for every cell of a job (:func:`parameter_hidden`), cells compare on it (a
    trial's model adds the embedding, more layers and the output layer).

    Example:
        >>> from cells import library
        >>> parameter_count(library.get("lstm").model_dump(mode="json"), hidden_size=8)
        544
    """
    total = 0
    for node in graph.get("nodes", []):
        if node["op"] == "linear":
            total += len(node["inputs"]) * hidden_size * hidden_size + hidden_size
        elif node["op"] == "diag":
            total += hidden_size
    return total


def job_hidden_size(spec: dict[str, Any]) -> int | None:
    """The hidden size every trial of a job (a stored spec) has: one its ``hparams`` and every
    task's own fix (a number, or one choice); ``None`` when it is sampled, sized by
    ``param_budget``, or differs between tasks. Read from the spec's text alone (no Optuna).

    Example:
        >>> job_hidden_size({"hparams": {"hidden_size": 32}, "tasks": [{"name": "arith"}]})
        32
        >>> job_hidden_size({"hparams": {}, "tasks": [{"name": "arith"}]}) is None  # 32-128, sampled
        True
        >>> job_hidden_size({"hparams": {"hidden_size": 32}, "tasks": [
        ...     {"name": "a"}, {"name": "b", "hparams": {"param_budget": 9000}}]}) is None
        True
    """
    sizes = set()
    for task in spec.get("tasks") or [{}]:
        hidden: Any = None  # the default search space samples it
        for overrides in (spec.get("hparams") or {}, task.get("hparams") or {}):
            if "hidden_size" in overrides:
                hidden = overrides["hidden_size"]
            elif overrides.get("param_budget") is not None:
                hidden = None  # a parameter budget sizes the model instead (workers.SearchSpace)
        if isinstance(hidden, list) and len(hidden) == 1:
            hidden = hidden[0]
        sizes.add(hidden if isinstance(hidden, int) and not isinstance(hidden, bool) and hidden > 0 else None)
    return sizes.pop() if len(sizes) == 1 else None


def parameter_hidden(store: StoreReader, job_id: int) -> int:
    """The size a job's parameter counts are given at: its own hidden size (:func:`job_hidden_size`),
    else :data:`PARAMETER_COUNT_HIDDEN`."""
    return job_hidden_size(store.get_job(job_id).spec) or PARAMETER_COUNT_HIDDEN


# -- internals ------------------------------------------------------------------------------


def _resolve_task(store: StoreReader, job_id: int, task: str) -> tuple[str, Direction]:
    """The label and metric direction of the job's task named ``task`` (a label or a task name)."""
    spec = store.get_job(job_id).spec
    entries = [(str(t.get("label") or t["name"]), str(t["name"])) for t in spec.get("tasks", [])]
    labels = [label for label, name in entries if label == task] or [
        label for label, name in entries if name == task
    ]
    known = ", ".join(label for label, _ in entries) or "none"
    if not labels:
        raise UnknownTaskError(f"job {job_id} has no task {task!r} (its tasks: {known})")
    if len(labels) > 1:
        raise UnknownTaskError(f"task {task!r} is ambiguous in job {job_id}: give one of {', '.join(labels)}")
    label = labels[0]
    with Session(store.engine) as conn:
        direction = conn.execute(
            select(Evaluation.direction)
            .where(Evaluation.job_id == job_id, Evaluation.task_label == label)
            .limit(1)
        ).scalar()
    return label, Direction(direction or Direction.MAXIMIZE)


EVALUATION_COLUMNS = (
    Evaluation.id,
    Evaluation.job_id,
    Evaluation.architecture_id,
    Evaluation.task_label,
    Evaluation.task,
    Evaluation.metric,
    Evaluation.direction,
    Evaluation.status,
    Evaluation.best_value,
    Evaluation.relative_score,
    Evaluation.best_low,
    Evaluation.best_high,
    Evaluation.relative_low,
    Evaluation.relative_high,
    Evaluation.mean_value,
    Evaluation.verdict,
    Evaluation.p_value,
    Evaluation.trials_completed,
    Evaluation.trials_pruned,
    Evaluation.trials_failed,
    Evaluation.trials_diverged,
    Evaluation.best_trial_id,
    Evaluation.reused_from_id,
)
"""Plain columns, not ORM objects: a leaderboard reads thousands of evaluations."""


def task_result(ev: Any) -> TaskResult:
    return TaskResult(
        task=ev.task_label,
        task_name=ev.task,
        metric=ev.metric,
        direction=ev.direction,
        status=ev.status,
        value=ev.best_value,
        relative=ev.relative_score,
        trials=ev.trials_completed + ev.trials_pruned + ev.trials_failed + ev.trials_diverged,
        best_trial_id=ev.best_trial_id,
        reused_from_id=ev.reused_from_id,
        value_interval=Interval.of(ev.best_low, ev.best_high),
        relative_interval=Interval.of(ev.relative_low, ev.relative_high),
        mean=ev.mean_value,
        verdict=ev.verdict,
        p_value=ev.p_value,
    )


def _task_results(
    conn: Session, pairs: Sequence[tuple[int, int]] | None, *, job_id: int | None = None
) -> dict[tuple[int, int], dict[str, TaskResult]]:
    """Per-task results keyed by (job, architecture): of the given pairs, or of a whole job."""
    e = Evaluation
    query = select(*EVALUATION_COLUMNS)
    if pairs is not None:
        if not pairs:
            return {}
        by_job: dict[int, list[int]] = {}
        for job, arch in pairs:
            by_job.setdefault(job, []).append(arch)
        clauses = [and_(e.job_id == job, e.architecture_id.in_(archs)) for job, archs in by_job.items()]
        query = query.where(or_(*clauses))
    else:
        query = query.where(e.job_id == job_id)
    out: dict[tuple[int, int], dict[str, TaskResult]] = {}
    for ev in conn.execute(query.order_by(e.id)).all():
        out.setdefault((ev.job_id, ev.architecture_id), {})[ev.task_label] = task_result(ev)
    return out
