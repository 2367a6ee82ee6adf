"""docs/job-file.md is the reference generated from the models that validate a job file."""

from __future__ import annotations

from pathlib import Path

from search._job_reference import job_file_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "job-file.md"


def test_the_job_file_reference_is_the_generated_one() -> None:
    """Regenerate it with ``python -m search._job_reference > docs/job-file.md``."""
    assert DOC.read_text(encoding="utf-8") == job_file_reference()


def test_every_number_of_a_job_file_has_a_finite_documented_range() -> None:
    unbounded = []
    for line in job_file_reference().splitlines():
        if line.startswith("| `") and ("| integer" in line or "| number" in line):
            setting, allowed = line.split(" | ")[0], line.split(" | ")[3]
            if "≤" not in allowed and "<" not in allowed:
                unbounded.append(f"{setting.strip('| ')}: {allowed}")
    assert not unbounded, "numbers without an upper bound:\n" + "\n".join(unbounded)
