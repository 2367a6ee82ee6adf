"""The hostile-input corpus of issue 12 through the real ``cellsearch`` command.

Every case must be refused in seconds with exit 1 or 2, one line on stderr naming the field or
option, no traceback, under the time limit and 1 GiB, and nothing written (the copy of a real
results database keeps its bytes and row counts). Positive controls (``code`` 0) must work and
write nothing. A failing class lists each failing case with what went wrong, one line each.

``HOSTILE_REPORT=path.json`` writes the per-class figures and every failure; ``HOSTILE_SKIP_RAY=1``
leaves out the cases that start a local Ray; ``HOSTILE_CASES=prefix`` runs only the matching ids.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _hostile_cases import CASES, CLASSES, COVERED_ELSEWHERE
from _hostile_db import build_results_db
from _hostile_runner import MEMORY_CAP, Case, run_cases

# One run of the corpus: a few minutes on a loaded machine today, where many cases hang.
pytestmark = pytest.mark.timeout(1800)
BY_ID = {case.id: case for case in CASES}
_PROBLEMS = re.compile(r"\b\d+ problems:\s*$")
_PROGRESS_LINE = re.compile(r"\[\d+:\d\d:\d\d\] job \d+ ")


def selected() -> list[Case]:
    prefix = os.environ.get("HOSTILE_CASES", "")
    skip_ray = os.environ.get("HOSTILE_SKIP_RAY") == "1"
    return [c for c in CASES if c.id.startswith(prefix) and not (skip_ray and c.ray)]


def message_lines(stderr: str) -> list[str]:
    """The non-empty lines of stderr; Click's usage-error block (Usage, Try, the boxed error)
    counts as the one line inside its box."""
    # A driver's warning (``warning: ...``) and the progress lines of a job that ran and then
    # failed (``[0:00:09] job 1 failed: ...``, written when stderr is not a terminal) are said
    # while a job runs: they are not the refusal's message.
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("warning: ") and not _PROGRESS_LINE.match(line)
    ]
    if not lines or not lines[0].startswith("Usage:"):
        return lines
    boxed = [line.strip("│ ") for line in lines if line.startswith("│")]
    rest = [line for line in lines[1:] if not line.startswith(("Try '", "╭", "╰", "│"))]
    return [" ".join(boxed), *rest] if boxed else lines


def _message_problems(case: Case, record: dict[str, Any]) -> list[str]:
    lines = message_lines(record.get("stderr") or "")
    if not lines:
        return ["no message on stderr"]
    found: list[str] = []
    several = case.problems > 1 and _PROBLEMS.search(lines[0])
    if len(lines) > 1 and not several:
        found.append(f"{len(lines)} lines on stderr, first: {lines[0][:120]!r}")
    text = " ".join(lines).lower()
    missing = [w for w in case.words if w.lower() not in text]
    if missing:
        found.append(f"message does not name {', '.join(map(repr, missing))}: {lines[0][:160]!r}")
    return found


def problems(case: Case, record: dict[str, Any]) -> list[str]:
    """What is wrong with one case's record (empty: refused cleanly, or the control worked)."""
    if record.get("worker_error"):
        return [f"the worker died: {record['worker_error'].strip().splitlines()[-1:]}"]
    if record["hung"]:
        return [
            f"hung: still running after {case.limit:g} s"
            + (" (reached Ray)" if record["reached_ray"] else "")
        ]
    if record["memory_exceeded"]:
        return [f"memory: over {MEMORY_CAP // 2**20} MiB more after {record['seconds']} s"]
    if record["reached_ray"] and not case.ray:  # the rest follows from the refused import
        return ["accepted: it reached Ray (not refused before joining a cluster)"]
    found: list[str] = []
    codes = case.code if isinstance(case.code, tuple) else (case.code,)
    if record["exit_code"] not in codes:
        found.append(f"exit {record['exit_code']}, expected {' or '.join(map(str, codes))}")
    output = (record.get("stdout") or "") + (record.get("stderr") or "")
    shown = [w for w in case.forbid if w in output]
    if shown:
        found.append(f"the output shows {', '.join(map(repr, shown))}")
    if record["exception"] or "Traceback" in output:
        found.append(f"traceback: {record['exception'] or 'in the output'}")
    if 0 not in codes and record["exit_code"] != 0:
        found += _message_problems(case, record)
    if not case.writes and record["changed"]:
        found.append(f"wrote: {', '.join(record['changed'][:4])}")
    if case.db and record["rows_before"] != record["rows_after"]:
        found.append("row counts of the real database changed")
    if (record["rss_after_kb"] - record["rss_before_kb"]) * 1024 > MEMORY_CAP:
        found.append("peak memory grew by more than 1 GiB")
    return found


