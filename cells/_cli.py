"""``cellsearch cells ...``: list, show, draw and import cell graphs.

Errors print one line to stderr and exit with code 1 (bad file or cell) or 2 (bad usage).
"""

from __future__ import annotations

import contextlib
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cells import _library as library
from cells._cli_failure import cli_failure
from cells._graph import INPUT_X, CellGraph, CellGraphError
from cells._hash import canonical_hash
from cells._nasbench import load_nasbench_recipes, write_all_atomic
from cells._render import equation_legend, to_dot, to_equations, to_markdown

cells_app = typer.Typer(help="Browse, render and import cell graphs.", no_args_is_help=True)

LIST_HIDDEN_SIZE = 128
"""The hidden (and input) size at which ``cells list`` counts parameters."""

IMPORT_FORMATS = ("nasbench-nlp",)


class ListFormat(StrEnum):
    table = "table"
    json = "json"


class ShowFormat(StrEnum):
    text = "text"
    latex = "latex"
    markdown = "markdown"
    dot = "dot"
    json = "json"


def _check_targets(out_dir: Path, targets: list[Path], force: bool) -> None:
    """Refuse (with the option's name) an output folder or cell files that cannot be written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise cli_failure(f"--output: {out_dir} exists and is not a directory")
    existing = [t for t in targets if os.path.lexists(t)]
    not_files = [t for t in existing if not t.is_file()]
    if not_files:
        raise cli_failure(f"--output: {not_files[0]} exists and is not a regular file")
    if existing and not force:
        counts = f"{len(existing)} of {len(targets)} files"
        raise cli_failure(f"{existing[0]} already exists ({counts}); use --force")


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing: list[Path] = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    return missing


def parameter_count(graph: CellGraph, input_size: int, hidden_size: int) -> int:
    """Parameters of one layer of the cell: a weight per ``linear`` input, a bias per ``linear``,
    a vector per ``diag``.

    Example:
        >>> from cells import library
        >>> parameter_count(library.get("lstm"), 128, 128)  # 4 * (2 * 128 * 128 + 128)
        131584
    """
    total = 0
    for node in graph.nodes:
        if node.op == "linear":
            fan_in = sum(input_size if src == INPUT_X else hidden_size for src in node.inputs)
            total += hidden_size * fan_in + hidden_size
        elif node.op == "diag":
            total += hidden_size
    return total


def _states(graph: CellGraph) -> str:
    """The states the cell reads, and the declared count where some are never read.

    Example:
        >>> _states(library.get("lstm"))
        '2'
    """
    read = len(graph.states_read)
    return (
        str(read)
        if read == graph.num_states
        else f"{read} ({graph.num_states} declared, {graph.num_states - read} never read)"
    )


@cells_app.command("list")
def list_cells(
    format: Annotated[ListFormat, typer.Option("--format", "-f", help="table or json.")] = ListFormat.table,
) -> None:
    """List the library cells."""
    graphs = [library.get(name) for name in library.names()]
    if format == ListFormat.json:
        rows = [
            {
                "name": g.name,
                "num_states": g.num_states,
                "num_nodes": len(g.nodes),
                "num_linear": g.op_counts().get("linear", 0),
                f"params_h{LIST_HIDDEN_SIZE}": parameter_count(g, LIST_HIDDEN_SIZE, LIST_HIDDEN_SIZE),
                "input_equals_hidden": g.requires_input_equals_hidden,
                "description": g.description,
                "hash": canonical_hash(g),
            }
            for g in graphs
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Library cells")
    for column in ("name", "states", "nodes", "linear", f"params@{LIST_HIDDEN_SIZE}", "description"):
        table.add_column(
            column,
            justify="left" if column in ("name", "description") else "right",
            no_wrap=column != "description",
        )
    for g in graphs:
        table.add_row(
            g.name,
            str(g.num_states),
            str(len(g.nodes)),
            str(g.op_counts().get("linear", 0)),
            f"{parameter_count(g, LIST_HIDDEN_SIZE, LIST_HIDDEN_SIZE):,}",
            g.description,
        )
    # Descriptions are plain text, never rich markup.
    Console(markup=False, width=max(100, Console().width)).print(table)


@cells_app.command("show")
def show_cell(
    cell: Annotated[str, typer.Argument(help="A library cell name or a cell JSON file.")],
    format: Annotated[ShowFormat, typer.Option("--format", "-f", help="Output format.")] = ShowFormat.text,
) -> None:
    """Show one cell as equations, LaTeX, Markdown, Graphviz DOT or JSON."""
    try:
        graph = library.resolve(cell)
    except CellGraphError as exc:
        raise cli_failure(str(exc)) from None
    if format == ShowFormat.text:
        header = f"{graph.name}: {graph.description}" if graph.description else graph.name
        typer.echo(header)
        typer.echo(f"states {_states(graph)}, nodes {len(graph.nodes)}, hash {canonical_hash(graph)}")
        if graph.requires_input_equals_hidden:
            typer.echo("uses x directly: input size must equal hidden size")
        typer.echo("")
        typer.echo(to_equations(graph))
        typer.echo(equation_legend(graph))
    elif format == ShowFormat.latex:
        typer.echo("\\begin{align*}\n" + to_equations(graph, "latex") + "\n\\end{align*}")
    elif format == ShowFormat.markdown:
        typer.echo(to_markdown(graph), nl=False)
    elif format == ShowFormat.dot:
        typer.echo(to_dot(graph), nl=False)
    else:
        typer.echo(graph.to_json())


@cells_app.command("draw")
def draw_cell(
    cell: Annotated[str, typer.Argument(help="A library cell name or a cell JSON file.")],
    output: Annotated[Path, typer.Argument(help="The image to write: a .png or .svg file.")],
) -> None:
    """Draw a cell's diagram to a PNG or SVG file (matplotlib: Graphviz is not needed)."""
    if output.suffix.lower() not in (".png", ".svg"):
        raise cli_failure(f"OUTPUT: expected a .png or .svg file, got {output.name!r}", 2)
    try:
        graph = library.resolve(cell)
    except CellGraphError as exc:
        raise cli_failure(str(exc)) from None
    from cells._diagram import draw_diagram  # matplotlib: loaded for this command only

    try:
        draw_diagram(graph, output)
    except OSError as exc:
        raise cli_failure(f"OUTPUT: cannot write {output}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {output}")


