"""NAS-Bench-NLP recipes: import into cell graphs and export back.

A recipe maps node names to ``{"op": OP, "input": [names]}``; inputs are ``x`` and
``h_prev_0..2``, the nodes named ``h_new_0..2`` are the new states. A recipe file is a
JSON list of recipes. See ``docs/cell-format.md`` for the op mapping.

Example:
    >>> recipe = {
    ...     "node_0": {"op": "linear", "input": ["x", "h_prev_0"]},
    ...     "h_new_0": {"op": "activation_tanh", "input": ["node_0"]},
    ... }
    >>> g = from_nasbench_recipe(recipe, name="elman")
    >>> [(n.name, n.op) for n in g.nodes], g.outputs
    ([('node_0', 'linear'), ('h_new_0', 'tanh')], ('h_new_0',))
    >>> to_nasbench_recipe(g) == recipe
    True
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cells._graph import MAX_NODES, CellGraph, CellGraphError, state_output
from cells._ops import MAX_STATES, OPS
from cells._plain_text import control_character_problem
from cells._strict_json import StrictJSONError, load_strict_json
from cells._user_files import UserFileError, read_text_file

MAX_RECIPE_FILE_BYTES = 32 * 1024 * 1024
"""The largest recipe file read (32 MiB): a recipe of a few dozen nodes is a few kilobytes, so
the cap holds thousands of them, while bounding the memory a hostile file takes once parsed."""

NASBENCH_TO_OP: dict[str, str] = {
    "linear": "linear",
    "blend": "blend",
    "elementwise_prod": "mul",
    "elementwise_sum": "add",
    "activation_tanh": "tanh",
    "activation_sigm": "sigmoid",
    "activation_leaky_relu": "leaky_relu",
}
"""NAS-Bench-NLP op name -> our op name."""

OP_TO_NASBENCH: dict[str, str] = {ours: theirs for theirs, ours in NASBENCH_TO_OP.items()}
"""Our op name -> NAS-Bench-NLP op name, for the ops that have one."""

_OUTPUT_NAME = re.compile(r"h_new_(\d+)")
# NAS-Bench-NLP's LeakyReLU is torch's default.
_LEAKY_SLOPE = OPS["leaky_relu"].attrs["negative_slope"].default


def from_nasbench_recipe(recipe: dict[str, Any], name: str = "recipe") -> CellGraph:
    """A cell graph from one NAS-Bench-NLP recipe.

    ``num_states`` is one more than the largest ``i`` of a node ``h_new_i`` (as in
    NAS-Bench-NLP), and every ``h_new_0..h_new_{k-1}`` must exist. Unknown ops, wrong
    arity, undefined inputs and cycles raise :class:`CellGraphError` naming the node.
    """
    if not isinstance(recipe, dict):
        raise CellGraphError(f"recipe: expected a JSON object of nodes, got {_json_type(recipe)}")
    # Counted before any node is converted: a huge recipe is refused from its length.
    if len(recipe) > MAX_NODES:
        raise CellGraphError(f"recipe: expected at most {MAX_NODES} nodes, got {len(recipe)}")
    nodes = []
    states: set[int] = set()
    for key, spec in recipe.items():
        nodes.append({"name": key, **_node_fields(key, spec)})
        match = _OUTPUT_NAME.fullmatch(key)
        if match:
            states.add(int(match.group(1)))
    if not states:
        raise CellGraphError("recipe: no output node 'h_new_0'")
    num_states = max(states) + 1
    if num_states > MAX_STATES:
        raise CellGraphError(f"node {state_output(num_states - 1)!r}: at most {MAX_STATES} states supported")
    missing = [state_output(i) for i in range(num_states) if i not in states]
    if missing:
        raise CellGraphError(
            f"recipe: has {state_output(num_states - 1)!r} but no {', '.join(map(repr, missing))}"
        )
    return CellGraph.parse(
        {
            "name": name,
            "description": "Imported from a NAS-Bench-NLP recipe.",
            "num_states": num_states,
            "nodes": nodes,
            "outputs": [state_output(i) for i in range(num_states)],
        }
    )


def _node_fields(key: str, spec: Any) -> dict[str, Any]:
    """The op and inputs of one recipe node, each checked for its JSON type before use."""
    if not isinstance(spec, dict):
        raise CellGraphError(
            f"node {key!r}: expected an object with 'op' and 'input', got {_json_type(spec)}"
        )
    extra = set(spec) - {"op", "input"}
    if extra:
        raise CellGraphError(f"node {key!r}: unknown field(s) {', '.join(map(repr, sorted(extra)))}")
    op, inputs = spec.get("op"), spec.get("input")
    if not isinstance(op, str):
        raise CellGraphError(f"node {key!r}: op: expected a string, got {_json_type(op)}")
    if op not in NASBENCH_TO_OP:
        raise CellGraphError(
            f"node {key!r}: unknown NAS-Bench-NLP op {op!r} (known: {', '.join(NASBENCH_TO_OP)})"
        )
    if not isinstance(inputs, list):
        raise CellGraphError(f"node {key!r}: input: expected a list of node names, got {_json_type(inputs)}")
    for i, name in enumerate(inputs):
        if not isinstance(name, str):
            raise CellGraphError(
                f"node {key!r}: input.{i}: expected a node name (a string), got {_json_type(name)}"
            )
    return {"op": NASBENCH_TO_OP[op], "inputs": inputs}


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, as a user wrote it (``true`` is a boolean)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def to_nasbench_recipe(graph: CellGraph) -> dict[str, Any]:
    """The NAS-Bench-NLP recipe of a cell graph.

    Output nodes are renamed ``h_new_i``; other nodes keep their names, except names that
    look like a new state (they get ``_n1``, ``_n2``, ...). Ops without a NAS-Bench-NLP
    equivalent (``sub``, ``diag``, ``relu``, ``identity``, ``one_minus``, ``scale``,
    ``shift``, a ``linear`` with ``bias_init``, a ``leaky_relu`` with a non-default slope)
    raise :class:`CellGraphError` naming the node, as does a new state that is an input or
    repeats another new state.
    """
    for node in graph.nodes:
        theirs = OP_TO_NASBENCH.get(node.op)
        if theirs is None:
            raise CellGraphError(f"node {node.name!r}: op {node.op!r} has no NAS-Bench-NLP equivalent")
        if node.op == "linear" and "bias_init" in node.attrs:
            raise CellGraphError(
                f"node {node.name!r}: linear with bias_init={node.attrs['bias_init']:g} has no "
                "NAS-Bench-NLP equivalent (its biases use the default init)"
            )
        slope = node.attrs.get("negative_slope", _LEAKY_SLOPE)
        if node.op == "leaky_relu" and slope != _LEAKY_SLOPE:
            raise CellGraphError(
                f"node {node.name!r}: leaky_relu with negative_slope={slope:g} has no NAS-Bench-NLP "
                f"equivalent (theirs is {_LEAKY_SLOPE:g})"
            )
    rename: dict[str, str] = {name: name for name in graph.input_names}
    for i, out in enumerate(graph.outputs):
        if out in graph.input_names:
            raise CellGraphError(
                f"output {state_output(i)}: is the input {out!r}; NAS-Bench-NLP has no identity op"
            )
        if out in rename:
            raise CellGraphError(
                f"output {state_output(i)}: node {out!r} is already {rename[out]}; a NAS-Bench-NLP "
                "node can be only one new state"
            )
        rename[out] = state_output(i)
    # Other nodes keep their names, except those that look like a new state.
    others = [n.name for n in graph.nodes if n.name not in rename]
    taken = set(rename.values()) | {name for name in others if not _OUTPUT_NAME.fullmatch(name)}
    for name in others:
        new, k = name, 1
        while _OUTPUT_NAME.fullmatch(new) or (new != name and new in taken):
            new, k = f"{name}_n{k}", k + 1
        rename[name] = new
        taken.add(new)
    return {
        rename[n.name]: {"op": OP_TO_NASBENCH[n.op], "input": [rename[i] for i in n.inputs]}
        for n in graph.nodes
    }


def load_nasbench_recipes(path: str | Path) -> list[CellGraph]:
    """Every recipe of a NAS-Bench-NLP recipe file (a JSON list), named ``recipe-000``, ...

    The file is read with :func:`~cells.read_text_file` (at most :data:`MAX_RECIPE_FILE_BYTES`)
    and :func:`~cells.load_strict_json`. The first invalid recipe raises
    :class:`CellGraphError` naming the file, the recipe's index, the node and the field.
    """
    try:
        data = load_strict_json(
            read_text_file(path, what="recipe file", max_bytes=MAX_RECIPE_FILE_BYTES), str(path)
        )
    except (UserFileError, StrictJSONError) as exc:
        raise CellGraphError(str(exc)) from None
    if not isinstance(data, list):
        raise CellGraphError(f"{path}: expected a JSON list of recipes, got {_json_type(data)}")
    width = max(3, len(str(len(data) - 1)))
    # The file's name goes into every description, which must be plain text to load again.
    file_name = Path(path).name
    if control_character_problem(file_name) is not None:
        file_name = ascii(file_name)
    graphs = []
    for i, recipe in enumerate(data):
        try:
            graph = from_nasbench_recipe(recipe, name=f"recipe-{i:0{width}d}")
        except CellGraphError as exc:
            raise CellGraphError(f"{path}: recipe {i}: {exc}") from None
        description = f"NAS-Bench-NLP recipe {i} of {file_name}."
        graphs.append(graph.model_copy(update={"description": description}))
    return graphs


def dump_nasbench_recipes(graphs: Iterable[CellGraph], path: str | Path) -> None:
    """Write graphs as a NAS-Bench-NLP recipe file; all are converted before the file is written."""
    recipes = [to_nasbench_recipe(g) for g in graphs]
    write_atomic(Path(path), json.dumps(recipes, indent=2) + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    write_all_atomic([(path, text)])


def write_all_atomic(files: Sequence[tuple[Path, str]]) -> None:
    """Write several files, each through a temporary file in its target folder and a rename.

    Every temporary file is written before the first rename, so a failure while writing (a
    full disk, a read-only folder) leaves none of the targets created or changed.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        while staged:
            tmp, path = staged[0]
            os.replace(tmp, path)
            staged.pop(0)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
