"""The hostile-input corpus of issue 12: every case, by class (see ``_hostile_runner.Case``).

Classes 1-12 are the issue's; "other" holds bad options found on the way. Class 12's two
concurrency and signal items are real-process tests of their own (see ``COVERED_ELSEWHERE``).
"""

from __future__ import annotations

from _hostile_cases_cells import CASES as CELL_CASES
from _hostile_cases_cli import CASES as CLI_CASES
from _hostile_cases_files import CASES as FILE_CASES
from _hostile_cases_jobs import CASES as JOB_CASES
from _hostile_cases_options import CASES as OPTION_CASES
from _hostile_runner import Case

CASES: list[Case] = JOB_CASES + FILE_CASES + CELL_CASES + CLI_CASES + OPTION_CASES

CLASSES = [str(n) for n in range(1, 12)] + ["other"]
"""The classes the corpus covers here (class 12 is covered elsewhere)."""

COVERED_ELSEWHERE = {
    "12": [
        "two launches at once on a fresh MLflow store (no race, no stray _alembic_tmp_* table)",
        "cellsearch dashboard stopped by SIGTERM/SIGINT leaves no process and frees the port",
    ]
}
