"""Whether a job that ran to its end produced anything, and if not, why, in one line.

A job in which no architecture got a score (every trial failed, every candidate failed the
filter, the budget ran out first) has no result to rank: it ends
``failed`` with this line as its error, so that ``launch`` exits non-zero and ``status`` says
why, instead of a "finished" job with nothing in it.

Example:
    >>> from search._records import TrialCounts
    >>> unscored_reason(TrialCounts(failed=4), [("CUDA out of memory", 3)])
    'nothing was scored: all 4 trials failed (3 of them with: CUDA out of memory)'
"""

from __future__ import annotations

from collections.abc import Sequence

from cells import canonical_hash
from search._jobspec import JobSpec
from search._records import JobSummary, TrialCounts
from search._store_reader import StoreReader

__all__ = ["job_unscored_reason", "unscored_reason"]

_ERROR_CHARS = 200
"""A trial's error is cut to this many characters in the line (a traceback's last line can be long)."""


def job_unscored_reason(
    store: StoreReader, spec: JobSpec, job_id: int, spent: str | None = None
) -> str | None:
    """Why job ``job_id`` has nothing to rank; ``None`` if it has a result.

    A result is a candidate with a score that did not fail a filter (the baselines are always
    scored: they are what scores are relative to, not a finding), or a baseline's score in a job
    of baselines only; in a job without search tasks, a value on one of its report-only tasks.
    ``spent`` names the limit of the job's budget that stopped it (``max_trials=3``), if one did.
    """
    summary = store.job_summary(job_id)
    if not any(t.role == "search" for t in spec.tasks):
        labels = [t.id for t in spec.tasks if t.role == "report-only"]
        if store.valued_evaluations(job_id, labels):
            return None
        return _reason(store, spec, job_id, summary, spent, filtered=False)
    baselines = {canonical_hash(graph) for _, graph in spec.baseline_graphs}
    standings = store.job_standings(job_id)
    candidates = [(score, passed) for h, score, passed in standings if h not in baselines]
    # A candidate that failed a filter has no finding to rank, even where it was scored (a fixed
    # strategy's cells run every task); a job of baselines only is judged on the baselines.
    judged = candidates or [(score, passed) for _, score, passed in standings]
    if any(score is not None and passed is not False for score, passed in judged):
        return None
    filtered = bool(candidates) and all(passed is False for _, passed in candidates)
    return _reason(store, spec, job_id, summary, spent, filtered)


def _reason(
    store: StoreReader, spec: JobSpec, job_id: int, summary: JobSummary, spent: str | None, filtered: bool
) -> str:
    filters = [f"{t.id} (threshold {t.threshold:g})" for t in spec.tasks if t.role == "filter"]
    errors = store.common_trial_errors(job_id)
    return unscored_reason(summary.trials, errors, filters if filtered else [], spent)


def unscored_reason(
    trials: TrialCounts,
    common_errors: Sequence[tuple[str, int]],
    failed_filters: Sequence[str] = (),
    spent: str | None = None,
) -> str:
    """The one line for a job with nothing scored, from its trial counts, its most common trial
    error, the filter tasks every candidate failed (if they did) and the budget limit that
    stopped it (if one did)."""
    lead = "nothing was scored"
    if failed_filters:
        return f"{lead}: every candidate failed the filter {', '.join(failed_filters)}"
    finished = trials.completed + trials.pruned + trials.failed + trials.diverged
    if trials.failed and trials.failed == finished:
        detail = ""
        if common_errors:
            error, count = common_errors[0]
            detail = f" ({count} of them with: {_short(error)})"
        return f"{lead}: all {trials.failed} trials failed{detail}"
    if spent is not None:
        return f"{lead}: the budget ({spent}) ran out before a candidate got a score"
    if finished == 0:
        return f"{lead}: no trial finished ({trials.interrupted} interrupted); the budget ran out first"
    return (
        f"{lead}: {trials.completed} trials completed, {trials.pruned} pruned, {trials.failed} failed, "
        f"{trials.diverged} diverged, and no architecture got a score"
    )


def _short(error: str) -> str:
    line = error.strip().splitlines()[0] if error.strip() else "no message"
    return line if len(line) <= _ERROR_CHARS else line[: _ERROR_CHARS - 1] + "…"
