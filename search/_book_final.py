"""The architecture book's final round: who goes to it, and writing what it found.

See :mod:`search._final_round` for what the round is. The driver calls :func:`begin_final` when
the search has nothing left to decide, and :func:`record_final` when the job's loop ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search._final_round import FINAL_SUFFIX, FinalRound
from search._job_budget import StopReason
from search._states import EvaluationStatus

if TYPE_CHECKING:
    from search._book import ArchitectureBook


def begin_final(book: ArchitectureBook) -> bool:
    """The search is over: start the book's final round (``spec.final``); ``False`` if there is
    none to start (no section, already started, the cluster lost, or nothing to take)."""
    if book.final is not None or book.budget.stop_reason is StopReason.CLUSTER_LOST:
        return False
    book.final = choose_final_round(book)
    if book.final is None:
        return False
    for search_id, task in book.final.tasks.items():
        book.distributions[task.id] = book.distributions[search_id]
    book.feed.state_changed("final round")
    return True


def record_final(book: ArchitectureBook) -> None:
    """Write what the book's final round found, once it is complete."""
    if book.final is not None and book.final.complete:
        record_final_round(book, book.final)


def choose_final_round(book: ArchitectureBook) -> FinalRound | None:
    """The job's ``top_k`` best architectures (by the search's ranking) and every baseline, on
    every search task; ``None`` without a ``final`` section or an architecture to take."""
    section = book.spec.final
    if section is None:
        return None
    ranked = [r.canonical_hash for r in book.store.top_architectures(book.job_id, limit=len(book.archs) + 1)]
    # Only what went through every stage meant for it: one a gate (a threshold, a rung of the
    # ladder) stopped has a score from fewer or shorter tasks.
    baselines = [h for h in book.baseline_hashes if h in book.archs]
    top = [h for h in ranked if h not in baselines and h in book.archs and book.archs[h].stages.complete]
    top = top[: section.top_k]
    if not top:
        return None
    search_tasks = [t for t in book.spec.tasks if t.role == "search"]
    return FinalRound([*top, *baselines], search_tasks, section.seeds)


def record_final_round(book: ArchitectureBook, final: FinalRound) -> None:
    """Each final evaluation's mean, intervals and verdict; each architecture's final score."""
    results, scores = final.results(book.baseline_hashes)
    for r in results:
        verdict = r.verdict
        book.store.set_evaluation(
            book.evaluation(book.archs[r.arch_hash], final.tasks[r.task_id.removesuffix(FINAL_SUFFIX)]),
            relative_score=r.relative,
            best_interval=r.mean_interval,
            relative_interval=r.relative_interval,
            final=(
                r.mean,
                None if verdict is None else verdict.outcome.value,
                None if verdict is None else verdict.p_value,
            ),
            status=EvaluationStatus.DONE,
        )
    for score in scores:
        book.store.update_job_architecture(
            book.job_id,
            book.archs[score.arch_hash].id,
            final_score=score.score,
            final_interval=score.interval,
        )
