"""``cellsearch report``: one self-contained HTML file about a job.

Plots and cell diagrams are inline SVG (matplotlib; no Graphviz needed), styles inline: the
file needs nothing else to be read, mailed or archived. Sections: a summary; the best score
against the number of architectures evaluated, with the baseline cells as horizontal lines;
the distribution of scores; the top scores with their intervals; score against parameter count; for a job with
the ``fixed`` strategy the comparison table of the paper (cells by tasks, relative scores);
the top cells with their equations and diagrams; for a job with a final round
(``docs/final-round.md``) its cells with their final scores (error bars), the verdicts against
the best baseline and sentences saying them (:mod:`dashboards._report_final`). Every plot of
scores draws each score's interval as an error bar where it has one (``docs/uncertainty.md``),
and is followed by its numbers, intervals included, in a collapsed table.

Example:
    >>> import tempfile, pathlib
    >>> from search import JobSpec
    >>> from search import ResultStore
    >>> store = ResultStore.open("sqlite://")
    >>> job_id = store.create_job(JobSpec.from_yaml_text(
    ...     "name: demo\\nstrategy: {kind: fixed, cells: [gru]}\\ntasks: [{name: memorize}]"))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "report.html"
    >>> write_report(store, job_id, path)
    >>> "<h1>job 1: demo</h1>" in path.read_text()
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from dashboards._export import _atomic
from dashboards._report_figures import bar_lengths as _bar_lengths
from dashboards._report_figures import cell_name as _name
from dashboards._report_figures import data_table as _data_table
from dashboards._report_figures import escape as _e
from dashboards._report_figures import figure as _figure
from dashboards._report_figures import strip_xml_header as _strip_xml_header
from search import (
    RankedArchitecture,
    StoreReader,
    final_baselines,
    final_seeds,
    final_tasks_of,
    format_estimate,
    job_architectures,
    job_tasks,
)

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
td.win { font-weight: bold; background: #e2f0d9; } td.loss { background: #f8dedd; }
td small { color: #666; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
.cell { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 1em; margin: 1em 0; }
.diagram svg { max-width: 100%; height: auto; }
details summary { cursor: pointer; color: #555; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class _Point:
    arch: RankedArchitecture
    order: int
    """Position in the order the job proposed its architectures."""


def write_report(store: StoreReader, job_id: int, path: str | Path, *, top: int = 5) -> None:
    """Write the report of job ``job_id`` to ``path`` (atomically; see the module docstring)."""
    text = render_report(store, job_id, top=top)

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    _atomic(Path(path), write)


def render_report(store: StoreReader, job_id: int, *, top: int = 5) -> str:
    """The report as HTML text."""
    job = store.get_job(job_id)
    spec = job.spec
    tasks = job_tasks(store, job_id)
    archs = job_architectures(store, job_id)
    order = {m.architecture_id: i for i, m in enumerate(store.job_architectures(job_id))}
    points = sorted((_Point(a, order.get(a.arch_id, len(order))) for a in archs), key=lambda p: p.order)
    baselines = [str(b) for b in spec.get("baselines", [])]
    strategy = str(spec.get("strategy", {}).get("kind", ""))
    summary = store.job_summary(job_id)

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>cellsearch report: job {job_id} {_e(job.name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>job {job_id}: {_e(job.name)}</h1>",
    ]
    if spec.get("description"):
        parts.append(f"<p>{_e(spec['description'])}</p>")
    parts.append(_summary_table(job, summary, strategy, tasks))

    scored = [p for p in points if p.arch.score is not None]
    parts.append("<h2>Best score against architectures evaluated</h2>")
    if scored:
        parts.append(_best_curve(scored, baselines))
        parts.append("<h2>Score distribution</h2>")
        parts.append(_histogram([p.arch.score for p in scored if p.arch.score is not None]))
        parts.append("<h2>Top scores with their intervals</h2>")
        by_search = sorted(
            (a for a in archs if a.score is not None), key=lambda a: (-(a.score or 0.0), a.arch_id)
        )
        parts.append(_forest(by_search[:FOREST_ROWS]))
        parts.append("<h2>Score against parameter count</h2>")
        parts.append(_scatter(scored))
    else:
        parts.append("<p>No architecture has a score yet.</p>")

    final_tasks = final_tasks_of(archs)
    if final_tasks:
        from dashboards._report_final import final_round_section

        parts.append(
            final_round_section(
                archs, final_tasks, final_baselines(store, job_id), final_seeds(store, job_id)
            )
        )

    if strategy == "fixed":
        parts.append("<h2>Comparison of the cells (relative to the best baseline)</h2>")
        parts.append(_paper_table(archs, tasks, [str(c) for c in spec.get("strategy", {}).get("cells", [])]))

    leaders = [a for a in archs if a.score is not None][:top]
    parts.append(f"<h2>Top {len(leaders)} cells</h2>")
    parts.extend(_cell_section(a, tasks) for a in leaders)
    parts.append(
        f"<p><small>Written by cellsearch on {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. "
        "Scores: each task's best value relative to the best baseline cell on that task; an "
        "architecture's score is its worst task (above 1 beats the baseline on every task). "
        "Intervals (error bars, and [low, high] in the tables): how much a best value depends on "
        "which trials were drawn, carried through the ratio and the worst task; see the "
        "uncertainty page of the cellsearch documentation.</small></p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- sections --------------------------------------------------------------------------------


def _summary_table(job: Any, summary: Any, strategy: str, tasks: list[str]) -> str:
    a, t = summary.architectures, summary.trials
    score = format_estimate(summary.best_score, summary.best_score_interval, 4)
    best = "-" if summary.best_arch_id is None else f"architecture {summary.best_arch_id}, {score}"
    rows = [
        ("state", job.state),
        ("strategy", strategy),
        ("tasks", ", ".join(tasks)),
        ("started", _time(job.started_at)),
        ("finished", _time(job.finished_at)),
        (
            "architectures",
            f"{a.proposed} proposed, {a.passed_filter} passed the filter, "
            f"{a.filtered_out} filtered out, {a.evaluated} evaluated",
        ),
        ("trials", f"{t.completed} completed, {t.pruned} pruned, {t.failed} failed, {t.diverged} diverged"),
        ("best", best),
    ]
    body = "".join(f'<tr><th class="name">{_e(k)}</th><td class="name">{_e(v)}</td></tr>' for k, v in rows)
    return f'<table class="summary">{body}</table>'


def _best_curve(points: list[_Point], baselines: list[str]) -> str:
    xs, best, running = [], [], -math.inf
    for i, p in enumerate(points, start=1):
        running = max(running, p.arch.score or -math.inf)
        xs.append(i)
        best.append(running)
    lines = {p.arch.library_name: p.arch.score for p in points if p.arch.library_name in baselines}

    def draw(ax: Any) -> None:
        ax.step(xs, best, where="post", color="#1f77b4", label="best so far")
        _error_bars(ax, xs, [p.arch for p in points], color="#999")
        ax.scatter(xs, [p.arch.score for p in points], s=8, color="#999", label="each architecture", zorder=2)
        for (name, score), color in zip(
            sorted(lines.items()), ("#d62728", "#2ca02c", "#9467bd", "#8c564b"), strict=False
        ):
            ax.axhline(score, color=color, linestyle="--", linewidth=1, label=f"baseline {name}")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("architectures evaluated")
        ax.set_ylabel("score (worst task relative to the best baseline)")
        ax.legend(loc="lower right", fontsize=8)

    data = _data_table(
        ["architectures evaluated", "best score", "architecture", "its score [interval]"],
        [
            [str(x), _n(b), str(p.arch.arch_id), format_estimate(p.arch.score, p.arch.score_interval)]
            for x, b, p in zip(xs, best, points, strict=True)
        ],
        "best-curve",
    )
    return _figure(
        draw,
        "The best score so far as architectures are evaluated (in the order they were proposed); "
        "the bars are each score's interval.",
        data,
    )


def _histogram(scores: list[float]) -> str:
    def draw(ax: Any) -> None:
        ax.hist(scores, bins=min(30, max(5, len(scores) // 3)), color="#1f77b4", edgecolor="white")
        ax.axvline(1.0, color="#d62728", linestyle="--", linewidth=1, label="best baseline")
        ax.set_xlabel("score")
        ax.set_ylabel("architectures")
        ax.legend(fontsize=8)

    return _figure(draw, f"Scores of the {len(scores)} scored architectures.", "")


def _scatter(points: list[_Point]) -> str:
    def draw(ax: Any) -> None:
        _error_bars(ax, [p.arch.parameter_count for p in points], [p.arch for p in points], color="#1f77b4")
        ax.scatter(
            [p.arch.parameter_count for p in points], [p.arch.score for p in points], s=12, color="#1f77b4"
        )
        for p in points:
            if p.arch.library_name:
                ax.annotate(p.arch.library_name, (p.arch.parameter_count, p.arch.score), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")  # fmt: skip
        sizes = sorted({p.arch.parameter_hidden for p in points})
        ax.set_xlabel(f"parameters per layer (input and hidden size {', '.join(map(str, sizes))})")
        ax.set_ylabel("score")

    data = _data_table(
        ["architecture", "name", "parameters", "score [interval]"],
        [
            [str(p.arch.arch_id), _name(p.arch), str(p.arch.parameter_count), _estimate(p.arch)]
            for p in points
        ],
        "scatter",
    )
    return _figure(draw, "Score against the cell's parameter count (bars: the score's interval).", data)


def _forest(leaders: list[RankedArchitecture]) -> str:
    """The best scores, one row each, with their intervals as horizontal bars and the best
    baseline at 1: which leaders are told apart from each other and from the baseline."""
    rows = list(reversed(leaders))  # the best at the top

    def draw(ax: Any) -> None:
        ys = list(range(len(rows)))
        scores = [a.score or 0.0 for a in rows]
        ax.errorbar(scores, ys, xerr=_bar_lengths(scores, [a.score_interval for a in rows]), fmt="o",
                    color="#1f77b4", ecolor="#1f77b4", elinewidth=2, capsize=4, markersize=5)  # fmt: skip
        ax.axvline(1.0, color="#d62728", linestyle="--", linewidth=1)  # no legend: it would hide a bar
        ax.set_yticks(ys, [f"#{a.rank} {_name(a)}" for a in rows], fontsize=8)
        ax.set_xlabel("score (worst task relative to the best baseline) and its interval")

    data = _data_table(
        ["rank", "architecture", "name", "score [interval]"],
        [[str(a.rank), str(a.arch_id), _name(a), _estimate(a)] for a in leaders],
        "forest",
    )
    caption = (
        f"The {len(leaders)} best scores with their intervals (a point alone: too few trials for one); "
        "the dashed line is the best baseline. "
        "Leaders whose bars overlap are not told apart by this search; its re-evaluation over seeds is."
    )
    return _figure(draw, caption, data)


def _paper_table(archs: list[RankedArchitecture], tasks: list[str], cell_order: list[str]) -> str:
    by_name = {a.library_name or str(a.arch_id): a for a in archs}
    names = [c for c in cell_order if c in by_name] + [n for n in by_name if n not in cell_order]
    head = (
        '<tr><th class="name">cell</th>' + "".join(f"<th>{_e(t)}</th>" for t in tasks) + "<th>score</th></tr>"
    )
    rows = []
    for name in names:
        arch = by_name[name]
        cells = []
        for task in tasks:
            result = arch.per_task.get(task)
            if result is None:
                cells.append("<td>-</td>")
                continue
            win = ' class="win"' if result.relative is not None and result.relative >= 1.0 else ""
            cells.append(
                f"<td{win}>{_e(format_estimate(result.relative, result.relative_interval))}<br>"
                f"<small>{_e(result.metric)} {_e(format_estimate(result.value, result.value_interval, 4))}"
                "</small></td>"
            )
        rows.append(
            f'<tr><td class="name">{_e(name)}</td>{"".join(cells)}<td>{_e(_estimate(arch))}</td></tr>'
        )
    return (
        f'<table class="paper">{head}{"".join(rows)}</table>'
        "<p><small>Each entry: the cell's best result on the task relative to the best baseline "
        "(bold: at least as good) with its interval, and below it the best value of the task's "
        "metric with its interval.</small></p>"
    )


def _cell_section(arch: RankedArchitecture, tasks: list[str]) -> str:
    from cells import CellGraph, equation_legend

    try:
        graph: CellGraph | None = CellGraph.parse(arch.graph)
    except ValueError:  # a stored graph this version cannot read: show the text parts only
        graph = None
    diagram = "" if graph is None else _diagram(graph)
    results = ", ".join(
        f"{_e(t)} {_e(format_estimate(arch.per_task[t].relative, arch.per_task[t].relative_interval))}"
        for t in tasks
        if t in arch.per_task and arch.per_task[t].relative is not None
    )
    lineage = (
        _e(arch.origin) if arch.parent_id is None else f"child of {arch.parent_id}: {_e(arch.mutation or '')}"
    )
    return (
        f'<div class="cell" id="arch-{arch.arch_id}"><h3>#{arch.rank} architecture {arch.arch_id} '
        f"{_e(_name(arch))}: score {_e(_estimate(arch))}</h3>"
        f"<p>{lineage}<br>relative scores: {results or '-'}<br>"
        f"{arch.parameter_count:,} parameters per layer at input and hidden size {arch.parameter_hidden}</p>"
        f"<pre>{_e(arch.equations)}</pre>"
        + (f"<p><small>{_e(equation_legend(graph))}</small></p>" if graph is not None else "")
        + f"{diagram}</div>"
    )


# -- helpers ---------------------------------------------------------------------------------


def _diagram(graph: Any) -> str:
    """The cell's diagram as inline SVG (matplotlib), or its DOT text where it cannot be drawn."""
    from cells import diagram_svg, to_dot

    try:
        svg = diagram_svg(graph)
    except (ImportError, RuntimeError, ValueError, OSError):  # matplotlib missing or failing
        return f"<details><summary>Graphviz DOT</summary><pre>{_e(to_dot(graph))}</pre></details>"
    return f'<div class="diagram">{_strip_xml_header(svg)}</div>'


FOREST_ROWS = 15
"""Architectures in the plot of the top scores with their intervals."""


def _error_bars(ax: Any, xs: list[Any], archs: list[RankedArchitecture], color: str) -> None:
    """Each score's interval as a vertical bar at its x (architectures without one: none)."""
    with_interval = [(x, a.score, a.score_interval) for x, a in zip(xs, archs, strict=True)]
    bars = [(x, s, iv) for x, s, iv in with_interval if s is not None and iv is not None]
    if not bars:
        return
    lengths = _bar_lengths([s for _, s, _ in bars], [iv for _, _, iv in bars])
    ax.errorbar([x for x, _, _ in bars], [s for _, s, _ in bars], yerr=lengths, fmt="none",
                ecolor=color, elinewidth=1, capsize=2, alpha=0.7, label="score interval")  # fmt: skip


def _estimate(arch: RankedArchitecture) -> str:
    return format_estimate(arch.score, arch.score_interval)


def _n(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _time(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S %Z}"
