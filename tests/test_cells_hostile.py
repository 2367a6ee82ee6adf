"""Hostile cells, cell files and NAS-Bench-NLP recipes: refused with one line, nothing written.

Every case runs the real code (``CellGraph.load``, ``load_nasbench_recipes``) or the real
command (``cellsearch cells ...``) on real files in a temporary folder. Graphs as big as the
node limit are generated at test time, in file order and in reverse, so that every algorithm
over a graph is shown to work without recursion at that depth.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from cells import (
    MAX_CELL_FILE_BYTES,
    MAX_INPUTS,
    MAX_NODES,
    CellGraph,
    CellGraphError,
    build_layer,
    canonical_hash,
    load_nasbench_recipes,
    to_dot,
    to_equations,
    to_markdown,
)
from cells._nasbench import NASBENCH_TO_OP
from cellsearch._cli import app

CELLS_DIR = Path(__file__).resolve().parents[1] / "cells"
PROPERTY = settings(
    max_examples=100, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
runner = CliRunner()


def invoke(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result: Result, code: int, *parts: str) -> str:
    """The command failed with ``code`` and one line ``error: ...`` holding every part."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def chain(n: int, op: str = "tanh", reverse: bool = False) -> dict[str, Any]:
    """A cell whose nodes form one chain ``n0 <- n1 <- ... <- n{n-1}`` (the output)."""
    nodes = [{"name": "n0", "op": "linear", "inputs": ["x", "h_prev_0"]}]
    nodes += [{"name": f"n{i}", "op": op, "inputs": [f"n{i - 1}"]} for i in range(1, n)]
    if reverse:
        nodes.reverse()  # every node before the node it reads
    return {"name": "chain", "num_states": 1, "nodes": nodes, "outputs": [f"n{n - 1}"]}


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


# --- the node limit and deep graphs -----------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("op", ["tanh", "linear"])
def test_a_chain_at_the_limit_passes_everything(tmp_path: Path, op: str, reverse: bool) -> None:
    data = chain(MAX_NODES, op, reverse)
    graph = CellGraph.parse(data)
    assert [n.name for n in graph.nodes] == [f"n{i}" for i in range(MAX_NODES)]
    digest = canonical_hash(graph)
    assert digest == canonical_hash(CellGraph.parse(chain(MAX_NODES, op, not reverse)))
    assert len(to_equations(graph).splitlines()) >= MAX_NODES // 8
    assert to_equations(graph, "latex") and to_markdown(graph).startswith("### chain")
    assert to_dot(graph).count("->") == MAX_NODES + 2  # n0 reads two inputs; one edge to h_new_0
    path = write_json(tmp_path / "chain.json", data)
    for fmt in ("text", "latex", "markdown", "dot", "json"):
        result = invoke("cells", "show", path, "--format", fmt)
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert f"nodes {MAX_NODES}, hash {digest}" in invoke("cells", "show", path).stdout
    assert CellGraph.load(path) == graph


def test_a_chain_at_the_limit_compiles_and_runs() -> None:
    import torch

    graph = CellGraph.parse(chain(MAX_NODES, "linear", reverse=True))
    layer = build_layer(graph, input_size=2, hidden_size=2)
    out, _ = layer(torch.randn(2, 1, 2))
    out.sum().backward()
    assert tuple(out.shape) == (2, 1, 2) and bool(torch.isfinite(out).all())


def test_a_node_with_the_most_inputs_compiles_and_one_more_is_refused(tmp_path: Path) -> None:
    import torch

    def wide(n: int) -> dict[str, Any]:
        lin = {"name": "a", "op": "linear", "inputs": ["x", "h_prev_0"]}
        return {
            "num_states": 1,
            "nodes": [lin, {"name": "s", "op": "add", "inputs": ["a"] * n}],
            "outputs": ["s"],
        }

    out, _ = build_layer(CellGraph.parse(wide(MAX_INPUTS)), input_size=2, hidden_size=2)(torch.ones(1, 1, 2))
    assert bool(torch.isfinite(out).all())
    path = write_json(tmp_path / "wide.json", wide(100_000))
    reason = f"node 's' (nodes.1).inputs: expected at most {MAX_INPUTS} inputs, got 100000"
    assert_one_line_error(invoke("cells", "show", path), 1, reason)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_one_node_over_the_limit_is_refused(tmp_path: Path, reverse: bool) -> None:
    message = f"nodes: expected at most {MAX_NODES} nodes, got {MAX_NODES + 1}"
    with pytest.raises(CellGraphError) as info:
        CellGraph.parse(chain(MAX_NODES + 1, reverse=reverse))
    assert str(info.value) == message
    path = write_json(tmp_path / "big.json", chain(MAX_NODES + 1, reverse=reverse))
    assert_one_line_error(invoke("cells", "show", path), 1, str(path), message)


