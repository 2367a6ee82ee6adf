"""The registry of tasks by name: the built-in five and any added with :func:`register_task`.

It imports the task modules (they import only the interface in ``workers._task``), so the
registry is complete whichever module a process loads first.

Example:
    >>> from workers import TASKS, make_task
    >>> sorted(TASKS)
    ['arith', 'memorize', 'music', 'text', 'xml']
    >>> make_task("arith", valid_size=20, test_size=20) is make_task("arith", valid_size=20, test_size=20)
    True
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from cells import join_problems
from workers._arith import ArithTask
from workers._memorize import MemorizeTask
from workers._music import MusicTask
from workers._problems import described_problems
from workers._task import Task, TaskConfig, TaskConfigError, TaskSpec
from workers._text import TextTask
from workers._xml import XmlTask

if TYPE_CHECKING:
    from workers._hparams import SearchSpace

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (ArithTask, MemorizeTask, MusicTask, TextTask, XmlTask)
}
"""Task classes by name."""

TaskType = TypeVar("TaskType", bound=type[Task])


def register_task(cls: TaskType) -> TaskType:
    """Class decorator adding a task to the registry under ``cls.name``."""
    TASKS[cls.name] = cls
    return cls


def _resolve(spec: TaskSpec | str, settings: dict[str, Any]) -> tuple[type[Task], TaskConfig]:
    name, merged = (
        (spec.name, {**spec.settings, **settings}) if isinstance(spec, TaskSpec) else (spec, settings)
    )
    if name not in TASKS:
        raise TaskConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    cls = TASKS[name]
    try:
        return cls, cls.config_class.model_validate(merged)
    except ValidationError as error:
        reasons = join_problems(described_problems(error))
        raise TaskConfigError(f"task {name!r}: {reasons}") from None


def task_config(spec: TaskSpec | str, /, **settings: Any) -> TaskConfig:
    """Validate a task's settings without building its data (cheap; for checking job files).

    Example:
        >>> task_config("arith", max_digits=0)
        Traceback (most recent call last):
        ...
        workers._task.TaskConfigError: task 'arith': max_digits: Input should be greater than ... 1, got 0
    """
    return _resolve(spec, settings)[1]


def task_search_space(spec: TaskSpec | str, /, **settings: Any) -> SearchSpace:
    """The search space a task's trials start from: :class:`workers.SearchSpace`'s defaults with
    the task's protocol on top (e.g. the ``text`` task's language-model protocol); a job's
    ``hparams`` go on top of this."""
    from workers._hparams import SearchSpace  # Optuna: loaded by what samples hyperparameters

    return SearchSpace().with_overrides(task_config(spec, **settings).search_space_defaults())


_TASK_CACHE: dict[tuple[str, str], Task] = {}
_TASK_CACHE_LOCK = threading.Lock()


def make_task(spec: TaskSpec | str, /, **settings: Any) -> Task:
    """Build a task from its name (or :class:`TaskSpec`) and settings, once per process.

    Settings are validated by the task's ``config_class``; equal settings (defaults
    included) return the same object, so a worker builds each data set once, not per trial.
    Keyword settings override those of the spec.
    """
    cls, config = _resolve(spec, settings)
    key = (cls.name, config.model_dump_json())
    with _TASK_CACHE_LOCK:
        if key not in _TASK_CACHE:
            _TASK_CACHE[key] = cls(config)
        return _TASK_CACHE[key]


def clear_task_cache() -> None:
    """Forget every task built by :func:`make_task` (frees their data)."""
    with _TASK_CACHE_LOCK:
        _TASK_CACHE.clear()
