"""One driver per job: the lock a running job holds, on SQLite (a record lock beside the file,
taken by another process here) and on PostgreSQL (an advisory lock on another session)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _postgres import postgres_database
from sqlalchemy import create_engine

from search._joblock import JobStateError, hold_job

HOLDER = textwrap.dedent(
    """
    import sys
    from sqlalchemy import create_engine
    from search._joblock import hold_job

    with hold_job(create_engine(sys.argv[1]), int(sys.argv[2])):
        print("held", flush=True)
        sys.stdin.readline()  # until the test says so
    """
)


def test_sqlite_job_is_refused_while_another_process_holds_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, "3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        engine = create_engine(url)
        with pytest.raises(JobStateError, match="job 3 is running in another process"), hold_job(engine, 3):
            pass
        with hold_job(engine, 4):  # another job of the same database is free
            pass
    finally:
        holder.communicate("go\n", timeout=30)
    assert holder.returncode == 0
    with hold_job(engine, 3):  # free again once the holder is gone
        pass


def test_a_killed_holder_leaves_no_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.kill()  # SIGKILL: no cleanup runs
    holder.wait(timeout=30)
    with hold_job(create_engine(url), 1):
        pass


@pytest.mark.postgres
def test_postgres_job_is_refused_while_another_session_holds_it() -> None:
    with postgres_database() as url:
        first, second = create_engine(url), create_engine(url)
        try:
            with hold_job(first, 5):
                with pytest.raises(JobStateError, match="job 5 is running"), hold_job(second, 5):
                    pass
                with hold_job(second, 6):
                    pass
            with hold_job(second, 5):  # released when the holder is done
                pass
        finally:
            first.dispose()
            second.dispose()