def test_the_node_count_is_checked_before_any_node() -> None:
    # Nodes that are not even objects: only the count is looked at.
    with pytest.raises(CellGraphError, match=f"^nodes: expected at most {MAX_NODES} nodes, got 100000$"):
        CellGraph.parse({"num_states": 1, "nodes": [0] * 100_000, "outputs": ["h"]})


def test_no_function_in_cells_calls_itself() -> None:
    """Recursion over a graph is what broke on deep cells; none of cells' code recurses."""
    offenders: list[str] = []
    for path in sorted(CELLS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        assert "setrecursionlimit" not in path.read_text(), path
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for call in ast.walk(func):
                if isinstance(call, ast.Call) and _calls_itself(call.func, func.name):
                    offenders.append(f"{path.name}:{func.name}")
    assert sorted(set(offenders)) == sorted(ALLOWED_SELF_CALLS), offenders


# match_graph's unify recurses only while the *pattern* (a library cell of a few nodes) has
# nodes left, so its depth is that of the pattern; hoist_tokens the method calls the module's
# function of the same name.
ALLOWED_SELF_CALLS = ("_compile_native.py:unify", "_compile_population.py:hoist_tokens")


def _calls_itself(target: ast.expr, name: str) -> bool:
    """``name(...)``, ``self.name(...)`` or ``cls.name(...)``: a call of the function itself."""
    if isinstance(target, ast.Name):
        return target.id == name
    return (
        isinstance(target, ast.Attribute)
        and target.attr == name
        and isinstance(target.value, ast.Name)
        and target.value.id in ("self", "cls")
    )


# --- files that are not cell files ------------------------------------------------------------

TANH = {
    "name": "t",
    "num_states": 1,
    "nodes": [
        {"name": "a", "op": "linear", "inputs": ["x", "h_prev_0"]},
        {"name": "h", "op": "scale", "inputs": ["a"], "attrs": {"alpha": 2}},
    ],
    "outputs": ["h"],
}


def bad_files(tmp_path: Path) -> list[tuple[Path, str]]:
    """(file, part of the message) for files no cell or recipe reader may accept."""
    latin = tmp_path / "latin1.json"
    latin.write_bytes(json.dumps(TANH).replace('"t"', '"t\xe9"').encode("latin-1"))
    utf16 = tmp_path / "utf16.json"
    utf16.write_text(json.dumps(TANH), encoding="utf-16")
    folder = tmp_path / "folder.json"
    folder.mkdir()
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:  # sparse: its size is refused without reading it
        handle.truncate(64 * 1024 * 1024)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps(TANH)[:-1] + ', "num_states": 2}')
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps(TANH).replace('"alpha": 2', '"alpha": NaN'))
    overflow = tmp_path / "overflow.json"
    overflow.write_text(json.dumps(TANH).replace('"alpha": 2', '"alpha": 1e999'))
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": ')
    return [
        (latin, "is not UTF-8 text (byte 0xe9 on line 1)"),
        (utf16, "is UTF-16 text; save it as UTF-8"),
        (folder, "is not a regular file (it is a folder)"),
        (fifo, "is not a regular file (it is a FIFO)"),
        (Path("/dev/zero"), "is not a regular file (it is a character device)"),
        (huge, "67,108,864 bytes; the limit is"),
        (deep, "nested 100000 levels deep; the limit is 32"),
        (twice, "key 'num_states' is given twice in one object"),
        (nan, "NaN is not a number JSON allows"),
        (overflow, "number 1e999 is too large (it overflows to infinity)"),
        (broken, "not valid JSON"),
        (tmp_path / "missing" / "cell.json", "No such file or directory"),
    ]


def test_bad_files_are_refused_by_every_reader(tmp_path: Path) -> None:
    for path, reason in bad_files(tmp_path):
        for read in (CellGraph.load, load_nasbench_recipes):
            with pytest.raises(CellGraphError) as info:
                read(path)
            message = str(info.value)
            assert message.startswith(f"{path}: ") and reason in message and "\n" not in message, message


