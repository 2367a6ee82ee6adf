"""The report's final-round section: the cells the round re-evaluated, their final scores with
error bars, the verdicts against the best baseline per task, and what they say in sentences
(``docs/final-round.md``)."""

from __future__ import annotations

from typing import Any

from dashboards._report_figures import bar_lengths as _bar_lengths
from dashboards._report_figures import cell_name as _name
from dashboards._report_figures import data_table as _data_table
from dashboards._report_figures import escape as _e
from dashboards._report_figures import figure as _figure
from search import (
    RankedArchitecture,
    format_estimate,
    search_task_of,
    verdict_mark,
    verdict_sentence,
    verdict_words,
)

_VERDICT_CLASS = {"better": "win", "worse": "loss"}


def final_round_section(
    archs: list[RankedArchitecture], final_tasks: list[str], baselines: dict[str, str], seeds: int | None
) -> str:
    """The section's HTML; ``archs`` ranked (the round's cells first), ``baselines`` each final
    task's baseline, ``seeds`` the round's seeds per cell and task."""
    taken = [a for a in archs if any(t in a.per_task for t in final_tasks)]
    if not taken:
        return ""
    over = f"{seeds} seeds" if seeds else "its seeds"
    intro = (
        f"<p>After the search, its best cells and the baselines were trained again on every search "
        f"task with {_e(over)} (the same seeds for every cell) and scored on the test split. A cell's "
        "final score is its worst task's seed mean relative to the best baseline's, with a Student-t "
        "interval. Each verdict compares the cell with that baseline by a paired t-test at 95%: "
        "<b>+</b> better, <b>&minus;</b> worse, <b>=</b> not distinguishable (which is not the same "
        f"as equal). The {len(taken)} cells &times; {len(final_tasks)} tasks are not corrected for "
        "multiple comparisons: among many tests at 95%, about one in twenty differences is chance.</p>"
    )
    sentences = "".join(
        f"<li>{_e(verdict_sentence(_name(a), _verdicts(a, final_tasks), baselines))}</li>"
        for a in taken
        if any(a.per_task[t].verdict is not None for t in final_tasks if t in a.per_task)
    )
    return (
        f'<h2 id="final-round">Final round: the best cells re-evaluated over {_e(over)} '
        "on the test split</h2>"
        + intro
        + _final_table(taken, final_tasks, baselines)
        + (f"<ul>{sentences}</ul>" if sentences else "")
        + _final_forest([a for a in taken if a.final_score is not None])
    )


def _verdicts(arch: RankedArchitecture, final_tasks: list[str]) -> list[tuple[str, str | None, float | None]]:
    return [
        (t, arch.per_task[t].verdict, arch.per_task[t].p_value) for t in final_tasks if t in arch.per_task
    ]


def _final_table(taken: list[RankedArchitecture], final_tasks: list[str], baselines: dict[str, str]) -> str:
    head = (
        '<tr><th>rank</th><th>architecture</th><th class="name">name</th><th>search score</th>'
        "<th>final score [interval]</th>"
        + "".join(
            f"<th>{_e(search_task_of(t))}<br><small>mean [interval], relative</small></th>"
            for t in final_tasks
        )
        + "</tr>"
    )
    rows = []
    for a in taken:
        cells = []
        for task in final_tasks:
            r = a.per_task.get(task)
            if r is None:
                cells.append("<td>-</td>")
                continue
            words = verdict_words(
                r.verdict, r.p_value, baselines.get(task, "the baseline"), search_task_of(task)
            )
            css = _VERDICT_CLASS.get(r.verdict or "", "")
            cells.append(
                f'<td class="{css}" title="{_e(words)}"><b>{_e(verdict_mark(r.verdict))}</b> '
                f"{_e(format_estimate(r.mean, r.value_interval, 4))}<br>"
                f"<small>{_e(format_estimate(r.relative, r.relative_interval))}; {_e(words)}</small></td>"
            )
        rows.append(
            f'<tr><td>{a.rank}</td><td><a href="#arch-{a.arch_id}">{a.arch_id}</a></td>'
            f'<td class="name">{_e(_name(a))}</td><td>{_e(format_estimate(a.score, a.score_interval))}</td>'
            f"<td>{_e(format_estimate(a.final_score, a.final_interval))}</td>{''.join(cells)}</tr>"
        )
    return f'<table class="final">{head}{"".join(rows)}</table>'


def _final_forest(taken: list[RankedArchitecture]) -> str:
    """The final scores with their intervals as bars, the best at the top, the baseline at 1."""
    if not taken:
        return ""
    rows = list(reversed(taken))

    def draw(ax: Any) -> None:
        ys = list(range(len(rows)))
        scores = [a.final_score or 0.0 for a in rows]
        ax.errorbar(scores, ys, xerr=_bar_lengths(scores, [a.final_interval for a in rows]), fmt="s",
                    color="#2ca02c", ecolor="#2ca02c", elinewidth=2, capsize=4, markersize=5,
                    label="final score")  # fmt: skip
        searched = [(a.score, y) for a, y in zip(rows, ys, strict=True) if a.score is not None]
        ax.scatter([s for s, _ in searched], [y for _, y in searched], marker="x", color="#999",
                   label="search score", zorder=3)  # fmt: skip
        ax.axvline(1.0, color="#d62728", linestyle="--", linewidth=1)
        ax.set_yticks(ys, [f"#{a.rank} {_name(a)}" for a in rows], fontsize=8)
        ax.set_xlabel("final score (worst task's seed mean relative to the best baseline) and its interval")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # off the bars

    data = _data_table(
        ["rank", "architecture", "name", "search score [interval]", "final score [interval]"],
        [
            [
                str(a.rank),
                str(a.arch_id),
                _name(a),
                format_estimate(a.score, a.score_interval),
                format_estimate(a.final_score, a.final_interval),
            ]
            for a in taken
        ],
        "final-forest",
    )
    caption = (
        "Final scores with their t-intervals over the seeds (green), against the search's score "
        "(grey cross: the best of a few trials on the validation split, an optimistic figure); "
        "the dashed line is the best baseline."
    )
    return _figure(draw, caption, data)
