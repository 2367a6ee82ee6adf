"""Reading a file a user names (a job file, a cell file, a recipe file, a search space): a
regular file under a size cap, decoded as UTF-8, or one line saying why not.

A device (``/dev/zero``), a FIFO or a folder is refused before it is opened, so that reading
never blocks or eats memory; a file larger than the cap is refused from its size; text that is
not UTF-8 (UTF-16 from some Windows editors, Latin-1) is named as such, with where it breaks.

Example:
    >>> read_text_file("/dev/zero", what="job file", max_bytes=1000)
    Traceback (most recent call last):
    ...
    cells._user_files.UserFileError: /dev/zero: the job file is not a regular file (it is a character device)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cells._errors import CellsearchError

__all__ = ["UserFileError", "read_text_file"]

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


class UserFileError(CellsearchError, ValueError):
    """A file a user named cannot be read as text; the message is one line that starts with the path."""


def read_text_file(path: str | Path, *, what: str, max_bytes: int) -> str:
    """The text of ``path``: a regular file of at most ``max_bytes`` bytes, in UTF-8 (a UTF-8
    byte-order mark is dropped). ``what`` names the file in messages (``"job file"``).

    Raises :class:`UserFileError` for a missing or unreadable file, anything but a regular
    file, a file over the cap, and text that is not UTF-8.
    """
    shown = str(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise UserFileError(f"{shown}: cannot read the {what}: {exc.strerror or exc}") from None
    for is_kind, kind in _KINDS:
        if is_kind(info.st_mode):
            raise UserFileError(f"{shown}: the {what} is not a regular file (it is {kind})")
    if info.st_size > max_bytes:
        raise UserFileError(
            f"{shown}: the {what} is {info.st_size:,} bytes; the limit is {max_bytes:,} bytes"
        )
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)  # the file may have grown since stat
    except OSError as exc:
        raise UserFileError(f"{shown}: cannot read the {what}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise UserFileError(f"{shown}: the {what} is over the limit of {max_bytes:,} bytes")
    return _decode(data, shown, what)


def _decode(data: bytes, shown: str, what: str) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise UserFileError(f"{shown}: the {what} is {encoding} text; save it as UTF-8")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserFileError(
            f"{shown}: the {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})"
        ) from None