@pytest.fixture(scope="session")
def records(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[dict]:
    """Every selected case's record, by id (one run of the whole corpus per session). The real
    database is built while the cases that need neither it nor Ray run."""
    cases = selected()
    work = tmp_path_factory.mktemp("hostile-work")
    first = [c for c in cases if not c.db and not c.ray]
    with ThreadPoolExecutor(1) as pool:
        needed = any(c.db for c in cases)
        built = pool.submit(build_results_db, tmp_path_factory.mktemp("hostile-db")) if needed else None
        got = {r["id"]: r for r in run_cases(first, work, None)}
        db_dir = built.result() if built else None
    got |= {r["id"]: r for r in run_cases([c for c in cases if c.db or c.ray], work, db_dir)}
    yield got
    _report(cases, got, request.config)


def _report(cases: list[Case], got: dict[str, dict], config: pytest.Config) -> None:
    """Print the table (class -> cases, refused cleanly) and write it to $HOSTILE_REPORT."""
    table: dict[str, dict[str, Any]] = {}
    for case in cases:
        row = table.setdefault(case.cls, {"cases": 0, "clean": 0, "failing": {}})
        row["cases"] += 1
        found = problems(case, got[case.id]) if case.id in got else ["no record"]
        if found:
            row["failing"][case.id] = "; ".join(found)
        else:
            row["clean"] += 1
    lines = ["", "hostile input: class, cases, refused cleanly (controls worked)"]
    for cls in sorted(table, key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0)):
        lines.append(f"  {cls:>5}  {table[cls]['cases']:4d}  {table[cls]['clean']:4d}")
    total = sum(r["cases"] for r in table.values())
    lines.append(f"  total  {total:4d}  {sum(r['clean'] for r in table.values()):4d}")
    lines += [f"     12  covered elsewhere: {item}" for item in COVERED_ELSEWHERE["12"]]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\n".join(lines))
    path = os.environ.get("HOSTILE_REPORT")
    if path:
        data = {"classes": table, "covered_elsewhere": COVERED_ELSEWHERE, "records": got}
        Path(path).write_text(json.dumps(data, indent=1, default=str))


def test_the_corpus_covers_the_issue() -> None:
    assert len(BY_ID) == len(CASES), "case ids must be unique"
    assert len(CASES) >= 150
    assert {c.cls for c in CASES} == set(CLASSES)
    codes = {c.id: c.code if isinstance(c.code, tuple) else (c.code,) for c in CASES}
    unnamed = [c.id for c in CASES if not c.words and 0 not in codes[c.id] and not c.writes]
    assert not unnamed, "a refusal must name the field or option"


@pytest.mark.parametrize("cls", CLASSES)
def test_hostile_inputs_are_refused_cleanly(cls: str, records: dict[str, dict]) -> None:
    cases = [c for c in selected() if c.cls == cls]
    if not cases:
        pytest.skip(f"no selected case of class {cls}")
    failing = [f"{c.id}: {'; '.join(p)}" for c in cases if (p := problems(c, records[c.id]))]
    assert not failing, f"{len(failing)} of {len(cases)} cases of class {cls}:\n" + "\n".join(failing)
