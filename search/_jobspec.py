"""The job file: what to search, on which tasks, with what budget and resources.

A job is a YAML file validated into a :class:`JobSpec`. A bad file is refused before
anything is written, with every offending field named (``tasks.1.name: unknown task
'foo' (known: arith, memorize, ...)``), as a :class:`JobError`.

Tasks run as stages in the listed order: ``filter`` tasks first gate a candidate on an
absolute metric (``threshold``: e.g. memorize accuracy must reach 0.9), ``search`` tasks
are tuned and scored relative to the best baseline (``threshold``: the relative score
needed to go on to the next task), ``report-only`` tasks are evaluated for the record
and never change a score.

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
    search._jobspec.JobError: <text>: 2 problems:
      strategy.kind: unknown strategy 'greedy' (known: fixed, jozefowicz, random, regularized_evolution)
      tasks: a job needs at least one task
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

import workers
from cells import CellGraph, CellGraphError, CellsearchError
from cells import library as cell_library
from workers import Budget, Direction

if TYPE_CHECKING:
    from workers import TaskConfig  # torch: loads with the task registry, on first use

TaskRole = Literal["filter", "search", "report-only"]
StrategyKind = Literal["jozefowicz", "regularized_evolution", "random", "fixed"]
STRATEGY_KINDS: tuple[str, ...] = ("fixed", "jozefowicz", "random", "regularized_evolution")


class JobError(CellsearchError, ValueError):
    """A job file is invalid. ``errors`` holds one ``"field.path: reason"`` line per problem.

    Example:
        >>> print(JobError(["budget.max_trials: must be positive"], source="job.yaml"))
        job.yaml: budget.max_trials: must be positive
    """

    def __init__(self, errors: list[str], source: str | None = None) -> None:
        self.errors = list(dict.fromkeys(errors)) or ["(job): invalid"]
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        if len(self.errors) == 1:
            return prefix + self.errors[0]
        return f"{prefix}{len(self.errors)} problems:\n" + "\n".join(f"  {e}" for e in self.errors)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- strategies ------------------------------------------------------------------------------


class JozefowiczStrategy(_Strict):
    """The paper's search: a list of the best ``top_k`` architectures, seeded with the known
    cells; each step refines a listed architecture (probability ``p_refine``: more
    hyperparameter trials) or mutates one into a new candidate."""

    kind: Literal["jozefowicz"]
    top_k: int = Field(default=100, ge=1)
    p_refine: float = Field(default=0.2, ge=0, le=1)
    """Probability that a step spends more trials on a listed architecture instead of mutating."""
    refine_trials: int = Field(default=5, ge=1)
    """Extra hyperparameter trials per search task when an architecture is refined."""
    mutation_p: float | None = Field(default=None, gt=0, le=1)
    """Per-node replacement probability of a mutation; ``None`` draws it afresh per mutation."""


class RegularizedEvolutionStrategy(_Strict):
    """Aging evolution (Real et al. 2019): tournament of ``sample_size`` out of the newest
    ``population_size`` architectures, the winner is mutated, the oldest dies."""

    kind: Literal["regularized_evolution"]
    population_size: int = Field(default=100, ge=2)
    sample_size: int = Field(default=25, ge=1)
    mutation_p: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _sample_fits(self) -> RegularizedEvolutionStrategy:
        if self.sample_size > self.population_size:
            raise PydanticCustomError(
                "job_field",
                "{message}",
                {"message": "", "errors": [(("sample_size",), "is larger than population_size")]},
            )
        return self


class RandomStrategy(_Strict):
    """Random cells: ``num_states`` states (``None``: drawn per cell, 1-3), up to ``max_nodes`` nodes."""

    kind: Literal["random"]
    num_states: int | None = Field(default=None, ge=1, le=3)
    max_nodes: int = Field(default=12, ge=1, le=64)


class FixedStrategy(_Strict):
    """No search: evaluate exactly ``cells`` (library names or cell JSON files) on every task."""

    kind: Literal["fixed"]
    cells: list[str] = Field(min_length=1)

    @field_validator("cells", mode="after")
    @classmethod
    def _cells_exist(cls, cells: list[str], info: ValidationInfo) -> list[str]:
        return _check_cells(cells, info)


Strategy = Annotated[
    JozefowiczStrategy | RegularizedEvolutionStrategy | RandomStrategy | FixedStrategy,
    Field(discriminator="kind"),
]


# -- tasks -----------------------------------------------------------------------------------


def task_key(
    name: str, settings: dict[str, Any], budget: Budget, hparams: dict[str, Any] | None = None
) -> str:
    """The key under which results of a task are shared across jobs (hex, 16 characters).

    Two task entries with the same name, the same settings (after defaults are filled in
    by the task's config class), the same trial budget and the same hyperparameter search
    space (``hparams``: overrides of ``workers.SearchSpace``'s defaults) have the same key,
    so an architecture evaluated by an earlier job is reused instead of retrained.

    Example:
        >>> task_key("arith", {}, Budget()) == task_key("arith", {"seed": 0}, Budget())
        True
        >>> task_key("arith", {}, Budget()) == task_key("arith", {}, Budget(), {"hidden_size": 256})
        False
    """
    from workers._hparams import SearchSpace  # Optuna: loaded only by what computes keys

    task_class = workers.TASKS.get(name)
    if task_class is not None:
        settings = task_class.config_class.model_validate(settings).model_dump(mode="json")
    space = SearchSpace().with_overrides(hparams or {}).model_dump(mode="json")
    payload = {"task": name, "settings": settings, "budget": budget.model_dump(mode="json"), "space": space}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class TaskEntry(_Strict):
    """One task of a job, a stage of the pipeline every candidate goes through in order."""

    name: str
    label: str | None = Field(default=None, min_length=1, max_length=100)
    """Tells apart two entries of the same task (e.g. ``music`` on two corpora); see :attr:`id`."""
    role: TaskRole = "search"
    settings: dict[str, Any] = Field(default_factory=dict)
    """Validated against the task's config class (e.g. sequence lengths, data directory)."""
    threshold: float | None = None
    """``filter``: the absolute value of the task's metric a candidate must reach (at least,
    or at most for a minimized metric). ``search``: the relative score vs the best baseline
    needed to go on to the next task (``None``: always go on)."""
    trials: int | None = Field(default=None, ge=1)
    """Hyperparameter trials per (cell, task); ``None`` uses the job's ``trials_per_task``."""
    budget: Budget = Field(default_factory=Budget)
    """How long each trial trains."""
    hparams: dict[str, Any] = Field(default_factory=dict)
    """Search-space overrides for this task only, on top of the job's ``hparams``."""
    _job_hparams: dict[str, Any] = PrivateAttr(default_factory=dict)
    """The job's ``hparams`` (set by :class:`JobSpec`), for :attr:`key`."""

    @field_validator("name", mode="after")
    @classmethod
    def _known_task(cls, name: str) -> str:
        if name not in workers.TASKS:
            raise ValueError(f"unknown task {name!r} (known: {', '.join(sorted(workers.TASKS))})")
        return name

    @field_validator("settings", mode="after")
    @classmethod
    def _valid_settings(cls, settings: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("name")
        if name is None:  # the name itself is wrong and reported already
            return settings
        config_class = workers.TASKS[name].config_class
        try:
            config_class.model_validate(settings)
        except ValidationError as exc:
            raise _nested_error(exc, config_class) from None
        return settings

    @field_validator("hparams", mode="after")
    @classmethod
    def _valid_hparams(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        return _check_hparams(hparams)

    @model_validator(mode="after")
    def _filter_needs_threshold(self) -> TaskEntry:
        if self.role == "filter" and self.threshold is None:
            raise _field_error("threshold", "a filter task needs a threshold (the metric value to reach)")
        return self

    @property
    def id(self) -> str:
        """The entry's name in the job (unique): its ``label``, else the task name."""
        return self.label or self.name

    @property
    def task_class(self) -> type[workers.Task]:
        return workers.TASKS[self.name]

    @property
    def config(self) -> TaskConfig:
        """The task's validated config (defaults filled in)."""
        return self.task_class.config_class.model_validate(self.settings)

    @property
    def metric(self) -> str:
        return self.task_class.primary_metric

    @property
    def direction(self) -> Direction:
        return self.task_class.direction

    @property
    def key(self) -> str:
        """See :func:`task_key`; the search space is the job's ``hparams`` with this task's on top."""
        return task_key(self.name, self.settings, self.budget, {**self._job_hparams, **self.hparams})

    def passes_filter(self, value: float | None) -> bool:
        """Whether a filter task's best ``value`` reaches ``threshold`` in the metric's direction."""
        if value is None or self.threshold is None:
            return value is not None
        return value >= self.threshold if self.direction == "maximize" else value <= self.threshold


# -- job-level settings ----------------------------------------------------------------------


class SearchBudget(_Strict):
    """When the search stops: whichever limit is hit first."""

    max_architectures: int | None = Field(default=None, ge=1)
    max_trials: int | None = Field(default=None, ge=1)
    max_seconds: float | None = Field(default=None, gt=0)

    @property
    def unlimited(self) -> bool:
        return self.max_architectures is None and self.max_trials is None and self.max_seconds is None


class Resources(_Strict):
    """What one trial asks of Ray, and how many trials run at once."""

    cpus: float = Field(default=1.0, gt=0)
    gpus: float = Field(default=0.0, ge=0)
    """A fraction up to 1 shares a GPU between trials (0.25: four per GPU); above 1 only whole GPUs."""
    custom: dict[str, float] = Field(default_factory=dict)
    """Extra Ray resources per trial, e.g. ``{"gpu_slot": 1}``."""
    max_in_flight: int | None = Field(default=None, ge=1)
    """Trials submitted at once; ``None``: as many as the cluster's CPUs allow."""

    @field_validator("gpus", mode="after")
    @classmethod
    def _whole_above_one(cls, gpus: float) -> float:
        if gpus > 1 and not float(gpus).is_integer():
            raise ValueError(f"a GPU fraction must be at most 1 (got {gpus:g}); above 1 use whole GPUs")
        return gpus

    @field_validator("custom", mode="after")
    @classmethod
    def _positive_custom(cls, custom: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in custom.items() if v <= 0]
        if bad:
            raise ValueError(f"resource {bad[0]!r} must be positive")
        return custom


class JobSpec(_Strict):
    """A validated job file. Build one with :func:`load_job` or :meth:`from_yaml_text`.

    Cell entries (``seed_cells``, ``baselines``, a fixed strategy's ``cells``) are library
    names or cell JSON files; files are stored as absolute paths (relative ones are read
    from the job file's folder).
    """

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    strategy: Strategy
    seed_cells: list[str] = Field(default_factory=lambda: ["lstm", "gru", "tanh"])
    tasks: list[TaskEntry]
    baselines: list[str] = Field(default_factory=lambda: ["gru"], min_length=1)
    hparams: dict[str, Any] = Field(default_factory=dict)
    """Search-space overrides (see ``workers.SearchSpace``) for every task."""
    trials_per_task: int = Field(default=20, ge=1)
    """Hyperparameter trials per (cell, task); 20 random settings in the paper."""
    sampler: Literal["random", "tpe"] = "random"
    pruner: Literal["none", "median", "hyperband"] = "none"
    budget: SearchBudget = Field(default_factory=SearchBudget)
    resources: Resources = Field(default_factory=Resources)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    population: Literal["auto", "off"] | int = "auto"
    prefilter: dict[str, Any] | None = None
    db_url: str | None = None
    mlflow_uri: str | None = None
    seed: int = Field(default=0, ge=0)

    @field_validator("seed_cells", "baselines", mode="after")
    @classmethod
    def _cells_exist(cls, cells: list[str], info: ValidationInfo) -> list[str]:
        return _check_cells(cells, info)

    @field_validator("population", mode="plain")
    @classmethod
    def _population(cls, value: Any) -> Literal["auto", "off"] | int:
        if value in ("auto", "off"):
            return value  # type: ignore[no-any-return]
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        raise ValueError(f"expected 'auto', 'off' or a positive integer, got {value!r}")

    @field_validator("hparams", mode="after")
    @classmethod
    def _valid_hparams(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        return _check_hparams(hparams)

    @field_validator("tasks", mode="after")
    @classmethod
    def _tasks(cls, tasks: list[TaskEntry]) -> list[TaskEntry]:
        if not tasks:
            raise ValueError("a job needs at least one task")
        errors, seen = [], set()
        for i, task in enumerate(tasks):
            if task.id in seen:
                where = "label" if task.label else "name"
                errors.append(
                    ((i, where), f"task {task.id!r} is listed twice (give each entry a distinct label)")
                )
            seen.add(task.id)
        if errors:
            raise PydanticCustomError("job_field", "{message}", {"message": "", "errors": errors})
        return tasks

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        errors: list[tuple[tuple[str | int, ...], str]] = []
        if self.strategy.kind != "fixed":
            if self.budget.unlimited:
                errors.append((("budget",), "set at least one of max_architectures, max_trials, max_seconds"))
            if not any(t.role == "search" for t in self.tasks):
                errors.append((("tasks",), "a search needs at least one task with role 'search'"))
        if errors:
            raise PydanticCustomError("job_field", "{message}", {"message": "", "errors": errors})
        for task in self.tasks:
            task._job_hparams = dict(self.hparams)
        return self

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<text>", base_dir: str | Path | None = None) -> JobSpec:
        """Parse and validate YAML text; relative cell files are read from ``base_dir`` (else the cwd)."""
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise JobError([_yaml_message(exc)], source) from None
        if not isinstance(data, dict):
            kind = "an empty file" if data is None else f"a {type(data).__name__}"
            raise JobError([f"(job): expected a mapping of job settings, got {kind}"], source)
        return cls.from_dict(data, source=source, base_dir=base_dir)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<job>", base_dir: str | Path | None = None) -> JobSpec:
        """Validate a mapping (e.g. a stored spec); every problem is reported in one :class:`JobError`."""
        try:
            return cls.model_validate(data, context={"base_dir": Path(base_dir) if base_dir else None})
        except ValidationError as exc:
            raise JobError(format_validation_errors(exc), source) from None

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-ready data (what the results database stores)."""
        return self.model_dump(mode="json")

    # -- helpers for the driver ------------------------------------------------------------

    def trials_for(self, task: TaskEntry) -> int:
        """Hyperparameter trials per (cell, task)."""
        return task.trials if task.trials is not None else self.trials_per_task

    def tasks_with_role(self, role: TaskRole) -> list[TaskEntry]:
        return [t for t in self.tasks if t.role == role]

    def task(self, task_id: str) -> TaskEntry:
        """The task entry whose :attr:`TaskEntry.id` (label, else name) is ``task_id``; ids are unique."""
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(f"job {self.name!r} has no task {task_id!r}")

    def search_space(self, task: TaskEntry | None = None) -> Any:
        """The ``workers.SearchSpace`` of a task: the defaults, the job's and the task's overrides."""
        from workers._hparams import SearchSpace

        space = SearchSpace().with_overrides(self.hparams)
        return space.with_overrides(task.hparams) if task is not None and task.hparams else space

    @cached_property
    def seed_graphs(self) -> list[tuple[str | None, CellGraph]]:
        """``(library name or None, graph)`` of each seed cell."""
        return [_resolved(entry) for entry in self.seed_cells]

    @cached_property
    def baseline_graphs(self) -> list[tuple[str | None, CellGraph]]:
        """``(library name or None, graph)`` of each baseline cell."""
        return [_resolved(entry) for entry in self.baselines]


def load_job(path: str | Path) -> JobSpec:
    """Read and validate a job file; raises :class:`JobError` naming every bad field.

    Example:
        >>> load_job("nope.yaml")
        Traceback (most recent call last):
        ...
        search._jobspec.JobError: nope.yaml: (file): cannot read the job file: No such file or directory
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JobError([f"(file): cannot read the job file: {exc.strerror or exc}"], str(path)) from None
    return JobSpec.from_yaml_text(text, source=str(path), base_dir=path.resolve().parent)


def check_db_url(url: str, field: str = "db_url") -> None:
    """Check that the results database at ``url`` can be reached, writing nothing.

    A SQLite file that does not exist yet passes if its folder exists and is writable (it
    is not created here); other databases are connected to once. Raises :class:`JobError`
    naming ``field``.

    Example:
        >>> check_db_url("sqlite:///no/dir/x.db")
        Traceback (most recent call last):
        ...
        search._jobspec.JobError: db_url: cannot use sqlite:///no/dir/x.db: folder 'no/dir' does not exist
    """
    import os

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise JobError([f"{field}: not a database URL: {url!r} ({exc})"]) from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            return
        folder = os.path.dirname(database) or "."
        if os.path.exists(database):
            problem = None if os.access(database, os.R_OK | os.W_OK) else "the file is not writable"
        elif not os.path.isdir(folder):
            problem = f"folder {folder!r} does not exist"
        else:
            problem = None if os.access(folder, os.W_OK) else f"folder {folder!r} is not writable"
        if problem:
            raise JobError([f"{field}: cannot use {shown}: {problem}"])
        return
    try:
        engine = sa.create_engine(url, connect_args=_connect_timeout(parsed.get_backend_name()))
    except (ArgumentError, ImportError, SQLAlchemyError) as exc:
        raise JobError([f"{field}: cannot use {shown}: {exc}"]) from None
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise JobError([f"{field}: cannot connect to {shown}: {reason}"]) from None
    finally:
        engine.dispose()


def _connect_timeout(backend: str) -> dict[str, Any]:
    return {"connect_timeout": 5} if backend == "postgresql" else {}


# -- validation helpers ----------------------------------------------------------------------


def _field_error(field: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("job_field", "{message}", {"message": "", "errors": [((field,), message)]})


def _nested_error(exc: ValidationError, model: type[BaseModel]) -> PydanticCustomError:
    """Carry the errors of a nested validation (a task's config) so their paths are kept."""
    errors: list[tuple[tuple[int | str, ...], str]] = []
    for e in exc.errors():
        loc, message = tuple(e["loc"]), _message(e)
        field, _, rest = message.partition(": ")
        if not loc and rest and field in model.model_fields:  # "max_length: must be ..." from a model check
            errors.append(((field,), rest))
        elif e["type"] == "extra_forbidden" and len(loc) == 1:
            errors.append((loc, f"unknown setting (allowed: {', '.join(model.model_fields)})"))
        else:
            errors.append((loc, message))
    return PydanticCustomError("job_field", "{message}", {"message": "", "errors": errors})


def _check_cells(cells: list[str], info: ValidationInfo) -> list[str]:
    """Each entry must be a library cell or a readable cell JSON file; files become absolute."""
    base_dir = (info.context or {}).get("base_dir")
    normalized, errors = [], []
    for i, entry in enumerate(cells):
        if entry in cell_library.names():
            normalized.append(entry)
            continue
        path = Path(entry)
        if not path.is_absolute() and base_dir is not None and (Path(base_dir) / path).is_file():
            path = Path(base_dir) / path
        try:
            CellGraph.load(path) if path.is_file() else cell_library.resolve(entry)
        except (CellGraphError, OSError) as exc:
            errors.append(((i,), str(exc)))
            continue
        normalized.append(str(path.resolve()))
    if errors:
        raise PydanticCustomError("job_field", "{message}", {"message": "", "errors": errors})
    return normalized


def _resolved(entry: str) -> tuple[str | None, CellGraph]:
    if entry in cell_library.names():
        return entry, cell_library.get(entry)
    return None, CellGraph.load(entry)


def _check_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """Each override is checked alone (so every bad one is named), then all together."""
    try:
        from workers._hparams import SearchSpace
    except ImportError:  # the hyperparameter space is not part of this build yet
        return hparams
    known = list(SearchSpace.model_fields)
    errors: list[tuple[tuple[str | int, ...], str]] = []
    for name, value in hparams.items():
        if name not in known:
            errors.append(((name,), f"unknown hyperparameter (known: {', '.join(known)})"))
            continue
        try:
            SearchSpace().with_overrides({name: value})
        except ValueError as exc:
            errors.append(((name,), _lower_first(_strip_space_prefix(str(exc), name))))
    if not errors:
        try:
            SearchSpace().with_overrides(hparams)
        except ValueError as exc:
            errors.append(((), _lower_first(_strip_space_prefix(str(exc), None))))
    if errors:
        raise PydanticCustomError("job_field", "{message}", {"message": "", "errors": errors})
    return hparams


def _strip_space_prefix(message: str, name: str | None) -> str:
    message = message.removeprefix("search space: ")
    if name is not None:
        message = message.removeprefix(f"field {name!r}: ")
    return message


def format_validation_errors(exc: ValidationError) -> list[str]:
    """``"path.to.field: reason"`` lines, one per problem, in the order pydantic found them."""
    lines: list[str] = []
    for error in exc.errors():
        raw_loc = tuple(error["loc"])
        loc = _clean_loc(raw_loc)
        ctx = error.get("ctx") or {}
        if error["type"] == "job_field":
            for sub_loc, message in ctx["errors"]:
                lines.append(f"{_path(loc + tuple(sub_loc))}: {message}")
        elif error["type"] == "extra_forbidden":
            allowed = _allowed_keys(raw_loc[:-1])
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            lines.append(f"{_path(loc)}: unknown key{hint}")
        elif error["type"] in ("union_tag_invalid", "union_tag_not_found") and loc[-1:] == ("strategy",):
            tag = ctx.get("tag")
            if tag is None:
                lines.append(f"{_path((*loc, 'kind'))}: missing (one of: {', '.join(STRATEGY_KINDS)})")
            else:
                lines.append(
                    f"{_path((*loc, 'kind'))}: unknown strategy {tag!r} (known: {', '.join(STRATEGY_KINDS)})"
                )
        else:
            message = _message(error)
            if loc:  # "budget: budget: set ..." reads better once
                message = message.removeprefix(f"{loc[-1]}: ")
            lines.append(f"{_path(loc)}: {message}")
    return lines


def _message(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        return "required"
    return _lower_first(message)


def _lower_first(message: str) -> str:
    return message[:1].lower() + message[1:]


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the discriminator tags and union-branch labels pydantic puts into error paths."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        if i > 0 and loc[i - 1] == "strategy" and part in STRATEGY_KINDS:
            continue
        if isinstance(part, str) and ("[" in part or part in _BRANCH_LABELS or part.startswith("function-")):
            continue
        out.append(part)
    return tuple(out)


_BRANCH_LABELS = frozenset({"int", "float", "str", "bool", "none", "list", "dict", "constrained-int"})


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(job)"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the model at ``loc`` inside a job (for 'unknown key' messages)."""
    current: Any = JobSpec
    for part in loc:
        current = _unwrap(current)
        is_union = typing.get_origin(current) in (typing.Union, types.UnionType)
        members = typing.get_args(current) if is_union else ()
        tagged = [m for m in members if _kind_of(m) == part]
        if tagged:  # a discriminated union's tag selects the member
            current = tagged[0]
            continue
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _kind_of(model: Any) -> Any:
    if isinstance(model, type) and issubclass(model, BaseModel) and "kind" in model.model_fields:
        args = typing.get_args(model.model_fields["kind"].annotation)
        return args[0] if args else None
    return None


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``None`` from a type; a strategy union stays a union."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"(yaml): line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"(yaml): {problem}"
