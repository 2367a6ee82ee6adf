"""Hostile input to the dashboards: the MLflow pre-flight, MLflow store creation by jobs that
start together, the read commands' errors, and tracking keys MLflow must accept.

Real parts throughout: real SQLite files and folders (root passes ``os.access`` everywhere,
so "unwritable" is a path under a regular file or in ``/proc``), HTTP servers on local
ports, the PostgreSQL server at 127.0.0.1:5432, real processes, the real CLI. Every refusal
is checked for its exit code, its exact one-line message, and that nothing was written
(the folder's listing and every file's hash are unchanged).
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from _dashboard_data import REPO, build_synthetic, free_port
from _postgres import PG_SERVER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cellsearch._cli import app
from dashboards import Tracker, TrackingStoreError, check_tracking_uri
from dashboards._tracking_payload import flatten_params, metric_key

# -- helpers ---------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` with the sha256 of each regular file."""
    seen: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            seen[os.path.relpath(os.path.join(root, name), folder)] = "dir"
        for name in files:
            path = Path(root, name)
            seen[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


def refused(uri: str, **options: float) -> str:
    with pytest.raises(TrackingStoreError) as info:
        check_tracking_uri(uri, **options)
    message = str(info.value)
    assert "\n" not in message
    return message


def mlflow_store(folder: Path) -> Path:
    """A real SQLite file MLflow created (the tables of a fresh store)."""
    from mlflow import MlflowClient

    path = folder / "made.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


# -- the pre-flight: files and folders ----------------------------------------------------


def test_sqlite_stores_that_can_take_a_job(tmp_path: Path) -> None:
    existing = mlflow_store(tmp_path)
    before = snapshot(tmp_path)
    check_tracking_uri(f"sqlite:///{tmp_path}/fresh.db")
    check_tracking_uri(f"sqlite:///{existing}")
    (tmp_path / "empty.db").touch()
    before["empty.db"] = hashlib.sha256(b"").hexdigest()
    check_tracking_uri(f"sqlite:///{tmp_path}/empty.db")  # SQLite takes an empty file
    assert snapshot(tmp_path) == before  # nothing created, nothing changed


def test_sqlite_stores_that_cannot(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    (tmp_path / "folder.db").mkdir()
    before = snapshot(tmp_path)
    t = tmp_path
    cases = {
        "sqlite://": "MLflow tracking URI 'sqlite://': expected a SQLite file, got an in-memory database "
        "(its runs would be lost when the job ends)",
        "sqlite:///:memory:": "MLflow tracking URI 'sqlite:///:memory:': expected a SQLite file, got an "
        "in-memory database (its runs would be lost when the job ends)",
        f"sqlite:///{text}": f"MLflow tracking URI 'sqlite:///{text}': {text} is not a SQLite file",
        f"sqlite:///{t}/folder.db": f"MLflow tracking URI 'sqlite:///{t}/folder.db': expected a SQLite file, "
        f"got a folder at {t}/folder.db",
        f"sqlite:///{t}/no/such/m.db": f"MLflow tracking URI 'sqlite:///{t}/no/such/m.db': the folder "
        f"'{t}/no/such' of {t}/no/such/m.db does not exist",
        f"sqlite:///{text}/m.db": f"MLflow tracking URI 'sqlite:///{text}/m.db': the folder '{text}' of "
        f"{text}/m.db does not exist",
        "sqlite:////proc/m.db": "MLflow tracking URI 'sqlite:////proc/m.db': cannot create files in the "
        "folder '/proc' of /proc/m.db: it is on the kernel's proc file system",
    }
    for uri, message in cases.items():
        assert refused(uri) == message
    assert snapshot(tmp_path) == before


def test_folder_stores(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("x")
    before = snapshot(tmp_path)
    check_tracking_uri(str(tmp_path / "mlruns"))  # created by MLflow later, not here
    check_tracking_uri(f"file://{tmp_path}/deeper/mlruns")
    check_tracking_uri(str(tmp_path))
    assert refused(str(text)) == (
        f"MLflow tracking URI '{text}': expected a folder for MLflow's file store, got a file at {text}"
    )
    assert refused(f"{text}/mlruns") == (
        f"MLflow tracking URI '{text}/mlruns': cannot create the folder '{text}/mlruns': {text} is a file"
    )
    assert refused("file:///proc/mlruns") == (
        "MLflow tracking URI 'file:///proc/mlruns': cannot create the folder '/proc/mlruns' in '/proc': "
        "it is on the kernel's proc file system"
    )
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("garbage://", "garbage"),
        ("garbage://host/x", "garbage"),
        ("mysql://u@h/db", "mysql"),
        ("s3://b/k", "s3"),
    ],
)
def test_unknown_schemes_are_refused_naming_those_that_work(uri: str, scheme: str) -> None:
    assert refused(uri) == (
        f"MLflow tracking URI {uri!r}: expected a URI of scheme sqlite, postgresql, http, https or file, "
        f"or a folder path, got scheme {scheme!r}"
    )


def test_empty_and_nul() -> None:
    assert refused("") == "MLflow tracking URI '': expected a URI or a folder path, got an empty string"
    assert refused("sqlite:///a\x00b.db") == (
        "MLflow tracking URI 'sqlite:///a\\x00b.db': expected a URI without NUL characters"
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(["", "sqlite://", "sqlite:///", "file://", "garbage://", "ftp://", "/proc/", "./"]),
    st.text(max_size=40),
)
def test_any_uri_is_checked_or_refused_in_one_line_writing_nothing(
    tmp_path: Path, prefix: str, rest: str
) -> None:
    before = snapshot(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        check_tracking_uri(prefix + rest)
    except TrackingStoreError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("MLflow tracking URI ")
    finally:
        os.chdir(cwd)
    assert snapshot(tmp_path) == before


# -- the pre-flight: servers ----------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        code = next((c for p, c in self.answers.items() if self.path.startswith(p)), 404)
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"OK" if code == 200 else b"no")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"answers": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_http_servers(http_server: tuple[str, type[_Handler]]) -> None:
    url, handler = http_server
    handler.answers = {"/health": 200}
    check_tracking_uri(url)
    check_tracking_uri(url + "/")
    handler.answers = {"/api/2.0/mlflow/experiments/search": 200}  # no /health: an older server
    check_tracking_uri(url)
    handler.answers = {}
    assert refused(url) == (
        f"MLflow tracking URI {url!r}: the server answers but is not an MLflow tracking server (HTTP 404)"
    )
    handler.answers = {"/health": 401}
    assert refused(url) == (
        f"MLflow tracking URI {url!r}: the server refuses access (HTTP 401); set MLFLOW_TRACKING_USERNAME "
        "and MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"
    )


def test_a_server_that_is_not_there() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    message = refused(url, timeout=2)
    assert message.startswith(f"MLflow tracking URI {url!r}: no MLflow server answers within 2 s (")
    assert "refused" in message.lower()


def test_a_password_is_never_shown() -> None:
    url = f"http://me:sekrit@127.0.0.1:{free_port()}"
    message = refused(url, timeout=2)
    assert "sekrit" not in message and "me:***@127.0.0.1" in message
    message = refused("postgresql+psycopg://postgres:sekrit@127.0.0.1:1/test", timeout=2)
    assert "sekrit" not in message
    assert message.startswith(
        "MLflow tracking URI 'postgresql+psycopg://postgres:***@127.0.0.1:1/test': cannot connect: "
    )


@pytest.mark.postgres
def test_postgresql() -> None:
    try:
        check_tracking_uri(f"{PG_SERVER}/test")
    except TrackingStoreError as exc:
        if "cannot connect" in str(exc):
            pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {exc}")
        raise
    assert refused(f"{PG_SERVER}/no_such_database_here") == (
        f"MLflow tracking URI '{PG_SERVER}/no_such_database_here': cannot connect: "
        'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
        'FATAL:  database "no_such_database_here" does not exist'
    )
    check_tracking_uri("postgresql://postgres@127.0.0.1:5432/test")  # SQLAlchemy's default driver


# -- MLflow store creation by two jobs at once -----------------------------------------------

_CREATE_STORE = """
import sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
from dashboards._tracking_writer import MlflowWriter
client = MlflowWriter(sys.argv[1], "sqlite:///unused.db")._mlflow()
experiment = client.create_experiment(f"job-{sys.argv[3]}")
run = client.create_run(experiment)
client.log_metric(run.info.run_id, "score", 1.0)
print("ok", run.info.run_id)
"""


def test_jobs_starting_together_on_a_fresh_store_all_get_working_tracking(tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CREATE_STORE, f"sqlite:///{store}", str(go), str(i)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    time.sleep(5)  # every process has imported what it needs up to the wait (the race is at creation)
    go.touch()
    results = [p.communicate(timeout=300) for p in processes]
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err[-2000:]
        assert out.startswith("ok ")
    with sqlite3.connect(store) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        experiments = {name for (name,) in conn.execute("SELECT name FROM experiments")}
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert not [t for t in tables if t.startswith("_alembic_tmp")]
    assert {"job-0", "job-1", "job-2"} <= experiments and runs == 3


# -- the read commands -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def results_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-read")
    build_synthetic(f"sqlite:///{folder}/results.db")
    other = sqlite3.connect(folder / "other.db")  # another program's SQLite file, rollback journal
    other.execute("CREATE TABLE notes (x TEXT)")
    other.execute("INSERT INTO notes VALUES ('keep me')")
    other.commit()
    other.close()
    (folder / "notes.txt").write_text("a text file\n")
    (folder / "empty.db").touch()
    (folder / "sub").mkdir()
    return folder


def _read_cases(f: Path) -> list[tuple[list[str], int, str]]:
    db = ["--db", f"sqlite:///{f}/results.db"]
    return [
        (
            ["results", "top", "--db", "garbage"],
            2,
            "--db: expected a database URL such as "
            "sqlite:///cellsearch.db or postgresql+psycopg://user@host/database, got 'garbage'",
        ),
        (
            ["results", "top", "--db", "sqlite://"],
            2,
            "--db: expected a results database, got an in-memory SQLite database (sqlite://)",
        ),
        (
            ["results", "top", "--db", f"sqlite:///{f}/notes.txt"],
            1,
            f"--db: {f}/notes.txt is not a SQLite database",
        ),
        (
            ["results", "show", "1", "--db", f"sqlite:///{f}/notes.txt"],
            1,
            f"--db: {f}/notes.txt is not a SQLite database",
        ),
        (
            ["report", "--db", f"sqlite:///{f}/empty.db", "-o", f"{f}/sub/r.html"],
            1,
            f"no cellsearch results in {f}/empty.db (the file is empty)",
        ),
        (
            ["results", "top", "--db", f"sqlite:///{f}/other.db"],
            1,
            f"no cellsearch results in {f}/other.db (a SQLite file without cellsearch's tables)",
        ),
        (
            ["results", "top", "--db", f"sqlite:///{f}/sub"],
            1,
            f"--db: expected a SQLite file, got a folder or special file at {f}/sub",
        ),
        (
            ["results", "top", "--db", f"sqlite:///{f}/missing.db"],
            1,
            f"no results database at {f}/missing.db (no job has been launched with this URL)",
        ),
        (
            ["report", "-o", "/nonexistent/dir/r.html", *db],
            1,
            "-o/--output: cannot write /nonexistent/dir/r.html: the folder '/nonexistent/dir' does not exist",
        ),
        (["report", "-o", f"{f}/sub", *db], 1, f"-o/--output: cannot write {f}/sub: it is a folder"),
        (
            ["results", "export", "-o", "/proc/x.csv", *db],
            1,
            "-o/--output: cannot write /proc/x.csv: the folder '/proc' is not writable "
            "(it is on the kernel's proc file system)",
        ),
        (
            ["results", "export", "-o", f"{f}/notes.txt/x.csv", *db],
            1,
            f"-o/--output: cannot write {f}/notes.txt/x.csv: the folder '{f}/notes.txt' is not a folder",
        ),
        (
            ["results", "export", "-o", f"{f}/nope/x.csv", *db],
            1,
            f"-o/--output: cannot write {f}/nope/x.csv: the folder '{f}/nope' does not exist",
        ),
        (
            ["results", "export", "-o", f"{f}/x.xlsx", *db],
            2,
            f"-o/--output: unknown extension '.xlsx' in '{f}/x.xlsx'; use one of .csv, .parquet, .jsonl",
        ),
        (["results", "top", "--job", str(2**62), *db], 1, f"unknown job {2**62} in sqlite:///{f}/results.db"),
        (
            ["results", "show", str(2**63 - 1), *db],
            1,
            f"unknown architecture {2**63 - 1} in sqlite:///{f}/results.db",
        ),
    ]


def test_read_commands_refuse_in_one_line_and_write_nothing(results_folder: Path) -> None:
    runner = CliRunner()
    before = snapshot(results_folder)
    for argv, code, message in _read_cases(results_folder):
        result = runner.invoke(app, argv)
        assert (result.exit_code, result.stderr) == (code, f"error: {message}\n"), argv
        assert result.stdout == ""
        assert snapshot(results_folder) == before, argv  # no view, no -wal/-shm, no output file


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["results", "top", "-n", "1e23"], "'-n'"),
        (["results", "top", "-n", "0"], "'-n'"),
        (["results", "top", "-n", "-3"], "'-n'"),
        (["results", "top", "-n", str(10**30)], "'-n'"),
        (["results", "top", "--job", str(2**63)], "'--job'"),
        (["results", "show", str(2**64)], "'arch_id'"),
        (["results", "show", "0"], "'arch_id'"),
        (["report", str(2**63)], "'job_id'"),
        (["report", "--top", "1001"], "'--top'"),
    ],
)
def test_integer_options_are_range_checked(results_folder: Path, argv: list[str], option: str) -> None:
    before = snapshot(results_folder)
    result = CliRunner().invoke(app, [*argv, "--db", f"sqlite:///{results_folder}/results.db"])
    assert result.exit_code == 2
    assert f"Invalid value for {option}" in result.stderr and "Traceback" not in result.output
    assert snapshot(results_folder) == before


