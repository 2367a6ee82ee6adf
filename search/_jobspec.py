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
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from cells import CellGraph
from search._cell_entries import check_cells, resolve_cell_entry
from search._job_errors import ErrorList, JobError, format_validation_errors, job_field_error
from search._job_limits import Resources, SearchBudget
from search._job_model import StrictModel
from search._job_tasks import TaskEntry, TaskRole, check_hparams, task_key
from search._strategies import STRATEGY_KINDS, PrefilterSection, StrategyConfig

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


class JobSpec(StrictModel):
    """A validated job file. Build one with :func:`load_job` or :meth:`from_yaml_text`.

    Cell entries (``seed_cells``, ``baselines``, a fixed strategy's ``cells``) are library
    names or cell JSON files; files are stored as absolute paths (relative ones are read
    from the job file's folder).
    """

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    strategy: StrategyConfig
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
    prefilter: PrefilterSection | None = None
    db_url: str | None = None
    mlflow_uri: str | None = None
    seed: int = Field(default=0, ge=0)

    @field_validator("seed_cells", "baselines", mode="after")
    @classmethod
    def _cells_exist(cls, cells: list[str], info: ValidationInfo) -> list[str]:
        return check_cells(cells, (info.context or {}).get("base_dir"))

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
        errors: ErrorList = []
        if self.strategy.kind != "fixed":
            if self.budget.unlimited:
                errors.append((("budget",), "set at least one of max_architectures, max_trials, max_seconds"))
            if not any(t.role == "search" for t in self.tasks):
                errors.append((("tasks",), "a search needs at least one task with role 'search'"))
        if errors:
            raise job_field_error(errors)
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
            raise JobError(format_validation_errors(exc, cls, STRATEGY_KINDS), source) from None

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-ready data (what the results database stores)."""
        return self.model_dump(mode="json")

    # -- helpers for the driver ------------------------------------------------------------

    def trials_for(self, task: TaskEntry) -> int:
        """Hyperparameter trials per (cell, task)."""
        return task.trials if task.trials is not None else self.trials_per_task

    def task(self, task_id: str) -> TaskEntry:
        """The task entry whose :attr:`TaskEntry.id` (label, else name) is ``task_id``; ids are unique."""
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(f"job {self.name!r} has no task {task_id!r}")

    def search_space(self, task: TaskEntry | None = None) -> Any:
        """The ``workers.SearchSpace`` of a task: the defaults, the job's and the task's overrides."""
        from workers import SearchSpace

        space = SearchSpace().with_overrides(self.hparams)
        return space.with_overrides(task.hparams) if task is not None and task.hparams else space

    @cached_property
    def seed_graphs(self) -> list[tuple[str | None, CellGraph]]:
        """``(library name or None, graph)`` of each seed cell."""
        return [resolve_cell_entry(entry) for entry in self.seed_cells]

    @cached_property
    def baseline_graphs(self) -> list[tuple[str | None, CellGraph]]:
        """``(library name or None, graph)`` of each baseline cell."""
        return [resolve_cell_entry(entry) for entry in self.baselines]


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
