"""``cellsearch job schema``: the JSON Schema of a job file, for an editor's YAML language server.

Example:
    >>> import json
    >>> from typer.testing import CliRunner
    >>> app = typer.Typer()
    >>> register(app)
    >>> result = CliRunner().invoke(app, ["job", "schema"])
    >>> result.exit_code, json.loads(result.stdout)["title"]
    (0, 'cellsearch job file')
"""

from __future__ import annotations

import json

import typer

job_app = typer.Typer(help="Job files: their schema.", no_args_is_help=True)


@job_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of a job file, for completion and checks in an editor.

    Save it (cellsearch job schema > job-schema.json) and start a job file with the line
    "# yaml-language-server: $schema=job-schema.json"; docs/jobs.md says more."""
    from search._job_schema import job_schema

    typer.echo(json.dumps(job_schema(), indent=2, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    """Add the ``job`` group to the root app."""
    app.add_typer(job_app, name="job")