def test_bad_files_are_refused_by_cells_show_and_import(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for path, reason in bad_files(tmp_path):
        if path.parent.is_dir() or path.name == "zero":
            assert_one_line_error(invoke("cells", "show", path), 1, str(path), reason)
        assert_one_line_error(
            invoke("cells", "import", path, "--from", "nasbench-nlp", "-o", out), 1, str(path), reason
        )
    assert not out.exists()


def test_a_fifo_does_not_block_the_real_command(tmp_path: Path) -> None:
    fifo = tmp_path / "cell.json"
    os.mkfifo(fifo)
    for args in (
        ["show", str(fifo)],
        ["import", str(fifo), "--from", "nasbench-nlp", "-o", str(tmp_path / "o")],
    ):
        # No writer ever opens the FIFO: a reader that opened it would block until the timeout.
        proc = subprocess.run(
            [sys.executable, "-m", "cellsearch", "cells", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(CELLS_DIR.parent)},
            check=False,
        )
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr == f"error: {fifo}: the cell file is not a regular file (it is a FIFO)\n".replace(
            "cell file", "cell file" if args[0] == "show" else "recipe file"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.json"]


def test_a_cell_file_over_the_cap_is_refused_from_its_size(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(TANH) + " " * MAX_CELL_FILE_BYTES)
    assert_one_line_error(
        invoke("cells", "show", path), 1, str(path), f"the limit is {MAX_CELL_FILE_BYTES:,} bytes"
    )


# --- strict types and plain text --------------------------------------------------------------


def with_node_field(field: str, value: Any) -> dict[str, Any]:
    nodes = [dict(TANH["nodes"][0]), {**TANH["nodes"][1], field: value}]
    return {**TANH, "nodes": nodes}


TYPE_CASES: list[tuple[dict[str, Any], str]] = [
    ({**TANH, "num_states": "1"}, "num_states: Input should be a valid integer"),
    ({**TANH, "num_states": True}, "num_states: Input should be a valid integer"),
    ({**TANH, "num_states": 1.0}, "num_states: Input should be a valid integer"),
    ({**TANH, "num_states": 10**30}, "num_states: Input should be less than or equal to 3"),
    (
        with_node_field("attrs", {"alpha": True}),
        "node 'h' (nodes.1).attrs.alpha: Input should be a valid number",
    ),
    (
        with_node_field("attrs", {"alpha": "2"}),
        "node 'h' (nodes.1).attrs.alpha: Input should be a valid number",
    ),
    (with_node_field("attrs", {"alpha": 1e300}), "attribute alpha=1e+300 out of range [-10.0, 10.0]"),
    (with_node_field("inputs", "a"), "node 'h' (nodes.1).inputs: Input should be a valid tuple"),
    (with_node_field("inputs", [1]), "node 'h' (nodes.1).inputs.0: Input should be a valid string"),
    (with_node_field("op", ["scale"]), "node 'h' (nodes.1).op: Input should be a valid string"),
    (with_node_field("tag", "gate\x1b[31m"), "tag: Value error, contains the control character U+001B"),
    (with_node_field("name", "h\u202e"), "node 'h\\u202e': name must be letters"),
    ({**TANH, "name": "t\x07"}, "name: contains the control character U+0007"),
    ({**TANH, "name": "t\u202egpj"}, "name: contains the control character U+202E"),
    ({**TANH, "description": "a\x00b"}, "description: contains the control character U+0000"),
    ({**TANH, "nodes": {"a": 1}}, "nodes: Input should be a valid tuple"),
    ([TANH], "Input should be a valid dictionary"),
]


@pytest.mark.parametrize(("data", "reason"), TYPE_CASES)
def test_wrong_types_and_control_characters_are_refused(tmp_path: Path, data: Any, reason: str) -> None:
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(data))
    line = assert_one_line_error(invoke("cells", "show", path), 1, str(path))
    assert reason.replace("Value error, ", "") in line or reason in line, line


def test_a_multiline_description_is_still_plain_text() -> None:
    graph = CellGraph.parse({**TANH, "description": "line 1\nline 2\ttabbed"})
    assert graph.description == "line 1\nline 2\ttabbed"
    assert CellGraph.parse(TANH).node_map["h"].attrs == {"alpha": 2.0}  # an int is a number


# --- NAS-Bench-NLP recipes --------------------------------------------------------------------

RECIPE = {
    "node_0": {"op": "linear", "input": ["x", "h_prev_0"]},
    "h_new_0": {"op": "activation_tanh", "input": ["node_0"]},
}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def import_recipes(tmp_path: Path, recipes: Any) -> tuple[Result, Path]:
    path = write_json(tmp_path / "recipes.json", recipes)
    out = tmp_path / "out"
    return invoke("cells", "import", path, "--from", "nasbench-nlp", "-o", out), out


RECIPE_CASES: list[tuple[Any, str]] = [
    (
        [RECIPE, {**RECIPE, "h_new_0": {"op": ["linear"], "input": ["node_0"]}}],
        "recipe 1: node 'h_new_0': op: expected a string, got a list",
    ),
    (
        [{**RECIPE, "node_0": {"op": {"a": 1}, "input": ["x"]}}],
        "recipe 0: node 'node_0': op: expected a string, got an object",
    ),
    (
        [{**RECIPE, "node_0": {"op": None, "input": ["x"]}}],
        "recipe 0: node 'node_0': op: expected a string, got null",
    ),
    (
        [{**RECIPE, "node_0": {"op": "linear", "input": [["x"]]}}],
        "recipe 0: node 'node_0': input.0: expected a node name (a string), got a list",
    ),
    (
        [{**RECIPE, "node_0": {"op": "linear", "input": [True]}}],
        "recipe 0: node 'node_0': input.0: expected a node name (a string), got a boolean",
    ),
    (
        [{**RECIPE, "node_0": {"op": "linear", "input": {"x": 1}}}],
        "recipe 0: node 'node_0': input: expected a list of node names, got an object",
    ),
    (
        [{**RECIPE, "node_0": 7}],
        "recipe 0: node 'node_0': expected an object with 'op' and 'input', got a number",
    ),
    ([RECIPE, [RECIPE]], "recipe 1: recipe: expected a JSON object of nodes, got a list"),
    ({"0": RECIPE}, "expected a JSON list of recipes, got an object"),
    (
        [{**RECIPE, "node\u202e": {"op": "linear", "input": ["x"]}}],
        "recipe 0: nodes: node 'node\\u202e': name must be letters",
    ),
    ([], "no recipes to import"),
]


@pytest.mark.parametrize(("recipes", "reason"), RECIPE_CASES)
def test_bad_recipes_are_refused_naming_recipe_and_field(tmp_path: Path, recipes: Any, reason: str) -> None:
    result, out = import_recipes(tmp_path, recipes)
    assert_one_line_error(result, 1, "recipes.json", reason)
    assert not out.exists()


def test_a_file_name_with_control_characters_stays_out_of_descriptions(tmp_path: Path) -> None:
    path = write_json(tmp_path / "r\x1b[2J.json", [RECIPE])
    (graph,) = load_nasbench_recipes(path)
    assert graph.description == "NAS-Bench-NLP recipe 0 of 'r\\x1b[2J.json'."
    assert CellGraph.from_json(graph.to_json()) == graph


def test_a_recipe_over_the_node_limit_writes_nothing(tmp_path: Path) -> None:
    big = {f"node_{i}": {"op": "activation_tanh", "input": [f"node_{i - 1}"]} for i in range(1, 5000)}
    recipe = {"node_0": {"op": "linear", "input": ["x", "h_prev_0"]}, **big}
    recipe["h_new_0"] = {"op": "activation_tanh", "input": ["node_4999"]}
    result, out = import_recipes(tmp_path, [RECIPE, recipe])
    assert_one_line_error(result, 1, f"recipe 1: recipe: expected at most {MAX_NODES} nodes, got 5001")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["recipes.json"]


def test_a_chain_recipe_at_the_limit_imports(tmp_path: Path) -> None:
    nodes = {"node_0": {"op": "linear", "input": ["x", "h_prev_0"]}}
    nodes |= {
        f"node_{i}": {"op": "activation_sigm", "input": [f"node_{i - 1}"]} for i in range(1, MAX_NODES - 1)
    }
    recipe = dict(
        reversed([*nodes.items(), ("h_new_0", {"op": "linear", "input": [f"node_{MAX_NODES - 2}"]})])
    )
    result, out = import_recipes(tmp_path, [recipe])
    assert result.exit_code == 0, result.output
    assert len(CellGraph.load(out / "recipe-000.json").nodes) == MAX_NODES
    assert [p.name for p in out.iterdir()] == ["recipe-000.json"]  # no temporary file left


@PROPERTY
@given(
    index=st.integers(0, 1),
    node=st.sampled_from(["node_0", "h_new_0"]),
    field=st.sampled_from(["op", "input"]),
    value=JSON_VALUES,
)
def test_any_wrong_json_type_in_a_recipe_is_one_line(index: int, node: str, field: str, value: Any) -> None:
    valid_op = isinstance(value, str) and value in NASBENCH_TO_OP
    names = isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)
    if (field == "op" and valid_op) or (field == "input" and names):
        return  # possibly a valid recipe; the property is about wrong types
    recipes = [RECIPE, RECIPE]
    recipes[index] = {**RECIPE, node: {**RECIPE[node], field: value}}
    with pytest.raises(CellGraphError) as info:
        from_recipes_text(json.dumps(recipes))
    message = str(info.value)
    assert message.startswith(f"recipes.json: recipe {index}: node {node!r}: ") and "\n" not in message, (
        message
    )


