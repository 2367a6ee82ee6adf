"""The job file: what to search, on which tasks, with what budget and resources.

A job is a YAML file validated into a :class:`JobSpec`. A bad file is refused before
anything is written, with every offending field named (``tasks.1.name: unknown task
'foo' (known: arith, memorize, ...)``), as a :class:`JobError`.

The sections live beside what they configure: the task entries (the stages every candidate
goes through, :mod:`search._job_tasks`), the budget and resources (:mod:`search._job_limits`),
each strategy's settings (its class's config, assembled into the ``strategy`` union by
:mod:`search._strategies._registry`), the pre-filter (:mod:`search._strategies._prefilter`)
and the error formatting (:mod:`search._job_errors`).

Example:
    >>> spec = JobSpec.from_yaml_text('''
    ... name: demo
    ... strategy: {kind: jozefowicz, top_k: 10}
    ... tasks:
    ...   - {name: memorize, role: filter, threshold: 0.9}
    ...   - {name: arith, budget: {max_steps: 100}}
    ... budget: {max_architectures: 50}
    ... ''')
    >>> spec.strategy.kind, spec.trials_for(spec.tasks[1]), spec.baselines
    ('jozefowicz', 20, ['gru'])
    >>> JobSpec.from_yaml_text("name: x\\nstrategy: {kind: greedy}\\ntasks: []")
    Traceback (most recent call last):
    ...
    search._job_errors.JobError: <text>: 2 problems:
      strategy.kind: unknown strategy 'greedy' (known: fixed, jozefowicz, random, regularized_evolution)
      tasks: a job needs at least one task
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from cells import CellGraph, control_character_problem
from search._cell_entries import MAX_CELL_ENTRIES, check_cells, resolve_cell_entry
from search._final_round import FINAL_SUFFIX, FinalSection
from search._job_errors import ErrorList, JobError, format_validation_errors, job_field_error
from search._job_limits import Resources, SearchBudget
from search._job_model import MAX_SEED, MAX_TRIALS, StrictModel
from search._job_tasks import TaskEntry, TaskRole, check_hparams, task_key
from search._job_yaml import STRUCTURAL, load_job_yaml, plain_data_problems
from search._strategies import (
    STRATEGY_KINDS,
    HalvingSection,
    PrefilterSection,
    Rung,
    StrategyConfig,
    ladder_tasks,
    rungs_of,
)

MAX_TASKS = 100
MAX_URL_LENGTH = 4096

__all__ = [
    "JobError",
    "JobSpec",
    "Resources",
    "SearchBudget",
    "StrategyConfig",
    "TaskEntry",
    "TaskRole",
    "task_key",
]


MLFLOW_SCHEMES = ("file", "http", "https", "postgresql", "sqlite")
"""The URI schemes of the MLflow stores a job can track in (``postgresql+psycopg`` included)."""


class JobSpec(StrictModel):
    """A validated job file. Build one with :func:`load_job` or :meth:`from_yaml_text`.

    Cell entries (``seed_cells``, ``baselines``, a fixed strategy's ``cells``) are library
    names or cell JSON files; files are stored as absolute paths (relative ones are read
    from the job file's folder).
    """

    name: str = Field(min_length=1, max_length=200)
    """1 to 200 characters, no control characters (it is shown in terminals and MLflow)."""
    description: str = Field(default="", max_length=10_000)
    """Free text, at most 10,000 characters; line breaks and tabs are the only control characters."""
    strategy: StrategyConfig
    """How candidates are proposed: a section with a ``kind`` and that strategy's settings (below)."""
    seed_cells: list[str] = Field(
        default_factory=lambda: ["lstm", "gru", "tanh"], max_length=MAX_CELL_ENTRIES
    )
    """At most 1000 library cell names or cell JSON files."""
    tasks: list[TaskEntry] = Field(max_length=MAX_TASKS)
    """1 to 100 task entries."""
    baselines: list[str] = Field(default_factory=lambda: ["gru"], min_length=1, max_length=MAX_CELL_ENTRIES)
    """1 to 1000 library cell names or cell JSON files."""
    hparams: dict[str, Any] = Field(default_factory=dict)
    """Search-space overrides (see ``workers.SearchSpace``) for every task."""
    trials_per_task: int = Field(default=20, ge=1, le=MAX_TRIALS)
    """Hyperparameter trials per (cell, task), 1 to 1000; 20 random settings in the paper."""
    sampler: Literal["random", "tpe"] = "random"
    """How each (cell, task) study draws hyperparameters: ``random`` (as in the paper) or Optuna's ``tpe``."""
    pruner: Literal["none", "median", "hyperband", "successive_halving"] = "none"
    """Stops unpromising trials inside one (cell, task) study from their intermediate values:
    ``median`` (below the median of earlier trials at the same step), ``hyperband`` or
    ``successive_halving`` (Optuna's pruners). Across architectures, see ``halving``."""
    budget: SearchBudget = Field(default_factory=SearchBudget)
    """When the search stops (below); a search needs at least one of its limits."""
    resources: Resources = Field(default_factory=Resources)
    """What one trial asks of the cluster (below)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where trials train: ``auto`` (a GPU when the trial has one), ``cpu`` or ``cuda``."""
    population: Literal["auto", "off"] | Annotated[int, Field(ge=1, le=MAX_TRIALS)] = "auto"
    """Trials of one (cell, task) trained together: ``auto``, ``off`` (each alone; YAML's ``off``
    and ``false`` both) or 1 to 1000."""
    prefilter: PrefilterSection | None = None
    """Zero-cost screening of mutants before they train (below); ``None``: no screen."""
    final: FinalSection | None = None
    """After the search, its best architectures and every baseline trained again with fresh seeds
    and scored on the test split (see ``docs/final-round.md``); ``None``: no final round."""
    halving: HalvingSection | None = None
    """Successive halving across architectures (see ``docs/halving.md``); ``None``: every
    candidate trains each search task's full budget."""
    db_url: str | None = Field(default=None, max_length=MAX_URL_LENGTH)
    """The results database (a SQLAlchemy URL, not an in-memory SQLite); ``--db`` wins over it."""
    mlflow_uri: str | None = Field(default=None, max_length=MAX_URL_LENGTH)
    """The MLflow tracking URI (a scheme MLflow stores runs in, or a folder); ``--mlflow`` wins."""
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    """0 to 2**32 - 1 (NumPy's and torch's generators take 32-bit seeds)."""

    @field_validator("name", "description", mode="after")
    @classmethod
    def _plain_text(cls, text: str, info: ValidationInfo) -> str:
        if info.field_name == "name":
            problem = control_character_problem(text)
            if problem:
                raise ValueError(f"expected a name without control characters, got {text!r}: it {problem}")
        else:
            problem = control_character_problem(text, multiline=True)
            if problem:
                raise ValueError(
                    f"expected text without control characters but line breaks and tabs: it {problem}"
                )
        return text

    @field_validator("db_url", mode="after")
    @classmethod
    def _database_url(cls, url: str | None) -> str | None:
        # The form only: whether the database can be reached is checked before a launch (with the
        # --db that may replace it), not each time a stored spec is read back.
        from search._store_errors import StoreError
        from search._store_probe import check_url_form

        if url is not None:
            try:
                check_url_form(url)
            except StoreError as exc:
                raise ValueError(str(exc)) from None
        return url

    @field_validator("mlflow_uri", mode="after")
    @classmethod
    def _tracking_uri(cls, uri: str | None) -> str | None:
        scheme = uri.split("://", 1)[0].lower() if uri is not None and "://" in uri else None
        if scheme is not None and scheme.split("+", 1)[0] not in MLFLOW_SCHEMES:
            known = ", ".join(MLFLOW_SCHEMES)
            raise ValueError(f"expected a URI of scheme {known}, or a folder path, got scheme {scheme!r}")
        return uri

    @field_validator("seed_cells", "baselines", mode="after")
    @classmethod
    def _cells_exist(cls, cells: list[str], info: ValidationInfo) -> list[str]:
        return check_cells(cells, (info.context or {}).get("base_dir"))

    @field_validator("population", mode="plain")
    @classmethod
    def _population(cls, value: Any) -> Literal["auto", "off"] | int:
        if value is False:  # YAML 1.1 reads a bare `off` (and `no`, `false`) as false
            return "off"
        if value in ("auto", "off"):
            return value  # type: ignore[no-any-return]
        if value is True:
            raise ValueError(
                f"expected 'auto', 'off' or an integer from 1 to {MAX_TRIALS}, got true (YAML's `on`)"
            )
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_TRIALS:
            return value
        raise ValueError(f"expected 'auto', 'off' or an integer from 1 to {MAX_TRIALS}, got {value!r}")

    @field_validator("hparams", mode="after")
    @classmethod
    def _valid_hparams(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        return check_hparams(hparams)

    @field_validator("tasks", mode="after")
    @classmethod
    def _tasks(cls, tasks: list[TaskEntry]) -> list[TaskEntry]:
        if not tasks:
            raise ValueError("a job needs at least one task")
        errors: ErrorList = []
        seen: set[str] = set()
        for i, task in enumerate(tasks):
            if task.id in seen:
                where = "label" if task.label else "name"
                errors.append(
                    ((i, where), f"task {task.id!r} is listed twice (give each entry a distinct label)")
                )
            seen.add(task.id)
        if errors:
            raise job_field_error(errors)
        return tasks

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        errors = self._conflicts()
        if errors:
            raise job_field_error(errors)
        for task in self.tasks:
            task._job_hparams = dict(self.hparams)
        return self

    def _conflicts(self) -> ErrorList:
        """Sections that are valid alone but together would fail, or do nothing, at run time."""
        errors: ErrorList = []
        kind = self.strategy.kind
        if kind != "fixed":
            if self.budget.unlimited:
                errors.append((("budget",), "set at least one of max_architectures, max_trials, max_seconds"))
            if not any(t.role == "search" for t in self.tasks):
                errors.append((("tasks",), "a search needs at least one task with role 'search'"))
        if kind in ("random", "fixed") and self.prefilter is not None and self.prefilter.enabled:
            reason = f"the {kind} strategy draws no mutants to screen; remove the section"
            errors.append((("prefilter",), reason))
        if self.final is not None:
            if not any(t.role == "search" for t in self.tasks):
                errors.append((("final",), "a final round re-evaluates search tasks; the job has none"))
            clash = [t.id for t in self.tasks if t.id.endswith(FINAL_SUFFIX)]
            if clash:
                reason = f"the final round names its tasks '<task>{FINAL_SUFFIX}'; rename {clash[0]!r}"
                errors.append((("final",), reason))
        if self.halving is not None:
            if kind == "fixed":
                reason = "the fixed strategy trains every listed cell fully; remove the section"
                errors.append((("halving",), reason))
            errors += [(("tasks", *where), reason) for where, reason in self.halving.problems(self.tasks)]
        errors += self._untieable()
        if self.device == "cuda" and self.resources.gpus == 0:
            reason = "'cuda' needs resources.gpus above 0 (a trial that asks Ray for no GPU sees none)"
            errors.append((("device",), reason))
        return errors + self._idle_settings()

    def _untieable(self) -> ErrorList:
        """``tie_weights`` on a task whose inputs are frames, not tokens: every trial would fail."""
        errors: ErrorList = []
        for i, task in enumerate(self.tasks):
            if task.task_class.input_kind == "tokens":
                continue
            tie = {**self.hparams, **task.hparams}.get("tie_weights")
            if tie is True or (isinstance(tie, list) and True in tie):
                where = ("tasks", i, "hparams", "tie_weights") if "tie_weights" in task.hparams else (
                    "hparams",
                    "tie_weights",
                )
                reason = f"task {task.id!r} reads frames, not tokens: it has no embedding to tie"
                errors.append((where, reason))
        return errors

    def _idle_settings(self) -> ErrorList:
        """Settings under which the job would run and do nothing useful: an evolution whose first
        population takes the whole architecture budget (it never mutates), a filter threshold no
        value of the task's metric reaches (every cell, baselines too, fails it)."""
        errors: ErrorList = []
        size, most = getattr(self.strategy, "population_size", None), self.budget.max_architectures
        if (
            self.strategy.kind == "regularized_evolution"
            and most is not None
            and size is not None
            and size >= most
        ):
            reason = (
                f"{size} fills the whole architecture budget (budget.max_architectures: {most}) with seed "
                f"and random cells, so nothing is ever mutated; set it below {most}"
            )
            errors.append((("strategy", "population_size"), reason))
        for i, task in enumerate(self.tasks):
            if task.role != "filter" or task.threshold is None:
                continue
            low, high = task.task_class.metric_range
            metric = task.task_class.primary_metric
            if task.direction == "maximize" and task.threshold > high:
                bound = f"{metric} is at most {_plain(high)}"
            elif task.direction == "minimize" and task.threshold < low:
                bound = f"{metric} is at least {_plain(low)}"
            else:
                continue
            reason = f"{_plain(task.threshold)} is out of reach ({bound}): the filter would stop every cell"
            errors.append((("tasks", i, "threshold"), reason))
        return errors

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<text>", base_dir: str | Path | None = None) -> JobSpec:
        """Parse and validate YAML text; relative cell files are read from ``base_dir`` (else the cwd).

        Text over ``MAX_JOB_TEXT`` characters, nested deeper than ``MAX_YAML_DEPTH`` or standing
        for more than ``MAX_YAML_VALUES`` values (aliases expanded) is refused before it is built.
        """
        data = load_job_yaml(text, source)
        if not isinstance(data, dict):
            kind = "an empty file" if data is None else f"a {type(data).__name__}"
            raise JobError([f"(job): expected a mapping of job settings, got {kind}"], source)
        return cls.from_dict(data, source=source, base_dir=base_dir)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<job>", base_dir: str | Path | None = None) -> JobSpec:
        """Validate a mapping (e.g. a stored spec); every problem is reported in one :class:`JobError`.

        Keys must be strings, values JSON-like (no dates, sets or bytes) and numbers finite,
        anywhere in the mapping, also in the free-form sections (task settings, ``hparams``).
        """
        plain = [(_path(loc), reason) for loc, reason in plain_data_problems(data)]
        lines = [f"{where}: {reason}" for where, reason in plain]
        if any(reason.startswith(STRUCTURAL) for _, reason in plain):
            raise JobError(lines, source)  # the mapping itself is unfit: pydantic would only repeat it
        try:
            spec = cls.model_validate(data, context={"base_dir": Path(base_dir) if base_dir else None})
        except ValidationError as exc:
            found = format_validation_errors(exc, cls, STRATEGY_KINDS)
            # a value the plain-data check named already is not named twice
            lines += [line for line in found if not any(_related(line, where) for where, _ in plain)]
            raise JobError(lines, source) from None
        if lines:
            raise JobError(lines, source)
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-ready data (what the results database stores)."""
        return self.model_dump(mode="json")

    # -- helpers for the driver ------------------------------------------------------------

    def trials_for(self, task: TaskEntry) -> int:
        """Hyperparameter trials per (cell, task)."""
        return task.trials if task.trials is not None else self.trials_per_task

    @cached_property
    def stage_tasks(self) -> list[TaskEntry]:
        """The stages a candidate walks: :attr:`tasks`, each search task preceded by its lower
        rungs under ``halving`` (:func:`search._strategies.ladder_tasks`)."""
        return ladder_tasks(self.tasks, self.halving)

    @cached_property
    def rungs(self) -> dict[str, Rung]:
        """Task id -> its rung, for the stages of laddered tasks (empty without ``halving``)."""
        return rungs_of(self.tasks, self.halving)

    def task(self, task_id: str) -> TaskEntry:
        """The stage whose :attr:`TaskEntry.id` (label, else name) is ``task_id``; ids are unique."""
        for t in self.stage_tasks:
            if t.id == task_id:
                return t
        raise KeyError(f"job {self.name!r} has no task {task_id!r}")

    def search_space(self, task: TaskEntry | None = None) -> Any:
        """The ``workers.SearchSpace`` of a task: the defaults, the task's protocol (e.g. the
        ``text`` task's language-model protocol), the job's and the task's overrides."""
        from workers import SearchSpace, task_search_space

        base = task_search_space(task.name, **task.settings) if task is not None else SearchSpace()
        space = base.with_overrides(self.hparams)
        return space.with_overrides(task.hparams) if task is not None and task.hparams else space

    @cached_property
    def seed_graphs(self) -> list[tuple[str | None, CellGraph]]:
        """``(library name or None, graph)`` of each seed cell."""
        return [resolve_cell_entry(entry) for entry in self.seed_cells]

    @cached_property
    def baseline_graphs(self) -> list[tuple[str | None, CellGraph]]:
        """``(library name or None, graph)`` of each baseline cell."""
        return [resolve_cell_entry(entry) for entry in self.baselines]


def _plain(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(job)"


def _related(line: str, where: str) -> bool:
    """Whether an error ``line`` is about the field ``where``, a field inside it, or a section
    holding it (``hparams.forget_bias`` for ``hparams.forget_bias.low``)."""
    field = line.split(": ", 1)[0]
    return _within(line, where) or (field != "(job)" and where.startswith(f"{field}."))


def _within(line: str, where: str) -> bool:
    """Whether an error ``line`` is about the field ``where`` or a field inside it."""
    return (where == "(job)" and line.startswith("(job):")) or line.startswith((f"{where}:", f"{where}."))
