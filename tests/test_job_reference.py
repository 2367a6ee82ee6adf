"""docs/jobs.md is the reference generated from the models that validate a job file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from search._job_reference import job_file_reference

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "jobs.md"


def _rows() -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for line in job_file_reference().splitlines()
        if line.startswith("| `")
    ]


def test_the_job_file_reference_is_the_generated_one() -> None:
    """Regenerate it with ``python -m search._job_reference > docs/jobs.md``."""
    assert DOC.read_text(encoding="utf-8") == job_file_reference()


def test_the_regeneration_command_in_the_header_writes_the_committed_file() -> None:
    command = "python -m search._job_reference > docs/jobs.md"
    assert command in DOC.read_text(encoding="utf-8").splitlines()[0]
    out = subprocess.run(
        [sys.executable, "-m", "search._job_reference"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out == DOC.read_text(encoding="utf-8")


def test_every_number_of_a_job_file_has_a_finite_documented_range() -> None:
    unbounded = [
        f"{row[0]}: {row[3]}"
        for row in _rows()
        if row[1] in ("integer", "number") or row[1].startswith(("integer ", "number "))
        if "≤" not in row[3] and "<" not in row[3]
    ]
    assert not unbounded, "numbers without an upper bound:\n" + "\n".join(unbounded)


def test_every_setting_has_a_type_a_default_and_a_meaning() -> None:
    rows = _rows()
    assert len(rows) > 100
    missing = [row[0] for row in rows if len(row) != 5 or not all(row)]
    assert not missing, "settings without a type, default, range or meaning: " + ", ".join(missing)


def test_every_section_of_a_job_and_each_of_its_fields_is_documented() -> None:
    import workers
    from search._jobspec import JobSpec
    from search._strategies import STRATEGIES

    text = job_file_reference()
    for name in JobSpec.model_fields:
        assert f"| `{name}` |" in text, name
    for section in ("budget", "resources", "tasks", "hparams", "prefilter", "final", "halving"):
        assert f"## `{section}`" in text, section
    for kind in STRATEGIES:
        assert f"## `strategy` of kind `{kind}`" in text, kind
    for task, cls in workers.TASKS.items():
        assert f"### `tasks[].settings` of `{task}`" in text, task
        for field in cls.config_class.model_fields:
            assert f"| `{field}` |" in text, f"{task}.{field}"
    for field in workers.PrefilterConfig.model_fields:  # the screen's settings sit in the section
        assert f"| `{field}` |" in text.split("## `prefilter`")[1].split("## `final`")[0], field


def test_the_reference_shows_the_bounds_a_job_holds_the_screen_to() -> None:
    prefilter = job_file_reference().split("## `prefilter`")[1]
    (batches,) = [line for line in prefilter.splitlines() if line.startswith("| `batches` |")]
    assert "≤ 100 |" in batches  # PREFILTER_LIMITS, below PrefilterConfig's own 1000
