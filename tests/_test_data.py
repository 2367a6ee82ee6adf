"""Where the tests find the real data sets they read (Penn Treebank, tinyshakespeare, the
NAS-Bench-NLP example recipes), and the skip that says what is missing when they are absent.

The folder is ``CELLSEARCH_TEST_DATA`` when set, else the data folder the team keeps beside the
checkout. Skip reasons name the file relative to that folder and the variable to set, never a
path of one machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["TEST_DATA", "needs_test_data", "require_test_data"]

TEST_DATA = Path(
    os.environ.get("CELLSEARCH_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


def _missing_reason(relative: str) -> str:
    return f"test data {relative} not found (set CELLSEARCH_TEST_DATA to a folder that holds it)"


def needs_test_data(relative: str) -> pytest.MarkDecorator:
    """A skip mark for tests that read ``relative`` inside the test data folder."""
    return pytest.mark.skipif(not (TEST_DATA / relative).is_file(), reason=_missing_reason(relative))


def require_test_data(relative: str) -> Path:
    """The file ``relative`` of the test data folder; skips the calling test when it is absent."""
    path = TEST_DATA / relative
    if not path.is_file():
        pytest.skip(_missing_reason(relative))
    return path
