"""The report's building blocks: a matplotlib figure as inline SVG with its caption, the
collapsed table of a plot's numbers, error-bar lengths, and escaping."""

from __future__ import annotations

import html
import io
import re
from typing import Any

from search import Interval, RankedArchitecture


def figure(draw: Any, caption: str, data: str) -> str:
    """A plot (``draw(ax)`` on a fresh matplotlib axis) as inline SVG with its caption and its
    numbers (``data``); the caption alone where matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        missing = "(matplotlib is not installed: no plot)"
        return f"<figure><figcaption>{escape(caption)} {missing}</figcaption>{data}</figure>"
    fig, ax = plt.subplots(figsize=(8, 4.2))
    try:
        draw(ax)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
    finally:
        plt.close(fig)
    svg = strip_xml_header(buffer.getvalue())
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption>{data}</figure>"


def data_table(headers: list[str], rows: list[list[str]], name: str) -> str:
    """A plot's numbers as a collapsed table of class ``name``."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    table = f'<table class="data {name}"><tr>{head}</tr>{body}</table>'
    return f"<details><summary>the numbers</summary>{table}</details>"


def strip_xml_header(svg: str) -> str:
    """An SVG document as an element to inline in HTML (no XML declaration or doctype)."""
    start = svg.find("<svg")
    text = svg[start:] if start >= 0 else svg
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def bar_lengths(scores: list[float], intervals: list[Interval | None]) -> list[list[float]]:
    """Error-bar lengths below and above each score (0 without an interval; never negative,
    should a bound lie a rounding error past its score)."""
    below = [0.0 if iv is None else max(0.0, s - iv.low) for s, iv in zip(scores, intervals, strict=True)]
    above = [0.0 if iv is None else max(0.0, iv.high - s) for s, iv in zip(scores, intervals, strict=True)]
    return [below, above]


def cell_name(arch: RankedArchitecture) -> str:
    """A cell's library name, else the start of its canonical hash."""
    return arch.library_name or arch.canonical_hash[:12]


def escape(text: Any) -> str:
    """Text for HTML, quotes included."""
    return html.escape(str(text), quote=True)
