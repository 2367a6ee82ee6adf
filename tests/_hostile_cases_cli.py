"""Hostile options and databases: read commands that must not write (class 8), tracebacks
instead of messages (class 9), vague messages (class 11) and other bad options of every
command. ``{tmp}/results.db`` is a copy of the real results database where ``db=True``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from _hostile_cases_jobs import EVAL, job_text
from _hostile_runner import REAL_DB, Case

REAL = f"sqlite:///{{tmp}}/{REAL_DB}"
BIG = str(2**64)
HUGE = "1" + "0" * 30
JOB_FILES = {"job.yaml": job_text()}
MEMO = (
    "--task-setting",
    "min_length=2",
    "--task-setting",
    "max_length=3",
    "--task-setting",
    "valid_size=16",
    "--task-setting",
    "test_size=16",
)


def other_program_db(path: Path) -> None:
    """A SQLite file of another program (a table of its own, rollback journal)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.commit()
    conn.close()


def other_program_wal_db(path: Path) -> None:
    other_program_db(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


_OTHER = {"other.db": other_program_db}
_OTHER_URL = "sqlite:///{tmp}/other.db"
_READS = [
    ("status", ("status",)),
    ("status-all", ("status", "--all")),
    ("top", ("results", "top")),
    ("show", ("results", "show", "1")),
    ("export", ("results", "export", "-o", "{tmp}/x.csv")),
    ("report", ("report", "-o", "{tmp}/r.html")),
    ("sync-mlflow", ("results", "sync-mlflow", "--mlflow", "{tmp}/mlruns")),
]

CLASS_8 = [
    *[
        Case(
            f"c8-{name}-other-program-db",
            "8",
            (*argv, "--db", _OTHER_URL),
            code=1,
            words=("other.db",),
            files=_OTHER,
        )
        for name, argv in _READS
    ],
    Case(
        "c8-status-other-program-wal-db",
        "8",
        ("status", "--db", _OTHER_URL),
        code=1,
        words=("other.db",),
        files={"other.db": other_program_wal_db},
    ),
    *[
        Case(
            f"c8-{name}-missing-db",
            "8",
            (*argv, "--db", "sqlite:///{tmp}/missing.db"),
            code=1,
            words=("missing.db",),
        )
        for name, argv in _READS[:4]
    ],
    Case(
        "c8-status-default-db-missing",
        "8",
        ("status",),
        code=1,
        words=("cellsearch.db",),
        note="no --db: the default sqlite:///cellsearch.db must not be created by a read",
    ),
    Case(
        "c8-resume-missing-db",
        "8",
        ("resume", "1", "--no-mlflow", "--db", "sqlite:///{tmp}/missing.db"),
        code=1,
        words=("missing.db",),
    ),
    Case(
        "c8-status-empty-file",
        "8",
        ("status", "--db", "sqlite:///{tmp}/empty.db"),
        code=1,
        words=("empty.db",),
        files={"empty.db": b""},
    ),
    Case("c8-status-unknown-job", "8", ("status", "99", "--db", REAL), code=1, words=("99",), db=True),
    Case(
        "c8-top-unknown-job",
        "8",
        ("results", "top", "-j", "99", "--db", REAL),
        code=1,
        words=("99",),
        db=True,
    ),
    Case(
        "c8-show-unknown-arch", "8", ("results", "show", "99", "--db", REAL), code=1, words=("99",), db=True
    ),
    Case(
        "c8-top-unknown-task",
        "8",
        ("results", "top", "-t", "nosuch", "--db", REAL),
        code=(1, 2),
        words=("nosuch",),
        db=True,
    ),
    Case(
        "c8-report-unknown-job",
        "8",
        ("report", "99", "-o", "{tmp}/r.html", "--db", REAL),
        code=1,
        words=("99",),
        db=True,
    ),
    Case(
        "c8-export-unknown-job",
        "8",
        ("results", "export", "-j", "99", "-o", "{tmp}/x.csv", "--db", REAL),
        code=1,
        words=("99",),
        db=True,
    ),
    Case(
        "c8-launch-bad-job-real-db",
        "8",
        ("launch", "{tmp}/job.yaml", "--no-mlflow", "--db", REAL),
        words=("trials_per_task",),
        db=True,
        files={"job.yaml": job_text(("trials_per_task", 0))},
    ),
    Case(
        "c8-resume-finished-job",
        "8",
        ("resume", "1", "--no-mlflow", "--db", REAL),
        code=(1, 2),
        words=("1",),
        db=True,
        note="a finished job has nothing to resume",
    ),
    # Positive controls: read commands on the real database work and change nothing.
    Case("c8-control-status", "8", ("status", "--db", REAL), code=0, db=True),
    Case("c8-control-status-json", "8", ("status", "1", "-f", "json", "--db", REAL), code=0, db=True),
    Case("c8-control-status-all", "8", ("status", "--all", "--db", REAL), code=0, db=True),
    Case("c8-control-top", "8", ("results", "top", "--db", REAL), code=0, db=True),
    Case(
        "c8-control-top-csv",
        "8",
        ("results", "top", "--all-jobs", "-f", "csv", "--db", REAL),
        code=0,
        db=True,
    ),
    Case("c8-control-show", "8", ("results", "show", "1", "--db", REAL), code=0, db=True),
]

CLASS_9 = [
    Case("c9-top-n-1e23", "9", ("results", "top", "-n", "1e23", "--db", REAL), words=("-n",), db=True),
    Case("c9-top-n-huge-int", "9", ("results", "top", "-n", HUGE, "--db", REAL), words=("-n",), db=True),
    Case(
        "c9-top-job-2-64",
        "9",
        ("results", "top", "-j", BIG, "--db", REAL),
        code=(1, 2),
        words=("--job",),
        db=True,
    ),
    Case(
        "c9-show-2-64", "9", ("results", "show", BIG, "--db", REAL), code=(1, 2), words=("ARCH_ID",), db=True
    ),
    Case(
        "c9-show-job-2-64",
        "9",
        ("results", "show", "1", "-j", BIG, "--db", REAL),
        code=(1, 2),
        words=("--job",),
        db=True,
    ),
    Case("c9-status-2-64", "9", ("status", BIG, "--db", REAL), code=(1, 2), words=("JOB_ID",), db=True),
    Case(
        "c9-resume-2-64",
        "9",
        ("resume", BIG, "--no-mlflow", "--db", REAL),
        code=(1, 2),
        words=("JOB_ID",),
        db=True,
    ),
    Case(
        "c9-report-2-64",
        "9",
        ("report", BIG, "-o", "{tmp}/r.html", "--db", REAL),
        code=(1, 2),
        words=("JOB_ID",),
        db=True,
    ),
    Case(
        "c9-export-job-2-64",
        "9",
        ("results", "export", "-j", BIG, "-o", "{tmp}/x.csv", "--db", REAL),
        code=(1, 2),
        words=("--job",),
        db=True,
    ),
    Case(
        "c9-report-top-huge",
        "9",
        ("report", "--top", HUGE, "-o", "{tmp}/r.html", "--db", REAL),
        code=(1, 2),
        words=("--top",),
        db=True,
    ),
    Case(
        "c9-status-text-file-db",
        "9",
        ("status", "--db", "sqlite:///{tmp}/notes.txt"),
        code=1,
        words=("notes.txt",),
        files={"notes.txt": "hello\n" * 100},
    ),
    Case(
        "c9-top-text-file-db",
        "9",
        ("results", "top", "--db", "sqlite:///{tmp}/notes.txt"),
        code=1,
        words=("notes.txt",),
        files={"notes.txt": "hello\n" * 100},
    ),
    Case(
        "c9-resume-text-file-db",
        "9",
        ("resume", "1", "--no-mlflow", "--db", "sqlite:///{tmp}/notes.txt"),
        code=1,
        words=("notes.txt",),
        files={"notes.txt": "hello\n" * 100},
    ),
    Case(
        "c9-launch-text-file-db",
        "9",
        ("launch", "{tmp}/job.yaml", "--no-mlflow", "--db", "sqlite:///{tmp}/notes.txt"),
        code=(1, 2),
        words=("notes.txt",),
        files={**JOB_FILES, "notes.txt": "hello\n" * 100},
    ),
    *[
        Case(f"c9-{name}-db-garbage", "9", (*argv, "--db", "garbage"), code=(1, 2), words=("--db",))
        for name, argv in _READS
    ],
    Case(
        "c9-status-env-db-garbage",
        "9",
        ("status",),
        code=(1, 2),
        words=("CELLSEARCH_DB_URL",),
        env={"CELLSEARCH_DB_URL": "garbage"},
    ),
    Case("c9-db-upgrade-garbage", "9", ("db", "upgrade", "--db", "garbage"), code=(1, 2), words=("--db",)),
    Case(
        "c9-status-db-unknown-driver",
        "9",
        ("status", "--db", "nosuchdb://u@h/x"),
        code=(1, 2),
        words=("--db",),
    ),
    Case("c9-eval-seed-minus-1", "9", (*EVAL, *MEMO, "--seed", "-1"), words=("--seed",)),
    Case("c9-eval-seed-2-64", "9", (*EVAL, *MEMO, "--seed", BIG), words=("--seed",)),
    Case(
        "c9-eval-task-setting-unclosed-list",
        "9",
        (*EVAL, "--task-setting", "max_digits=[1, 2"),
        words=("--task-setting",),
    ),
    Case(
        "c9-eval-task-setting-no-equals",
        "9",
        (*EVAL, "--task-setting", "max_length"),
        words=("--task-setting",),
    ),
    Case("c9-eval-task-setting-empty-key", "9", (*EVAL, "--task-setting", "=3"), words=("--task-setting",)),
    Case("c9-eval-task-setting-unknown", "9", (*EVAL, "--task-setting", "nosuch=3"), words=("nosuch",)),
    Case(
        "c9-eval-task-setting-deep",
        "9",
        (*EVAL, "--task-setting", "max_length=" + "[" * 100_000),
        words=("--task-setting",),
    ),
    Case("c9-eval-unknown-task", "9", ("cells", "eval", "tanh", "-t", "nosuch"), words=("nosuch",)),
    Case(
        "c9-eval-unknown-cell",
        "9",
        ("cells", "eval", "nosuch", "-t", "memorize"),
        code=(1, 2),
        words=("nosuch",),
    ),
    Case("c9-show-unknown-cell", "9", ("cells", "show", "nosuch"), code=(1, 2), words=("nosuch",)),
]

CASES = CLASS_8 + CLASS_9
