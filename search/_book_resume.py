"""Rebuilding a job's architecture book from the database after a stop or a crash.

Each stored architecture of the job goes through the live path: it becomes a
:class:`~search._strategies.Candidate` again and is added with
:meth:`ArchitectureBook.add <search._book.ArchitectureBook.add>`; its stored evaluations set
its stages' progress (as a reused evaluation does); then the book settles
(:meth:`ArchitectureBook.settle <search._book.ArchitectureBook.settle>`) as after any trial:
what is over retires and is scored, unless the strategy was told before the stop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search._records import EvaluationRecord
from search._states import SETTLED_EVALUATIONS
from search._strategies import Candidate, StageStatus

if TYPE_CHECKING:
    from search._book import Architecture, ArchitectureBook


def restore_book(book: ArchitectureBook) -> None:
    """Rebuild ``book`` (new, empty) and its budget from the job's stored records."""
    store, job_id = book.store, book.job_id
    book.feed.trials_interrupted_on_resume(store.mark_running_trials_interrupted(job_id))
    saved = store.load_strategy_state(job_id) or {}
    members = store.job_architectures(job_id)
    records = {m.architecture_id: store.get_architecture(m.architecture_id) for m in members}
    if "strategy" in saved:
        pending = [e["hash"] for e in saved["strategy"].get("pending", [])]
        seen = {r.canonical_hash for r in records.values()} | set(pending)
        book.strategy.load_state_dict({**saved["strategy"], "seen": sorted(seen)})
    driver_state: dict[str, Any] = saved.get("driver", {})
    book.refined = {k: int(v) for k, v in driver_state.get("refined", {}).items()}
    book.budget.elapsed_before = float(driver_state.get("elapsed", 0.0))
    book.baseline_hashes = list(driver_state.get("baselines") or [c.hash for c in book.baseline_candidates()])
    evaluations: dict[int, list[EvaluationRecord]] = {}
    for evaluation in store.evaluations(job_id):
        evaluations.setdefault(evaluation.architecture_id, []).append(evaluation)
    summary = store.job_summary(job_id).trials
    book.budget.trials_counted = summary.finished
    hashes = {arch_id: r.canonical_hash for arch_id, r in records.items()}
    for member in members:
        record = records[member.architecture_id]
        if member.filter_passed is False and not evaluations.get(record.id):
            book.prefiltered.add(record.canonical_hash)  # dropped by the pre-filter: nothing to run
            continue
        parent = hashes.get(record.parent_id) if record.parent_id else None
        arch = _readd(book, record, member.generation, parent)
        arch.filter_recorded = member.filter_passed is not None
        _restore_progress(book, arch, evaluations.get(record.id, []), record.first_job_id != job_id)
    book.budget.proposed = max(book.budget.proposed, int(driver_state.get("proposed", 0)))
    book.feed.resumed(book.budget.elapsed_before, book.budget.proposed, summary)
    _settle_restored(book)
    book.save()


def _readd(book: ArchitectureBook, record: Any, generation: int, parent_hash: str | None) -> Architecture:
    """Add a stored architecture to the book as the live path adds a proposal."""
    is_baseline = record.canonical_hash in book.baseline_hashes
    candidate = Candidate(
        graph=record.cell(),
        hash=record.canonical_hash,
        origin="baseline" if is_baseline else "mutation",
        parent_hash=parent_hash,
        mutation=record.mutation,
        library_name=record.library_name,
        generation=generation,
        gated=book.spec.strategy.kind != "fixed" and not is_baseline,
    )
    arch = book.add(candidate, arch_id=record.id)
    if not is_baseline:
        book.budget.count_proposal()
    if not book.strategy.is_known(arch.hash):
        book.strategy.register(candidate)
    return arch


def _restore_progress(
    book: ArchitectureBook, arch: Architecture, evaluations: list[EvaluationRecord], earlier_job: bool
) -> None:
    """Set an architecture's stages from its stored evaluations (and reuse an earlier job's)."""
    by_id = {t.id: t for t in book.spec.tasks}
    for evaluation in evaluations:
        task = by_id.get(evaluation.task_label)
        if task is None:
            continue
        arch.evaluations[task.id] = evaluation.id
        arch.stages.restore(task.id, evaluation.trials_finished, evaluation.best_value)
    if earlier_job:  # known from an earlier job: reuse what it has
        book.reuse_evaluations(arch)
    extra = book.refined.get(arch.hash, 0)
    if extra:
        for task in book.spec.tasks:
            progress = arch.stages.progress[task.id]
            if task.role == "search":
                progress.target = max(progress.target, book.spec.trials_for(task) + extra)
    for evaluation in evaluations:
        task = by_id.get(evaluation.task_label)
        if task is not None and evaluation.status in SETTLED_EVALUATIONS:
            arch.recorded.add(task.id)


def _settle_restored(book: ArchitectureBook) -> None:
    """Learn the baselines' bests from the stored progress, mark what the strategy was told
    before the stop as scored (counted for the display only), then settle as the live loop
    does: what is over retires, and what the strategy was not told is scored now."""
    for cell_hash in book.baseline_hashes:  # baselines first: the yardstick of every gate
        if cell_hash in book.archs:
            for task in book.spec.tasks:
                book.update_baseline_best(book.archs[cell_hash], task)
    for arch in book.archs.values():
        arch.stages.update(book.baseline_best)
        if arch.stages.status != StageStatus.RUNNING and not book.strategy.awaiting(arch.hash):
            arch.finalized = True
            book.report_done(arch, None)
    book.settle()
