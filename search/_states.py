"""The states of a job and of an evaluation, spelled once for the store, the driver, the commands
and the dashboards. Their values are the strings stored in the results database.

A trial's states are :class:`workers.TrialStatus` (how it ended) and the store's ``running``
(:data:`search._schema.TRIAL_RUNNING`, a trial that has not ended).

Example:
    >>> from search import EvaluationStatus, JobState
    >>> JobState.FINISHED == "finished", JobState("interrupted") in TERMINAL_JOB_STATES
    (True, True)
    >>> EvaluationStatus.FILTERED_OUT
    'filtered-out'
"""

from __future__ import annotations

from cells import TextEnum


class JobState(TextEnum):
    """Where a job is: ``created`` (never run), ``running``, or one of the terminal states."""

    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class EvaluationStatus(TextEnum):
    """Where one architecture's evaluation on one task is: not started, training, or settled
    (``done``, or ``filtered-out`` by a stage threshold)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FILTERED_OUT = "filtered-out"


TERMINAL_JOB_STATES = frozenset({JobState.STOPPED, JobState.FINISHED, JobState.FAILED, JobState.INTERRUPTED})
"""The states a job ends in (its end time is stamped when it enters one)."""

SETTLED_EVALUATIONS = (EvaluationStatus.DONE, EvaluationStatus.FILTERED_OUT)
"""The statuses of an evaluation that will train no more trials."""