def from_recipes_text(text: str) -> Any:
    """:func:`load_nasbench_recipes` of a real file holding ``text``, the file named ``recipes.json``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recipes.json"
        path.write_text(text)
        try:
            return load_nasbench_recipes(path)
        except CellGraphError as exc:
            raise CellGraphError(str(exc).replace(str(path), "recipes.json")) from None


@PROPERTY
@given(field=st.sampled_from(["name", "description", "num_states", "nodes", "outputs"]), value=JSON_VALUES)
def test_any_wrong_json_type_in_a_cell_is_one_line(field: str, value: Any) -> None:
    data = {**TANH, field: value}
    try:
        graph = CellGraph.parse(data)
    except CellGraphError as exc:
        assert "\n" not in str(exc) and str(exc), str(exc)
        return
    assert field in ("name", "description") and getattr(graph, field) == value


# --- the output folder and usage --------------------------------------------------------------


def test_output_folder_problems_name_the_option(tmp_path: Path) -> None:
    path = write_json(tmp_path / "recipes.json", [RECIPE])
    a_file = tmp_path / "file"
    a_file.write_text("")
    result = invoke("cells", "import", path, "--from", "nasbench-nlp", "-o", a_file)
    assert_one_line_error(result, 1, f"--output: {a_file} exists and is not a directory")
    under_file = a_file / "sub"
    result = invoke("cells", "import", path, "--from", "nasbench-nlp", "-o", under_file)
    assert_one_line_error(result, 1, "--output: cannot write to")
    assert a_file.read_text() == ""
    too_long = tmp_path / "ok" / ("x" * 300) / "out"
    result = invoke("cells", "import", path, "--from", "nasbench-nlp", "-o", too_long)
    assert_one_line_error(result, 1, "--output: cannot", "File name too long")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    result = invoke("cells", "import", path, "--from", "nasbench-nlp", "-o", tmp_path / "loop" / "out")
    assert_one_line_error(result, 1, "--output: cannot write to", "Too many levels of symbolic links")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "loop", "recipes.json"]


def test_an_empty_or_unknown_cell_name_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("", "lstmm", "x" * 5000):
        assert_one_line_error(invoke("cells", "show", name), 1, f"{name!r} is neither a library cell")


def test_a_target_that_is_a_folder_is_refused_before_any_write(tmp_path: Path) -> None:
    path = write_json(tmp_path / "recipes.json", [RECIPE, RECIPE])
    out = tmp_path / "out"
    (out / "recipe-001.json").mkdir(parents=True)
    result = invoke("cells", "import", path, "--from", "nasbench-nlp", "-o", out, "--force")
    assert_one_line_error(result, 1, f"--output: {out / 'recipe-001.json'} exists and is not a regular file")
    assert sorted(p.name for p in out.iterdir()) == ["recipe-001.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_named_not_its_temporary_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "recipes.json", [RECIPE, RECIPE])
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        result = invoke("cells", "import", path, "--from", "nasbench-nlp", "-o", out)
        line = assert_one_line_error(result, 1, f"--output: cannot write to {out}: Permission denied")
        assert ".tmp" not in line and list(out.iterdir()) == []
    finally:
        out.chmod(0o700)


def test_existing_files_are_kept_without_force(tmp_path: Path) -> None:
    path = write_json(tmp_path / "recipes.json", [RECIPE, RECIPE])
    out = tmp_path / "out"
    out.mkdir()
    (out / "recipe-001.json").write_text("mine")
    result = invoke("cells", "import", path, "--from", "nasbench-nlp", "-o", out)
    assert_one_line_error(result, 1, "recipe-001.json already exists (1 of 2 files); use --force")
    assert sorted(p.name for p in out.iterdir()) == ["recipe-001.json"]
    assert (out / "recipe-001.json").read_text() == "mine"
