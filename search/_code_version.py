"""The version string stamped on every job: which code wrote its results.

Example:
    >>> package_code_version().startswith(("unknown", "0", "1", "2"))
    True
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path


@cache
def package_code_version() -> str:
    """The package version, plus ``git describe`` of the source tree when it is a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("cellsearch")
    except PackageNotFoundError:
        text = "unknown"
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        try:
            described = subprocess.run(
                ["git", "describe", "--always", "--dirty", "--tags"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            described = ""
        if described:
            text += f"+git.{described}"
    return text
