"""``cellsearch job schema`` prints a JSON Schema that accepts the example jobs and refuses
what ``cellsearch launch`` refuses (the cases below), so an editor marks a bad job as one types."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from search._job_errors import JobError
from search._job_yaml import load_job_yaml
from search._jobspec import JobSpec

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """What the command prints, read as JSON (it must be JSON)."""
    result = subprocess.run(
        [sys.executable, "-m", "cellsearch", "job", "schema"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def _example(name: str) -> dict[str, Any]:
    path = REPO / "examples" / name
    data: dict[str, Any] = load_job_yaml(path.read_text(encoding="utf-8"), path.name)
    return data


def _schema_errors(schema: dict[str, Any], data: Any) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]


def test_the_schema_is_a_valid_json_schema_of_the_job_file(schema: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == "cellsearch job file"
    assert set(schema["required"]) == {n for n, f in JobSpec.model_fields.items() if f.is_required()}
    assert set(schema["properties"]) == set(JobSpec.model_fields)
    assert schema["additionalProperties"] is False


def test_every_setting_of_the_schema_has_a_description(schema: dict[str, Any]) -> None:
    missing = [name for name, prop in schema["properties"].items() if not prop.get("description")]
    for model, body in schema["$defs"].items():
        missing += [f"{model}.{n}" for n, p in body.get("properties", {}).items() if not p.get("description")]
    assert not missing, missing


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_schema_accepts_every_example_job(schema: dict[str, Any], path: Path) -> None:
    data = _example(path.name)
    JobSpec.from_dict(data, base_dir=path.parent)  # the job itself is valid...
    assert _schema_errors(schema, data) == []  # ...and so the schema takes it


BAD: dict[str, tuple[Any, str]] = {
    "an unknown key": ({"epochs": 3}, "epochs"),
    "an unknown strategy": ({"strategy": {"kind": "greedy"}}, "strategy"),
    "a budget of zero architectures": ({"budget": {"max_architectures": 0}}, "budget.max_architectures"),
    "an unknown task": ({"tasks": [{"name": "sorting"}]}, "tasks.0.name"),
    "a setting of another task": ({"tasks": [{"name": "arith", "settings": {"max_depth": 3}}]}, "tasks.0"),
    "an unknown hyperparameter": ({"hparams": {"momentum": 0.9}}, "hparams"),
    "a screen reading too many batches": ({"prefilter": {"batches": 500}}, "prefilter"),
    "a population of zero": ({"population": 0}, "population"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_the_schema_refuses_what_the_job_refuses(schema: dict[str, Any], case: str) -> None:
    change, where = BAD[case]
    data = copy.deepcopy(_example("quickstart.yaml")) | change
    with pytest.raises(JobError):
        JobSpec.from_dict(data, base_dir=REPO / "examples")
    errors = _schema_errors(schema, data)
    assert errors, f"the schema accepts {case}"
    assert any(where in e for e in errors), errors


def test_population_off_read_by_yaml_as_false_is_accepted_by_both(schema: dict[str, Any]) -> None:
    data = _example("quickstart.yaml") | {"population": False}
    assert JobSpec.from_dict(data, base_dir=REPO / "examples").population == "off"
    assert _schema_errors(schema, data) == []


def test_the_schema_holds_the_screen_to_the_bounds_of_a_job(schema: dict[str, Any]) -> None:
    base = _example("quickstart.yaml")
    assert _schema_errors(schema, base | {"prefilter": {"batches": 100}}) == []
    assert _schema_errors(schema, base | {"prefilter": {"batches": 101}})  # PrefilterConfig allows 1000


def test_the_editor_setup_in_docs_jobs_names_the_file_the_command_writes(
    schema: dict[str, Any], tmp_path: Path
) -> None:
    """docs/jobs.md: save the schema with its command, then name that file in the job's first
    line; the YAML language server reads ``# yaml-language-server: $schema=<file>``."""
    import re
    import shlex

    from _commands import check_command, shell_commands

    doc = (REPO / "docs" / "jobs.md").read_text(encoding="utf-8")
    (command,) = shell_commands(doc)
    argv, target = command.split(" > ")
    assert check_command(argv) == "cellsearch job schema"
    modeline = re.search(r"^# yaml-language-server: \$schema=(\S+)$", doc, re.M)
    assert modeline and modeline[1] == target.strip() == "job-schema.json"
    written = subprocess.run(
        [sys.executable, "-m", "cellsearch", *shlex.split(argv)[1:]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (tmp_path / target).write_text(written)
    assert json.loads((tmp_path / target).read_text()) == schema
