"""Whether a job that ran to its end produced anything, and if not, why, in one line.

A job in which no architecture got a score (every trial failed, every candidate failed the
filter, the budget ran out first) has no result to rank: it ends
``failed`` with this line as its error, so that ``launch`` exits non-zero and ``status`` says
why, instead of a "finished" job with nothing in it.

Example:
    >>> from search._records import ArchitectureCounts, TrialCounts
    >>> errors = [("CUDA out of memory", 3)]
    >>> unscored_reason(TrialCounts(failed=4), ArchitectureCounts(proposed=2), errors, filters=[])
    'nothing was scored: all 4 trials failed (3 of them with: CUDA out of memory)'
"""

from __future__ import annotations

from collections.abc import Sequence

from cells import canonical_hash
from search._jobspec import JobSpec
from search._leaderboard import top_architectures
from search._records import ArchitectureCounts, JobSummary, TrialCounts
from search._store_reader import StoreReader

__all__ = ["job_unscored_reason", "unscored_reason"]

_ERROR_CHARS = 200
"""A trial's error is cut to this many characters in the line (a traceback's last line can be long)."""


def job_unscored_reason(store: StoreReader, spec: JobSpec, job_id: int) -> str | None:
    """Why job ``job_id`` has nothing to rank; ``None`` if it has a result.

    A result is a candidate with a score (the baselines are always scored: they are what scores
    are relative to, not a finding), or a baseline's score in a job of baselines only; in a job
    without search tasks, a value on one of its report-only tasks.
    """
    summary = store.job_summary(job_id)
    if not any(t.role == "search" for t in spec.tasks):
        labels = [t.id for t in spec.tasks if t.role == "report-only"]
        return None if store.valued_evaluations(job_id, labels) else _reason(store, spec, job_id, summary)
    baselines = {canonical_hash(graph) for _, graph in spec.baseline_graphs}
    leaders = top_architectures(store, job_id, limit=len(baselines) + 1)  # scored ones only
    if any(entry.canonical_hash not in baselines for entry in leaders):
        return None
    if leaders and summary.architectures.proposed <= len(baselines):
        return None  # a job of baselines only: their scores are its result
    return _reason(store, spec, job_id, summary)


def _reason(store: StoreReader, spec: JobSpec, job_id: int, summary: JobSummary) -> str:
    filters = [f"{t.id} (threshold {t.threshold:g})" for t in spec.tasks if t.role == "filter"]
    return unscored_reason(summary.trials, summary.architectures, store.common_trial_errors(job_id), filters)


def unscored_reason(
    trials: TrialCounts,
    architectures: ArchitectureCounts,
    common_errors: Sequence[tuple[str, int]],
    filters: Sequence[str],
) -> str:
    """The one line for a job with nothing scored, from its counts, its most common trial error
    and its filter tasks."""
    lead = "nothing was scored"
    if architectures.filtered_out and architectures.passed_filter == 0 and filters:
        return f"{lead}: every candidate failed the filter {', '.join(filters)}"
    finished = trials.completed + trials.pruned + trials.failed + trials.diverged
    if trials.failed and trials.failed == finished:
        detail = ""
        if common_errors:
            error, count = common_errors[0]
            detail = f" ({count} of them with: {_short(error)})"
        return f"{lead}: all {trials.failed} trials failed{detail}"
    if finished == 0:
        return f"{lead}: no trial finished ({trials.interrupted} interrupted); the budget ran out first"
    return (
        f"{lead}: {trials.completed} trials completed, {trials.pruned} pruned, {trials.failed} failed, "
        f"{trials.diverged} diverged, and no architecture got a score"
    )


def _short(error: str) -> str:
    line = error.strip().splitlines()[0] if error.strip() else "no message"
    return line if len(line) <= _ERROR_CHARS else line[: _ERROR_CHARS - 1] + "…"
