"""What an architecture's MLflow run shows beyond its numbers: the description (equations as
plain text), the learning curves as step metrics, the training time, the diagram.

The description is Markdown (MLflow renders ``mlflow.note.content``), so every text that
comes from a cell or a mutation goes in a fenced code block: line breaks stay, and nothing
in it (``shift[beta=-0.5](f)``) becomes a link or emphasis.

Example:
    >>> print(fenced("h' = tanh(W x + U h + b)"))
    ```text
    h' = tanh(W x + U h + b)
    ```
    >>> curve_metrics("arith", [[[100, 0.5], [200, 0.75]]], best=0)["arith.curve"]
    [(100, 0.5), (200, 0.75)]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from dashboards._tracking_ops import metric_key

NOTE_TAG = "mlflow.note.content"


def fenced(text: str, info: str = "text") -> str:
    """``text`` as a Markdown code block whose fence no backtick run inside can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def plain(text: str) -> str:
    """One line of free text for Markdown: characters Markdown reads as syntax are escaped."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~-])", r"\\\1", " ".join(text.split()))


def description(
    name: str,
    equations: str,
    *,
    cell_description: str | None,
    mutation: str | None,
    parent: str | None,
    summary: Sequence[str],
) -> str:
    """The Markdown of an architecture's run page: its equations first (what the page shows
    before "Show more"), what it is, its scores."""
    lines = [fenced(equations), ""]
    if parent:
        lines += [
            f"**{plain(name)}**, a mutant of {plain(parent)}:",
            "",
            fenced(mutation or "(not recorded)"),
            "",
        ]
    elif cell_description:
        lines += [f"**{plain(name)}**: {plain(cell_description)}", ""]
    if summary:
        lines += [fenced("\n".join(summary)), ""]
    lines.append("h, c, m: the states before the step; h', c', m': after it.")
    return "\n".join(lines)


def run_page(
    name: str, graph: Any, details: Any, membership: Any, evaluations: Sequence[tuple[Any, Sequence[Any]]]
) -> dict[str, Any]:
    """An architecture run's description, curves (step metrics) and training span, from its
    evaluations in the job, each with its trials (oldest first)."""
    from cells import to_equations

    curves: dict[str, list[tuple[int, float]]] = {}
    for evaluation, trials in evaluations:
        best = next((i for i, t in enumerate(trials) if t.id == evaluation.best_trial_id), None)
        curves |= curve_metrics(evaluation.task_label, [t.curve for t in trials], best)
    every = [t for _, trials in evaluations for t in trials]
    start_ms, end_ms = training_span(every)
    parent = details.lineage[1] if len(details.lineage) > 1 else None
    text = description(
        name,
        to_equations(graph),
        cell_description=graph.description if details.library_name else None,
        mutation=details.lineage[0].mutation,
        parent=None
        if parent is None
        else f"arch-{parent.arch_id}" + (f"-{parent.library_name}" if parent.library_name else ""),
        summary=_summary(details, membership),
    )
    return {
        "description": text,
        "curves": curves,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "train_seconds": sum(float(t.seconds) for t in every if t.seconds is not None),
    }


def _summary(details: Any, membership: Any) -> list[str]:
    lines = []
    if membership.score is not None:
        interval = membership.score_interval
        bounds = f" [{interval.low:.3g}, {interval.high:.3g}]" if interval is not None else ""
        lines.append(f"score {membership.score:.3g}{bounds} (worst task, relative to the best baseline)")
    for task in membership.tasks:
        result = task.result
        if result.relative is not None:
            lines.append(f"{result.task}: {result.value:.3g} ({result.relative:.3g} of the baseline)")
        elif result.value is not None:
            lines.append(f"{result.task}: {result.value:.3g}")
    lines.append(
        f"{details.parameter_count:,} parameters, {details.num_nodes} nodes, "
        f"generation {membership.generation}"
    )
    return lines


def curve_metrics(
    task: str, curves: Sequence[Sequence[Sequence[float]] | None], best: int | None
) -> dict[str, list[tuple[int, float]]]:
    """A task's learning curves as step metrics: every trial's (``<task>.trial_<n>``) and the
    best trial's again as ``<task>.curve``, the one key every architecture shares (so the
    chart view compares architectures)."""
    key = metric_key(task)
    out: dict[str, list[tuple[int, float]]] = {}
    for number, curve in enumerate(curves):
        points = [(int(step), float(value)) for step, value in curve or [] if _finite(value)]
        if not points:
            continue
        out[f"{key}.trial_{number}"] = points
        if number == best:
            out[f"{key}.curve"] = points
    return out


def _finite(value: Any) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number == number and abs(number) != float("inf")


def epoch_ms(moment: datetime | None) -> int | None:
    """A stored time (naive: UTC) in milliseconds since the epoch, as MLflow keeps times."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def training_span(trials: Sequence[Any]) -> tuple[int | None, int | None]:
    """When an architecture's first trial started and its last one finished (ms), its
    run's start and end: the run's duration is the time it spent training."""
    starts = [ms for t in trials if (ms := epoch_ms(t.started_at)) is not None]
    ends = [ms for t in trials if (ms := epoch_ms(t.finished_at)) is not None]
    return (min(starts) if starts else None, max(ends) if ends else None)


def diagram_png(graph: Any, folder: Any) -> str:
    """Draw the cell's diagram as ``cell.png`` in ``folder`` (``cells.draw_diagram``, drawn
    with matplotlib, no system packages); returns its file name."""
    from cells import draw_diagram

    return draw_diagram(graph, folder / "cell.png").name
