"""workers: tasks and their data, the model around a cell, the training loop, the
hyperparameter space and the trial runner."""

from workers._results import Budget, TrialResult, TrialStatus
from workers._task import TASKS, Batch, Task, TaskConfig, register_task

__all__ = ["TASKS", "Batch", "Budget", "Task", "TaskConfig", "TrialResult", "TrialStatus", "register_task"]