@cells_app.command("import")
def import_cells(
    file: Annotated[Path, typer.Argument(help="The file to import.")],
    source: Annotated[str, typer.Option("--from", help=f"Format of FILE: {', '.join(IMPORT_FORMATS)}.")],
    out_dir: Annotated[Path, typer.Option("--output", "-o", help="Directory for the cell JSON files.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite cell files that already exist.")] = False,
) -> None:
    """Import cells from another format, one JSON cell file per cell.

    Every cell is validated and hashed before anything is written; each file appears by a rename.
    """
    if source not in IMPORT_FORMATS:
        supported = ", ".join(IMPORT_FORMATS)
        raise cli_failure(f"--from: unsupported format {source!r} (supported: {supported})", 2)
    try:
        graphs = load_nasbench_recipes(file)
    except CellGraphError as exc:
        raise cli_failure(str(exc)) from None
    if not graphs:
        raise cli_failure(f"{file}: no recipes to import")
    targets = [out_dir / f"{g.name}.json" for g in graphs]
    try:
        _check_targets(out_dir, targets, force)
    except OSError as exc:  # a name too long, a link loop: before anything is written
        raise cli_failure(f"--output: cannot use {out_dir}: {exc.strerror or exc}") from None
    hashes = [canonical_hash(g) for g in graphs]  # before any write: a hash failure writes nothing
    texts = [graph.to_json() + "\n" for graph in graphs]
    created: list[Path] = []
    try:
        created = _missing_folders(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_all_atomic(list(zip(targets, texts, strict=True)))
    except OSError as exc:
        for folder in created:  # deepest first; only the folders this command made, if empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise cli_failure(f"--output: cannot write to {out_dir}: {exc.strerror or exc}") from None

    first_of = {canonical_hash(library.get(name)): f"library {name}" for name in library.names()}
    for graph, digest in zip(graphs, hashes, strict=True):
        first_of.setdefault(digest, graph.name)
    typer.echo(f"imported {len(graphs)} cells from {file} into {out_dir}{os.sep}")
    for graph, target, digest in zip(graphs, targets, hashes, strict=True):
        same = f"  same cell as {first_of[digest]}" if first_of[digest] != graph.name else ""
        typer.echo(f"  {target.name}  states {graph.num_states}  nodes {len(graph.nodes):>2}  {digest}{same}")
    typer.echo(f"{len(set(hashes))} distinct cells")