def test_read_commands_still_read(results_folder: Path) -> None:
    before = snapshot(results_folder)
    result = CliRunner().invoke(
        app,
        [
            "results",
            "top",
            "-n",
            "100000",
            "--all-jobs",
            "--format",
            "json",
            "--db",
            f"sqlite:///{results_folder}/results.db",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("[")
    assert snapshot(results_folder) == before


# -- tracking --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_label_makes_keys_mlflow_accepts(label: str) -> None:
    from mlflow.utils.validation import _validate_metric_name, _validate_param_name

    key = metric_key(label)
    for suffix in ("", ".best", ".relative", ".trials"):
        _validate_metric_name(key + suffix)  # raises MlflowException on a name MLflow refuses
        _validate_param_name(key + suffix)
    for name in flatten_params({label: 1, "x": {label: [label]}}):
        _validate_param_name(name)


def test_a_store_that_refuses_costs_one_line_not_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dashboards")
    build_synthetic(f"sqlite:///{tmp_path}/results.db")
    tracker = Tracker("garbage://nowhere", f"sqlite:///{tmp_path}/results.db")
    tracker.on_job_start(1)
    assert tracker.close(timeout=30)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert errors[0].getMessage().startswith("MLflow tracking at garbage://nowhere dropped JobStart (")
    assert "\n" not in errors[0].getMessage()


def test_mlflow_option_is_checked_before_anything_starts(tmp_path: Path) -> None:
    runner = CliRunner()
    before = snapshot(tmp_path)
    cases = [
        (
            ["dashboard", "--mlflow", "garbage://x"],
            2,
            "--mlflow: MLflow tracking URI 'garbage://x': expected a "
            "URI of scheme sqlite, postgresql, http, https or file, or a folder path, got scheme 'garbage'",
        ),
        (
            ["dashboard", "--mlflow", "sqlite://"],
            2,
            "--mlflow: MLflow tracking URI 'sqlite://': expected a "
            "SQLite file, got an in-memory database (its runs would be lost when the job ends)",
        ),
        (
            ["dashboard", "--mlflow", f"sqlite:///{tmp_path}/no/m.db"],
            1,
            f"--mlflow: MLflow tracking URI 'sqlite:///{tmp_path}/no/m.db': "
            f"the folder '{tmp_path}/no' of {tmp_path}/no/m.db does not exist",
        ),
        (
            [
                "results",
                "sync-mlflow",
                "--mlflow",
                "sqlite:////proc/m.db",
                "--db",
                f"sqlite:///{tmp_path}/r.db",
            ],
            1,
            "--mlflow: MLflow tracking URI 'sqlite:////proc/m.db': cannot create files in the folder "
            "'/proc' of /proc/m.db: it is on the kernel's proc file system",
        ),
    ]
    for argv, code, message in cases:
        result = runner.invoke(app, argv)
        assert (result.exit_code, result.stderr) == (code, f"error: {message}\n"), argv
    assert snapshot(tmp_path) == before
