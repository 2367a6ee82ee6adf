"""Run hostile-input cases through the real ``cellsearch`` command, in worker processes.

A worker (``python tests/_hostile_runner.py IDS.json OUT.jsonl DB_DIR``) runs its cases one
after the other in-process through ``cellsearch._cli.app`` (Typer's ``CliRunner``), each in a
fresh folder that is also its working directory, and appends one JSON line per case to
``OUT.jsonl``. A watchdog thread ends the worker (``os._exit``) when a case runs past its time
limit or its memory passes the cap, after writing that case's record; the parent
(:func:`run_cases`) then starts a new worker on the cases left.

Cheap workers refuse to import Ray: a bad input must be refused before a cluster is joined, so
a case that gets that far is recorded as ``reached_ray`` at once instead of starting Ray.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MEMORY_CAP = 2**30  # bytes of resident memory a case may add
RAY_TIME_LIMIT = 45.0  # a case that starts a local Ray pays for its start
TIME_LIMIT = 10.0
REAL_DB = "results.db"  # name of the copy of the real results database in a case's folder
_WATCHDOG_EXIT = 3


@dataclass(frozen=True)
class Case:
    """One hostile input: what to create, the command, and how it must be refused.

    ``files`` maps a name in the case's folder to its text, its bytes, or a function that
    creates it (given the path; for big, odd or generated files). ``argv`` and file texts may
    use ``{tmp}`` (the folder). ``db``: the real results database is copied to ``{tmp}/results.db``
    first. ``code`` 0 marks a positive control (a valid input that must work, writing nothing
    unless ``writes``). ``forbid``: words the output must not show (a password). ``problems``:
    the job file has this many problems on purpose, so the "N problems:" form is allowed.
    ``ray``: it needs a local Ray (run in its own worker with a longer limit). ``writes``: it
    runs a job, so "nothing written" does not apply (honest-ending cases).
    """

    id: str
    cls: str
    argv: tuple[str, ...]
    code: int | tuple[int, ...] = 2
    words: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    files: dict[str, Any] = field(default_factory=dict)
    db: bool = False
    problems: int = 1
    ray: bool = False
    writes: bool = False
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def limit(self) -> float:
        return RAY_TIME_LIMIT if self.ray else TIME_LIMIT


# -- the folder of a case ----------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: kind, size and sha256 of regular files (FIFOs and devices
    are not opened; links are not followed)."""
    seen: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            info = path.lstat()
            rel = str(path.relative_to(folder))
            if stat.S_ISREG(info.st_mode):
                seen[rel] = f"file {info.st_size} {hashlib.sha256(path.read_bytes()).hexdigest()}"
            elif stat.S_ISLNK(info.st_mode):
                seen[rel] = f"link {os.readlink(path)}"
            else:
                seen[rel] = f"mode {stat.S_IFMT(info.st_mode)}"
    return seen


def row_counts(db_file: Path) -> dict[str, int]:
    """Rows per table, read with SQLite's ``immutable`` flag (no lock, no ``-shm``, no write)."""
    if not db_file.exists():
        return {}
    conn = sqlite3.connect(f"file:{db_file}?mode=ro&immutable=1", uri=True)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: conn.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0] for n in names}
    finally:
        conn.close()


def prepare(case: Case, folder: Path, db_dir: Path | None) -> None:
    """Create the case's files (and copy the real database) in ``folder``."""
    if case.db and db_dir is not None:
        for source in db_dir.iterdir():
            shutil.copy2(source, folder / source.name)
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{tmp}", str(folder)), encoding="utf-8")


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- one case, in a worker ---------------------------------------------------------------------


class _RayBlocker:
    """A meta-path finder that refuses ``import ray`` (and records that it was tried)."""

    tried = False

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "ray" or name.startswith("ray."):
            type(self).tried = True
            raise ImportError("hostile corpus: this case reached Ray before being refused")


