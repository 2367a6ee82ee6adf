"""How the final round's results read: verdict marks, the legend under a leaderboard, verdicts
in words, and which baseline each final task was judged against.

The final round (:mod:`search._final_round`) stores each final evaluation under the label
``<task>.final``; every view of the results (``results top``, ``results show``, ``status``,
the report) shows those apart from the search's tasks, with a mark per task: ``+`` better
than the best baseline, ``-`` worse, ``=`` not distinguishable from it (a paired t-test at
95% over the round's seeds), ``b`` for the baseline itself.

Example:
    >>> verdict_mark("better"), verdict_mark(None)
    ('+', 'b')
    >>> verdict_words("better", 0.0031, "gru", "arith")
    'better than gru on arith (p = 0.003)'
    >>> verdict_words("indistinguishable", 0.42, "gru", "xml")
    'not distinguishable from gru on xml (p = 0.42)'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from search._final_round import FINAL_SUFFIX
from search._intervals import format_estimate
from search._schema import Architecture, Evaluation
from search._store_reader import StoreReader

VERDICT_MARKS = {"better": "+", "worse": "-", "indistinguishable": "="}
BASELINE_MARK = "b"


def is_final_task(label: str) -> bool:
    """Whether ``label`` is a final task's (``arith.final``)."""
    return label.endswith(FINAL_SUFFIX)


def search_task_of(label: str) -> str:
    """The search task a final task re-evaluates (``arith.final`` -> ``arith``)."""
    return label.removesuffix(FINAL_SUFFIX)


def split_tasks(labels: Iterable[str]) -> tuple[list[str], list[str]]:
    """Task labels as (the search's, the final round's), each in the given order."""
    labels = list(labels)
    return [t for t in labels if not is_final_task(t)], [t for t in labels if is_final_task(t)]


def verdict_mark(verdict: str | None) -> str:
    """One character per final task: ``+`` better, ``-`` worse, ``=`` not distinguishable,
    ``b`` the baseline it was judged against (no verdict)."""
    return BASELINE_MARK if verdict is None else VERDICT_MARKS.get(verdict, "?")


def format_p(p_value: float | None) -> str:
    """A p-value as the sentences print it: ``p < 0.001`` below a thousandth, else two
    significant digits."""
    if p_value is None:
        return "p unknown"
    if p_value < 0.001:
        return "p < 0.001"
    return f"p = {p_value:.2g}" if p_value >= 0.01 else f"p = {p_value:.1g}"


def verdict_words(verdict: str | None, p_value: float | None, baseline: str, task: str) -> str:
    """A verdict as a phrase: ``better than gru on arith (p = 0.003)``."""
    if verdict is None:
        return f"the baseline on {task}"
    relation = {
        "better": f"better than {baseline}",
        "worse": f"worse than {baseline}",
        "indistinguishable": f"not distinguishable from {baseline}",
    }.get(verdict, f"{verdict} against {baseline}")
    return f"{relation} on {task} ({format_p(p_value)})"


def verdict_sentence(
    name: str, verdicts: Iterable[tuple[str, str | None, float | None]], baselines: Mapping[str, str]
) -> str:
    """What the final round found for one cell, as a sentence: ``verdicts`` are (final task,
    verdict, p-value); ``baselines`` name each task's baseline.

    Example:
        >>> verdict_sentence("mut2", [("arith.final", "better", 0.004),
        ...     ("xml.final", "indistinguishable", 0.4)], {"arith.final": "gru", "xml.final": "gru"})
        'mut2 beats gru on arith (p = 0.004), not distinguishable on xml (p = 0.4).'
    """
    phrases = []
    named: str | None = None
    for label, verdict, p_value in verdicts:
        if verdict is None:
            continue
        baseline = baselines.get(label, "the baseline")
        against = "" if baseline == named else f" {baseline}"
        named = baseline
        relation = {
            "better": f"beats{against}" if against else "better",
            "worse": f"is worse than{against}" if against else "worse",
            "indistinguishable": (
                f"is not distinguishable from{against}" if against else "not distinguishable"
            ),
        }.get(verdict, verdict)
        phrases.append(f"{relation} on {search_task_of(label)} ({format_p(p_value)})")
    if not phrases:
        return f"{name} is the baseline."
    return f"{name} {', '.join(phrases)}."


def final_task_cell(per_task: Mapping[str, Any], label: str, digits: int = 3) -> str:
    """A leaderboard cell of one final task: the verdict mark and the seed mean relative to
    the best baseline (``+ 1.062``); ``-`` where the round did not take the architecture."""
    result = per_task.get(label)
    if result is None or result.mean is None:
        return "-"
    return f"{verdict_mark(result.verdict)} {format_estimate(result.relative, None, digits)}"


def final_tasks_of(rows: Iterable[Any]) -> list[str]:
    """The final tasks that leaderboard rows hold results of, in the order first seen."""
    out: list[str] = []
    for row in rows:
        out += [t for t in row.per_task if is_final_task(t) and t not in out]
    return out


def final_legend(baselines: dict[str, str], seeds: int | None) -> str:
    """The line under a leaderboard with a final round: what the marks mean and against what."""
    names = sorted(set(baselines.values()))
    against = (
        ", ".join(names)
        if len(names) <= 1
        else ", ".join(f"{search_task_of(task)}: {name}" for task, name in baselines.items())
    )
    over = f"{seeds} seeds" if seeds else "the round's seeds"
    return (
        f"final: seed mean on the test split relative to the best baseline ({against or 'none'}); "
        f"per task + better, - worse, = not distinguishable, b the baseline "
        f"(95%, paired over {over}; not corrected for multiple comparisons)"
    )


def final_seeds(store: StoreReader, job_id: int) -> int | None:
    """The seeds of the job's final round (``None``: the job has none)."""
    section = store.get_job(job_id).spec.get("final")
    return int(section["seeds"]) if isinstance(section, dict) and "seeds" in section else None


def final_baselines(store: StoreReader, job_id: int) -> dict[str, str]:
    """Final task label -> the name of the baseline it was judged against (the scored row
    without a verdict), in task order."""
    e, a = Evaluation, Architecture
    query = (
        select(e.task_label, a.library_name, a.canonical_hash)
        .join(a, a.id == e.architecture_id)
        .where(
            e.job_id == job_id,
            e.task_label.like(f"%{FINAL_SUFFIX}"),
            e.mean_value.is_not(None),
            e.relative_score.is_not(None),  # none without a scored baseline
            e.verdict.is_(None),
        )
        .order_by(e.id)
    )
    with Session(store.engine) as conn:
        rows = conn.execute(query).all()
    out: dict[str, str] = {}
    for label, name, canonical_hash in rows:
        out.setdefault(label, name or canonical_hash[:12])
    return out
