"""``cellsearch report``: one self-contained HTML file with plots, the comparison table and
the top cells, checked on a hand-made database with known answers and on a real job."""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _dashboard_data import RealJob, Synthetic, build_synthetic, real_job
from _final_data import BY_FINAL, build_final_job
from typer.testing import CliRunner

from cellsearch._cli import app
from dashboards._report import render_report
from search import ResultStore


class Page(HTMLParser):
    """Collects what the checks need: tags seen, external references, table cells by class."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.references: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.headings: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.references.append(str(values[name]))
        if tag == "link" or (tag == "script"):
            self.references.append(tag)
        if tag == "table":
            self._table = (values.get("class") or "").split()[-1] if values.get("class") else ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag in ("h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join(" ".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag in ("h2", "h3") and self._heading is not None:
            self.headings.append(" ".join(" ".join(self._heading).split()))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Synthetic:
    return build_synthetic(f"sqlite:///{tmp_path_factory.mktemp('report') / 'results.db'}")


def report(data: Synthetic, job_id: int, top: int = 3) -> tuple[str, Page]:
    with ResultStore.open(data.url, upgrade=False, create=False) as store:
        text = render_report(store, job_id, top=top)
    return text, Page(text)


def test_search_report_has_plots_cells_and_no_outside_references(synthetic: Synthetic) -> None:
    text, page = report(synthetic, synthetic.search_job)
    assert page.references == []  # self-contained: no scripts, stylesheets, images or links
    assert "Best score against architectures evaluated" in page.headings
    assert "Score distribution" in page.headings and "Score against parameter count" in page.headings
    assert not any(h.startswith("Comparison") for h in page.headings)  # not a fixed-strategy job
    assert page.tags.count("svg") >= 3 + 3  # the plots and the three top cells' diagrams
    cells = [h for h in page.headings if h.startswith("#")]
    ids = synthetic.ids
    assert [int(h.split()[2]) for h in cells] == [ids["child"], ids["grandchild"], ids["tie"]]
    assert [h.split(": score ", 1)[1] for h in cells] == ["1.100 [1.02, 1.16]", "1.050", "1.050"]
    assert "Top scores with their intervals" in page.headings
    header, *rows = page.tables["forest"]
    assert header == ["rank", "architecture", "name", "score [interval]"]
    assert rows[0][3] == "1.100 [1.02, 1.16]" and rows[1][3] == "1.050"  # a point alone: no interval
    assert [int(r[1]) for r in rows] == [
        ids[n] for n in ["child", "grandchild", "tie", "gru", "lstm", "stopped"]
    ]
    assert "xml-small 1.200 [1.10, 1.30]" in text  # the child's relative scores with their intervals
    assert "rewired node &#x27;r&#x27; input 0 to x" in text  # the mutation, escaped
    assert text.count('<div class="diagram"><svg') == 3 and "digraph" not in text


def test_best_curve_numbers_follow_the_proposal_order(synthetic: Synthetic) -> None:
    _, page = report(synthetic, synthetic.search_job)
    header, *rows = page.tables["best-curve"]
    assert header == ["architectures evaluated", "best score", "architecture", "its score [interval]"]
    # proposal order: gru 1.0, lstm 0.9, child 1.1, grandchild 1.05, (filtered: no score), tie, stopped
    assert [r[1] for r in rows] == ["1.0000", "1.0000", "1.1000", "1.1000", "1.1000", "1.1000"]
    assert [r[3] for r in rows][:3] == ["1.000", "0.900", "1.100 [1.02, 1.16]"]
    assert [int(r[2]) for r in rows] == [
        synthetic.ids[n] for n in ["gru", "lstm", "child", "grandchild", "tie", "stopped"]
    ]
    scatter = {r[0]: r for r in page.tables["scatter"][1:]}
    assert scatter[str(synthetic.ids["gru"])][1:] == ["gru", "98816", "1.000"]
    assert scatter[str(synthetic.ids["child"])][3] == "1.100 [1.02, 1.16]"


def test_fixed_job_gets_the_paper_table(synthetic: Synthetic) -> None:
    _, page = report(synthetic, synthetic.fixed_job)
    assert "Comparison of the cells (relative to the best baseline)" in page.headings
    header, *rows = page.tables["paper"]
    assert header == ["cell", "memorize", "score"]
    assert rows == [
        ["gru", "1.000 accuracy 0.9000", "1.000"],  # one trial: no interval
        ["lstm", "1.100 [1.05, 1.15] accuracy 0.9900 [0.970, 0.990]", "1.100 [1.05, 1.15]"],
    ]


def test_report_command_writes_the_file(synthetic: Synthetic, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(synthetic.search_job), "-o", str(out), "--db", synthetic.url])
    assert result.exit_code == 0, result.stderr
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    result = runner.invoke(app, ["report", "99", "-o", str(out), "--db", synthetic.url])
    assert result.exit_code == 1 and "unknown job 99" in result.stderr


def test_report_of_a_real_job(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> None:
    real: RealJob = real_job(tmp_path_factory, pytestconfig)
    with ResultStore.open(real.db_url, upgrade=False, create=False) as store:
        text = render_report(store, real.job_id)
        leaders = store.top_architectures(real.job_id, 5)
    page = Page(text)
    assert f"job {real.job_id}: dash-real" in text
    assert page.references == []
    shown = [h for h in page.headings if h.startswith("#")]
    assert [int(h.split()[2]) for h in shown] == [e.architecture_id for e in leaders]


def test_final_round_section(tmp_path: Path) -> None:
    data = build_final_job(f"sqlite:///{tmp_path / 'final.db'}")
    with ResultStore.open(data.url, upgrade=False, create=False) as store:
        text = render_report(store, data.job, top=4)
    page = Page(text)
    assert "Final round: the best cells re-evaluated over 3 seeds on the test split" in page.headings
    header, *rows = page.tables["final"]
    assert header[:5] == ["rank", "architecture", "name", "search score", "final score [interval]"]
    assert [r[2] for r in rows] == BY_FINAL[:3]  # tanh was not taken
    lstm = next(r for r in rows if r[2] == "lstm")
    assert lstm[0] == "3" and lstm[4] == "0.900 [0.85, 0.95]"
    assert lstm[5] == "+ 0.5500 [0.525, 0.575] 1.100 [1.00, 1.20]; better than gru on arith (p = 0.003)"
    assert lstm[6].startswith("- 0.5400") and lstm[6].endswith("worse than gru on xml (p < 0.001)")
    assert "lstm beats gru on arith (p = 0.003), worse on xml (p &lt; 0.001)." in text
    assert "mut1 is not distinguishable from gru on arith (p = 0.2), better on xml (p = 0.04)." in text
    assert "not corrected for multiple comparisons" in text
    forest = page.tables["final-forest"]
    assert [r[4] for r in forest[1:]] == ["1.020 [0.98, 1.06]", "1.000 [0.95, 1.04]", "0.900 [0.85, 0.95]"]
    assert page.tags.count("svg") >= 5  # the final scores' plot among them
    cells = [h for h in page.headings if h.startswith("#")]
    assert [h.split()[3].rstrip(":") for h in cells] == BY_FINAL  # the top cells follow the final ranking


def test_no_final_round_no_section(synthetic: Synthetic) -> None:
    _, page = report(synthetic, synthetic.search_job)
    assert not any(h.startswith("Final round") for h in page.headings) and "final" not in page.tables


def test_report_has_diagrams_without_graphviz(synthetic: Synthetic, tmp_path: Path) -> None:
    """``cellsearch report`` run with no ``dot`` on PATH (PATH names an empty folder): the
    top cells' diagrams are inline SVG all the same, not the DOT text."""
    empty = tmp_path / "bin"
    empty.mkdir()
    out = tmp_path / "report.html"
    code = "import sys\nfrom cellsearch._cli import main\nsys.argv[0] = 'cellsearch'\nmain()\n"
    env = {**os.environ, "PATH": str(empty), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = ["report", str(synthetic.search_job), "--db", synthetic.url, "-o", str(out), "--top", "3"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.count('<div class="diagram"><svg') == 3 and "digraph" not in text
