"""The pre-flight of a job (its file, its database) and read commands that must not write.

Each refusal is checked for its one line and for leaving the folder exactly as it was.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellsearch._cli import app
from search._job_errors import JobError
from search._preflight import MAX_JOB_FILE_BYTES, check_db_url, load_job
from search._store_errors import NoDatabaseError, StoreError
from search._store_probe import check_results_url, sqlite_tables


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (names relative to it) and the SHA-256 of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# -- the job file -------------------------------------------------------------------------------


def _fifo(folder: Path) -> Path:
    path = folder / "job.yaml"
    os.mkfifo(path)
    return path


def _oversized(folder: Path) -> Path:
    path = folder / "job.yaml"
    with path.open("wb") as handle:
        handle.truncate(MAX_JOB_FILE_BYTES + 1)  # sparse: costs no disk
    return path


def _write(name: str, data: bytes):  # type: ignore[no-untyped-def]
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return make


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda folder: Path("/dev/zero"), "the job file is not a regular file (it is a character device)"),
        (_fifo, "the job file is not a regular file (it is a FIFO)"),
        (lambda folder: folder, "the job file is not a regular file (it is a folder)"),
        (
            _oversized,
            f"the job file is {MAX_JOB_FILE_BYTES + 1:,} bytes; the limit is {MAX_JOB_FILE_BYTES:,} bytes",
        ),
        (_write("utf16.yaml", "name: x\n".encode("utf-16")), "the job file is UTF-16 text; save it as UTF-8"),
        (_write("latin1.yaml", b"name: caf\xe9\n"), "the job file is not UTF-8 text (byte 0xe9 on line 1)"),
        (lambda folder: folder / "missing.yaml", "cannot read the job file: No such file or directory"),
    ],
    ids=["dev-zero", "fifo", "folder", "oversized", "utf16", "latin1", "missing"],
)
def test_a_job_file_that_is_not_a_small_utf8_file_is_refused_at_once(
    tmp_path: Path, make, reason: str
) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path)
    before = snapshot(tmp_path)
    outcome: list[BaseException] = []
    # In a thread: a FIFO opened for reading would block until a writer comes; the stat refuses it first.
    reader = threading.Thread(target=lambda: _capture(outcome, path), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "reading the job file blocked"
    (error,) = outcome
    assert isinstance(error, JobError)
    assert str(error) == f"{path}: (file): {reason}"
    assert snapshot(tmp_path) == before


def _capture(outcome: list[BaseException], path: Path) -> None:
    try:
        load_job(path)
    except BaseException as exc:  # the test inspects whatever came
        outcome.append(exc)


# -- the results database of a job ------------------------------------------------------------


def _other_program_db(folder: Path, wal: bool = False) -> Path:
    path = folder / "other.db"
    connection = sqlite3.connect(path)
    if wal:
        connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE notes (x TEXT)")
    connection.execute("INSERT INTO notes VALUES ('keep me')")
    connection.commit()
    connection.close()
    return path


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sqlite://", "sqlite:// is an in-memory database"),
        ("sqlite:///:memory:", "is an in-memory database"),
        ("sqlite:///file:x?mode=memory&uri=true", "is an in-memory database"),
        ("sqlite:///{tmp}", "it is a folder, not a database file"),
        ("sqlite:////proc/self/results.db", "folder '/proc/self' is not writable"),
        ("sqlite:///{tmp}/text.db", "the file exists and is not a SQLite database"),
        ("sqlite:///{tmp}/text.db/results.db", "folder '{tmp}/text.db' does not exist"),
        ("garbage", "not a database URL: 'garbage'"),
        ("garbage://x", "cannot use garbage://x"),
    ],
)
def test_a_database_a_job_cannot_keep_its_results_in_is_refused_writing_nothing(
    tmp_path: Path, url: str, reason: str
) -> None:
    (tmp_path / "text.db").write_text("not a database\n")
    before = snapshot(tmp_path)
    url, reason = url.format(tmp=tmp_path), reason.format(tmp=tmp_path)
    with pytest.raises(JobError) as caught:
        check_db_url(url, field="--db")
    (line,) = caught.value.errors
    assert line.startswith("--db: ") and reason in line, line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("existing", ["none", "empty", "sqlite"])
def test_a_usable_database_passes_and_nothing_is_left_beside_it(tmp_path: Path, existing: str) -> None:
    path = tmp_path / "results.db"
    if existing == "empty":
        path.write_bytes(b"")
    elif existing == "sqlite":
        path = _other_program_db(tmp_path)
    before = snapshot(tmp_path)
    check_db_url(f"sqlite:///{path}")
    assert snapshot(tmp_path) == before


# -- read commands ----------------------------------------------------------------------------


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
@pytest.mark.parametrize(
    "command", [["status"], ["status", "--all"], ["results", "top"], ["report", "-o", "{tmp}/r.html"]]
)
def test_read_commands_leave_another_programs_sqlite_file_as_it_was(
    tmp_path: Path, wal: bool, command: list[str]
) -> None:
    path = _other_program_db(tmp_path, wal=wal)
    before = snapshot(tmp_path)
    args = [a.format(tmp=tmp_path) for a in command] + ["--db", f"sqlite:///{path}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"error: no cellsearch results in {path} (a SQLite file without cellsearch's tables)"
    ]
    assert snapshot(tmp_path) == before  # the journal mode unchanged, no -wal or -shm beside it


def test_the_store_probe_reads_table_names_without_a_trace(tmp_path: Path) -> None:
    path = _other_program_db(tmp_path, wal=True)
    (tmp_path / "text.db").write_text("hello")
    before = snapshot(tmp_path)
    assert sqlite_tables(path) == {"notes"}
    with pytest.raises(NoDatabaseError, match="no cellsearch results in"):
        check_results_url(f"sqlite:///{path}")
    with pytest.raises(StoreError, match=r"text.db is not a SQLite database"):
        check_results_url(f"sqlite:///{tmp_path}/text.db")
    with pytest.raises(StoreError, match="got a folder or special file"):
        check_results_url(f"sqlite:///{tmp_path}")
    with pytest.raises(StoreError, match=r"expected a database URL such as .*, got 'garbage'"):
        check_results_url("garbage")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sqlite://", "is an in-memory database"),
        ("sqlite:///{tmp}/text.db", "the file exists and is not a SQLite database"),
        ("sqlite:///{tmp}", "it is a folder, not a database file"),
        ("garbage", "not a database URL"),
    ],
)
def test_db_upgrade_refuses_what_a_job_would_refuse(tmp_path: Path, url: str, reason: str) -> None:
    (tmp_path / "text.db").write_text("not a database\n")
    before = snapshot(tmp_path)
    result = CliRunner().invoke(app, ["db", "upgrade", "--db", url.format(tmp=tmp_path)])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: --db: ") and reason in line, line
    assert snapshot(tmp_path) == before