@contextlib.contextmanager
def _watchdog(record: dict[str, Any], limit: float, out: Path) -> Iterator[None]:
    """End the process when the case runs past ``limit`` seconds or ``MEMORY_CAP`` more memory,
    after appending ``record`` (marked hung or memory) to ``out``."""
    done = threading.Event()
    start, base = time.monotonic(), _resident_bytes()

    def watch() -> None:
        while not done.wait(0.1):
            over_time = time.monotonic() - start > limit
            over_memory = _resident_bytes() - base > MEMORY_CAP
            if over_time or over_memory:
                record.update(
                    exit_code=None,
                    hung=over_time,
                    memory_exceeded=over_memory,
                    seconds=round(time.monotonic() - start, 2),
                    reached_ray=_RayBlocker.tried,
                )
                with out.open("a") as stream:
                    stream.write(json.dumps(record) + "\n")
                os._exit(_WATCHDOG_EXIT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def run_one(case: Case, base: Path, db_dir: Path | None, out: Path) -> dict[str, Any]:
    """Run ``case`` through the CLI in a fresh folder under ``base``; its record."""
    from typer.testing import CliRunner

    from cellsearch._cli import app

    folder = Path(tempfile.mkdtemp(prefix=f"{case.id}.", dir=base))
    prepare(case, folder, db_dir)
    before, counts_before = snapshot(folder), row_counts(folder / REAL_DB) if case.db else {}
    argv = [a.replace("{tmp}", str(folder)) for a in case.argv]
    record: dict[str, Any] = {"id": case.id, "argv": argv, "hung": False, "memory_exceeded": False}
    _RayBlocker.tried = False
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cwd = os.getcwd()
    os.chdir(folder)
    start = time.monotonic()
    try:
        with _watchdog(record, case.limit, out):
            result = CliRunner().invoke(app, argv, env=case.env, catch_exceptions=True)
    finally:
        os.chdir(cwd)
    exception = result.exception
    uncaught = exception is not None and not isinstance(exception, SystemExit)
    record.update(
        exit_code=result.exit_code,
        seconds=round(time.monotonic() - start, 3),
        stdout=result.stdout[-4000:],
        stderr=result.stderr[-4000:],
        exception=f"{type(exception).__name__}: {exception}"[:500] if uncaught else None,
        reached_ray=_RayBlocker.tried,
        rss_before_kb=rss_before,
        rss_after_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        changed=_changes(before, snapshot(folder)),
        rows_before=counts_before,
        rows_after=row_counts(folder / REAL_DB) if case.db else {},
    )
    return record


def _changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What appeared, changed or went away in a folder, one short string each."""
    new = [f"new {n}" for n in sorted(after.keys() - before.keys())]
    gone = [f"removed {n}" for n in sorted(before.keys() - after.keys())]
    changed = [f"changed {n}" for n in sorted(before.keys() & after.keys()) if before[n] != after[n]]
    return new + changed + gone


def worker_main(ids_file: Path, out: Path, db_dir: Path | None, block_ray: bool) -> None:
    """Run the listed cases in order, appending each record to ``out``."""
    from _hostile_cases import CASES

    by_id = {c.id: c for c in CASES}
    if block_ray:
        sys.meta_path.insert(0, _RayBlocker())  # type: ignore[arg-type]
    base = Path(tempfile.mkdtemp(prefix="cases-", dir=out.parent))  # left there if a case ends the worker
    try:
        for case_id in json.loads(ids_file.read_text()):
            record = run_one(by_id[case_id], base, db_dir, out)
            with out.open("a") as stream:
                stream.write(json.dumps(record) + "\n")
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- the parent --------------------------------------------------------------------------------


def _run_worker(command: list[str], env: dict[str, str], out: Path, stall: float) -> tuple[int | None, str]:
    """Run one worker; kill its process group when ``out`` has not grown for ``stall`` seconds
    (a case holding the interpreter so that its watchdog cannot run). Exit code (None: killed)
    and the tail of its stderr."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
        size, last = -1, time.monotonic()
        while proc.poll() is None:
            time.sleep(0.2)
            grown = out.stat().st_size if out.exists() else 0
            if grown != size:
                size, last = grown, time.monotonic()
            elif time.monotonic() - last > stall:
                os.killpg(proc.pid, 9)
                proc.wait()
                break
        err.seek(0)
        return (None if proc.returncode == -9 else proc.returncode), err.read()[-2000:]


def _run_batch(ids: list[str], work: Path, db_dir: Path | None, block_ray: bool, tag: str) -> list[dict]:
    """Run ``ids`` in workers, one after another, restarting after a case that ended its worker."""
    records: list[dict[str, Any]] = []
    left = list(ids)
    attempt = 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    stall = (TIME_LIMIT if block_ray else RAY_TIME_LIMIT) + 30
    while left:
        attempt += 1
        ids_file, out = work / f"{tag}-{attempt}.ids.json", work / f"{tag}-{attempt}.jsonl"
        ids_file.write_text(json.dumps(left))
        command = [sys.executable, __file__, str(ids_file), str(out), str(db_dir or "")]
        if not block_ray:
            command.append("--allow-ray")
        code, stderr = _run_worker(command, env, out, stall)
        got = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
        records += got
        left = left[len(got) :]
        if left and code is None:  # stuck past its own watchdog
            records.append(
                {
                    "id": left.pop(0),
                    "exit_code": None,
                    "hung": True,
                    "memory_exceeded": False,
                    "reached_ray": False,
                    "seconds": stall,
                }
            )
        elif left and not got and code != 0:  # the worker died before its first case
            records.append({"id": left.pop(0), "exit_code": None, "worker_error": stderr})
    return records


def run_cases(cases: Sequence[Case], work: Path, db_dir: Path | None, jobs: int = 2) -> list[dict]:
    """Every case's record: the cheap ones spread over ``jobs`` workers, the Ray ones in one."""
    cheap = [c.id for c in cases if not c.ray]
    ray = [c.id for c in cases if c.ray]
    batches = [(cheap[i::jobs], True, f"cheap{i}") for i in range(jobs)] + [(ray, False, "ray")]
    results: list[list[dict]] = [[] for _ in batches]

    def run(index: int) -> None:
        ids, block_ray, tag = batches[index]
        if ids:
            results[index] = _run_batch(ids, work, db_dir, block_ray, tag)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batches) - 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run(len(batches) - 1)  # Ray after the cheap ones: it needs the cores for itself
    return [r for batch in results for r in batch]


if __name__ == "__main__":
    worker_main(
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        Path(sys.argv[3]) if sys.argv[3] else None,
        block_ray="--allow-ray" not in sys.argv[4:],
    )
