"""Downloads run against a real HTTP server on 127.0.0.1 serving files made here, never the internet."""

from __future__ import annotations

import hashlib
import http.server
import pickle
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from _test_data import TEST_DATA, needs_test_data
from typer.testing import CliRunner

from cellsearch._cli import app
from workers import DATASETS, DownloadError, MusicTask, download_dataset, download_file, make_task

DATA = TEST_DATA


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; ``/truncated/<name>`` promises more bytes than it sends, then hangs up."""

    def do_GET(self) -> None:
        if self.path.startswith("/truncated/"):
            body = b"only part of the body"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) * 10))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a fresh folder: (base URL, folder)."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_download_file_writes_the_body_and_checks_the_digest(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    base, root = served
    body = b"the quick brown fox\n" * 5000
    (root / "a.txt").write_bytes(body)
    target = tmp_path / "out" / "a.txt"
    download_file(f"{base}/a.txt", target, sha256=hashlib.sha256(body).hexdigest())
    assert target.read_bytes() == body
    assert leftovers(target.parent) == ["a.txt"]

    with pytest.raises(DownloadError, match=f"download of {base}/a.txt: SHA-256 .* does not match 00ff"):
        download_file(f"{base}/a.txt", tmp_path / "bad" / "a.txt", sha256="00ff")
    assert leftovers(tmp_path / "bad") == []


def test_http_errors_name_the_url_and_leave_no_partial_file(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    target = tmp_path / "out" / "missing.txt"
    with pytest.raises(DownloadError, match=f"download of {base}/missing.txt failed: HTTP 404"):
        download_file(f"{base}/missing.txt", target)
    assert leftovers(target.parent) == []

    # the server hangs up after part of the body: the file must not appear
    with pytest.raises(
        DownloadError, match=f"download of {base}/truncated/x.txt ended early: 21 of 210 bytes"
    ):
        download_file(f"{base}/truncated/x.txt", target)
    assert leftovers(target.parent) == []

    # nothing listens on this port any more
    with pytest.raises(DownloadError, match=r"download of http://127\.0\.0\.1:9/x failed"):
        download_file("http://127.0.0.1:9/x", target, timeout=5)
    assert leftovers(target.parent) == []


def test_a_failed_download_keeps_an_existing_file(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    target = tmp_path / "ptb.train.txt"
    target.write_text("already here\n")
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_dataset("ptb", tmp_path, url_base=base, force=True, show_progress=False)
    assert target.read_text() == "already here\n"
    assert leftovers(tmp_path) == ["ptb.train.txt", "served"]


def test_dataset_download_skips_present_files_unless_forced(served: tuple[str, Path], tmp_path: Path) -> None:
    base, root = served
    for file in DATASETS["ptb"]:
        (root / file.name).write_text(f"served {file.name}\n")
    target = tmp_path / "ptb"
    paths = download_dataset("ptb", target, url_base=base, verify=False, show_progress=False)
    assert paths == [target / "ptb.train.txt", target / "ptb.valid.txt", target / "ptb.test.txt"]
    assert [p.read_text() for p in paths] == [f"served {p.name}\n" for p in paths]

    paths[0].write_text("edited locally\n")
    download_dataset("ptb", target, url_base=base, verify=False, show_progress=False)
    assert paths[0].read_text() == "edited locally\n"
    download_dataset("ptb", target, url_base=base, verify=False, force=True, show_progress=False)
    assert paths[0].read_text() == "served ptb.train.txt\n"


def test_known_digests_are_checked(served: tuple[str, Path], tmp_path: Path) -> None:
    base, root = served
    (root / "JSB Chorales.pickle").write_bytes(b"not the real chorales")
    with pytest.raises(
        DownloadError, match=r"JSB%20Chorales\.pickle: SHA-256 [0-9a-f]+ does not match 69dc4c3e"
    ):
        download_dataset("jsb", tmp_path / "jsb", url_base=base, show_progress=False)
    assert leftovers(tmp_path / "jsb") == []


@needs_test_data("ptb/ptb.valid.txt")
def test_pinned_ptb_digests_match_the_real_files(served: tuple[str, Path], tmp_path: Path) -> None:
    base, root = served
    pinned = {file.name: file.sha256 for file in DATASETS["ptb"]}
    for name in ("ptb.valid.txt", "ptb.test.txt"):
        (root / name).write_bytes((DATA / "ptb" / name).read_bytes())
        download_file(f"{base}/{name}", tmp_path / name, sha256=pinned[name])
        assert (tmp_path / name).read_bytes() == (DATA / "ptb" / name).read_bytes()


def test_downloaded_music_pickle_feeds_the_music_task(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root = served
    corpus = {split: [[(60, 64), (62,), ()], [(21,), (108,)]] for split in ("train", "valid", "test")}
    (root / "Nottingham.pickle").write_bytes(pickle.dumps(corpus))
    monkeypatch.setenv("CELLSEARCH_DATA_DIR", str(tmp_path / "data"))
    [path] = download_dataset("nottingham", url_base=base, show_progress=False)  # default folder
    assert path == tmp_path / "data" / "nottingham" / "Nottingham.pickle"
    task = make_task("music", preset="nottingham")
    assert isinstance(task, MusicTask)
    assert task.rolls["valid"][0].nonzero().tolist() == [[0, 39], [0, 43], [1, 41]]


def test_unknown_data_set_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="unknown data set 'imagenet'; known: jsb, musedata, nottingham"):
        download_dataset("imagenet", tmp_path)


def test_cli_downloads_with_progress_and_reports_failures(served: tuple[str, Path], tmp_path: Path) -> None:
    base, root = served
    (root / "Piano-midi.de.pickle").write_bytes(b"x" * 300_000)
    runner = CliRunner()
    target = tmp_path / "pianomidi"
    ok = runner.invoke(
        app, ["data", "download", "pianomidi", "--dir", str(target), "--url-base", base, "--no-verify"]
    )
    assert ok.exit_code == 0, ok.output
    assert (target / "Piano-midi.de.pickle").read_bytes() == b"x" * 300_000
    assert str(target / "Piano-midi.de.pickle") in ok.stdout

    again = runner.invoke(app, ["data", "download", "pianomidi", "--dir", str(target), "--url-base", base])
    assert again.exit_code == 0 and "exists, skipped" in again.output

    failed = runner.invoke(
        app, ["data", "download", "musedata", "--dir", str(tmp_path / "m"), "--url-base", base]
    )
    assert failed.exit_code == 1
    assert f"download of {base}/MuseData.pickle failed: HTTP 404" in failed.output
    assert leftovers(tmp_path / "m") == []

    listed = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0
    rows = {
        line.split("│")[3].strip(): line.split("│")[4].strip()
        for line in listed.stdout.splitlines()
        if "│" in line
    }
    assert rows["Piano-midi.de.pickle"] == "yes" and rows["MuseData.pickle"] == "no"
