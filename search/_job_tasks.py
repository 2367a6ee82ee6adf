"""The tasks of a job: each entry a stage every candidate goes through, in the listed order.

``filter`` tasks first gate a candidate on an absolute metric (``threshold``: e.g. memorize
accuracy must reach 0.9), ``search`` tasks are tuned and scored relative to the best
baseline (``threshold``: the relative score needed to go on to the next task),
``report-only`` tasks are evaluated for the record and never change a score.

Example:
    >>> entry = TaskEntry(name="memorize", role="filter", threshold=0.9)
    >>> entry.id, entry.passes_filter(0.95), entry.passes_filter(0.5)
    ('memorize', True, False)
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

import workers
from search._job_errors import ErrorList, field_error, job_field_error, lower_first, nested_error
from search._job_model import MAX_TRIALS, StrictModel
from workers import Budget, Direction

if TYPE_CHECKING:
    from workers import TaskConfig  # torch: loads with the task registry, on first use

TaskRole = Literal["filter", "search", "report-only"]

MAX_THRESHOLD = 1e9
"""The largest ``threshold`` in size (either sign): beyond any metric or relative score."""

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
LABEL_RULE = "letters, digits, '_', '-' and '.', starting with a letter or digit"
"""What a task label may hold: it becomes part of MLflow metric names, file names and SQL columns."""


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
    from workers import SearchSpace  # Optuna: loaded only by what computes keys

    task_class = workers.TASKS.get(name)
    base = SearchSpace()
    if task_class is not None:
        base = workers.task_search_space(name, **settings)
        settings = task_class.config_class.model_validate(settings).model_dump(mode="json")
        if "protocol" in settings and settings["protocol"] is None:
            # Unset, a protocol shows in the search space (below) if it changes anything: keys of
            # text tasks from before the setting stay where it does not.
            del settings["protocol"]
    space = base.with_overrides(hparams or {}).model_dump(mode="json")
    if space.get("tie_weights") is False:  # the default: keys of jobs before the option stay
        del space["tie_weights"]
    dumped = budget.model_dump(mode="json")
    if dumped.get("score_split") == "valid":  # the default: keys of jobs before the option stay
        del dumped["score_split"]
    # Scored by the best point (as before the option), the curve settings change nothing: drop
    # them so those keys stay; any other score makes results that are not shared with them.
    if dumped.get("score") == "best":
        for field_name in ("score", "score_window", "score_horizon"):
            dumped.pop(field_name, None)
    elif dumped.get("score") == "last_mean":
        dumped.pop("score_horizon", None)
    payload = {"task": name, "settings": settings, "budget": dumped, "space": space}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class TaskEntry(StrictModel):
    """One task of a job, a stage of the pipeline every candidate goes through in order."""

    name: str
    """The task (``arith``, ``memorize``, ``music``, ``text``, ``xml``)."""
    label: str | None = Field(default=None, min_length=1, max_length=100)
    """Tells apart two entries of the same task (e.g. ``music`` on two corpora); see :attr:`id`.
    At most 100 characters: letters, digits, ``_``, ``-`` and ``.``, starting with a letter or
    digit (it becomes part of metric names, file names and SQL view columns)."""
    role: TaskRole = "search"
    """``filter``: a candidate must reach ``threshold`` to go on, and is not scored on it;
    ``search``: scored against the baselines; ``report-only``: trained and reported, not scored."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """Validated against the task's config class (e.g. sequence lengths, data directory)."""
    threshold: float | None = Field(default=None, ge=-MAX_THRESHOLD, le=MAX_THRESHOLD)
    """A finite number from -1e9 to 1e9. ``filter``: the absolute value of the task's metric a
    candidate must reach (at least, or at most for a minimized metric). ``search``: the relative
    score vs the best baseline needed to go on to the next task (``None``: always go on)."""
    trials: int | None = Field(default=None, ge=1, le=MAX_TRIALS)
    """Hyperparameter trials per (cell, task), 1 to 1000; ``None`` uses the job's ``trials_per_task``."""
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

    @field_validator("label", mode="after")
    @classmethod
    def _safe_label(cls, label: str | None) -> str | None:
        if label is not None and not _LABEL.fullmatch(label):
            raise ValueError(f"expected {LABEL_RULE}, got {label!r}")
        return label

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
            raise nested_error(exc, config_class) from None
        return settings

    @field_validator("hparams", mode="after")
    @classmethod
    def _valid_hparams(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        return check_hparams(hparams)

    @model_validator(mode="after")
    def _filter_needs_threshold(self) -> TaskEntry:
        if self.role == "filter" and self.threshold is None:
            raise field_error("threshold", "a filter task needs a threshold (the metric value to reach)")
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
        return value == self.threshold or self.direction.is_better(value, self.threshold)


def check_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """Each override is checked alone (so every bad one is named), then all together."""
    try:
        from workers import SearchSpace
    except ImportError:  # the hyperparameter space is not part of this build yet
        return hparams
    known = list(SearchSpace.model_fields)
    errors: ErrorList = []
    for name, value in hparams.items():
        if name not in known:
            errors.append(((name,), f"unknown hyperparameter (known: {', '.join(known)})"))
            continue
        try:
            SearchSpace().with_overrides({name: value})
        except ValueError as exc:
            errors.append(((name,), lower_first(_strip_space_prefix(str(exc), name))))
    if not errors:
        try:
            SearchSpace().with_overrides(hparams)
        except ValueError as exc:
            errors.append(((), lower_first(_strip_space_prefix(str(exc), None))))
    if errors:
        raise job_field_error(errors)
    return hparams


def _strip_space_prefix(message: str, name: str | None) -> str:
    message = message.removeprefix("search space: ")
    if name is not None:
        message = message.removeprefix(f"field {name!r}: ")
    return message
