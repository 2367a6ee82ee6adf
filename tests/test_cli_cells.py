"""``cellsearch cells list | show | import`` through the real command-line app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _cell_examples import WRITES_C
from _test_data import TEST_DATA, require_test_data
from typer.testing import CliRunner, Result

from cells import CellGraph, canonical_hash, library
from cells._cli import parameter_count
from cells._nasbench import load_nasbench_recipes
from cells._reference import ReferenceLayer
from cellsearch._cli import app

RECIPES = TEST_DATA / "nasbench-nlp" / "recipes_example.json"

runner = CliRunner()


@pytest.fixture()
def recipes_file() -> Path:
    require_test_data("nasbench-nlp/recipes_example.json")
    return RECIPES


def invoke(*args: str | Path) -> Result:
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


# --- list -------------------------------------------------------------------------------------------


def test_list_json_has_every_library_cell() -> None:
    result = invoke("cells", "list", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == list(library.names())
    assert len(rows) == 13
    by_name = {r["name"]: r for r in rows}
    lstm = by_name["lstm"]
    assert lstm["num_states"] == 2 and lstm["num_nodes"] == 13 and lstm["num_linear"] == 4
    assert lstm["params_h128"] == 4 * (2 * 128 * 128 + 128)
    assert lstm["hash"] == canonical_hash(library.get("lstm"))
    assert lstm["description"] == library.get("lstm").description
    assert by_name["mut1"]["input_equals_hidden"] is True and lstm["input_equals_hidden"] is False
    assert by_name["gru"]["num_states"] == 1 and by_name["tanh"]["num_nodes"] == 2


def test_list_table_shows_names_and_parameter_counts() -> None:
    result = invoke("cells", "list")
    assert result.exit_code == 0, result.output
    for name in library.names():
        assert f" {name} " in result.stdout
    assert "131,584" in result.stdout  # lstm at hidden 128
    assert "params@128" in result.stdout


@pytest.mark.parametrize("name", ["lstm", "lstm-peephole", "gru", "mut1"])
def test_parameter_count_matches_the_reference_layer(name: str) -> None:
    graph = library.get(name)
    layer = ReferenceLayer(graph, input_size=16, hidden_size=16)
    assert parameter_count(graph, 16, 16) == sum(p.numel() for p in layer.parameters())
    layer = ReferenceLayer(graph, input_size=5, hidden_size=7)
    if not graph.requires_input_equals_hidden:
        assert parameter_count(graph, 5, 7) == sum(p.numel() for p in layer.parameters())


# --- show -------------------------------------------------------------------------------------------


def test_show_text() -> None:
    result = invoke("cells", "show", "lstm")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "lstm: LSTM (PyTorch LSTMCell layout)."
    assert lines[1] == f"states 2, nodes 13, hash {canonical_hash(library.get('lstm'))}"
    assert lines[-3:] == [
        "c' = f ⊙ c + i ⊙ g",
        "h' = o ⊙ tanh(c')",
        "W: weights on the input x, U: on a previous state, b: biases; h', c' are the new h, c",
    ]
    assert "i = σ(W_i x + U_i h + b_i)" in lines
    assert "input size must equal hidden size" in invoke("cells", "show", "mut2").stdout


def test_show_other_formats() -> None:
    latex = invoke("cells", "show", "gru", "--format", "latex")
    assert latex.exit_code == 0
    assert latex.stdout.startswith("\\begin{align*}\nr &= \\sigma(W_{r} x + U_{r} h + b_{r}) \\\\\n")
    assert latex.stdout.rstrip().endswith("h' &= z \\odot h + (1 - z) \\odot n\n\\end{align*}")
    dot = invoke("cells", "show", "gru", "-f", "dot")
    assert dot.stdout.startswith('digraph "gru" {') and dot.stdout.rstrip().endswith("}")
    md = invoke("cells", "show", "gru", "-f", "markdown")
    assert md.stdout.startswith("### gru\n") and "$$\n\\begin{aligned}" in md.stdout
    as_json = invoke("cells", "show", "gru", "-f", "json")
    assert canonical_hash(CellGraph.from_json(as_json.stdout)) == canonical_hash(library.get("gru"))


def test_show_a_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(library.get("tanh").with_name("mine").to_json())
    result = invoke("cells", "show", path)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("mine: ")
    assert result.stdout.rstrip().splitlines()[-2] == "h' = tanh(W_h x + U_h h + b_h)"


def test_show_counts_the_states_the_cell_reads(tmp_path: Path) -> None:
    """A cell declaring c but never reading it carries one state, and says so."""
    path = tmp_path / "writes-c.json"
    path.write_text(json.dumps(WRITES_C))
    result = invoke("cells", "show", path)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("states 1 (2 declared, 1 never read), nodes 3, hash ")


def test_show_errors_are_one_clear_line(tmp_path: Path) -> None:
    result = invoke("cells", "show", "no-such-cell")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "error: 'no-such-cell' is neither a library cell" in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {"num_states": 1, "nodes": [{"name": "a", "op": "conv", "inputs": ["x"]}], "outputs": ["a"]}
        )
    )
    result = invoke("cells", "show", bad)
    assert result.exit_code == 1
    assert "node 'a': unknown op 'conv'" in result.stderr and str(bad) in result.stderr
    result = invoke("cells", "show", "lstm", "--format", "pdf")
    assert result.exit_code == 2 and "pdf" in result.stderr


# --- import -----------------------------------------------------------------------------------------


def test_import_writes_one_cell_per_recipe(recipes_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "imported"
    result = invoke("cells", "import", recipes_file, "--from", "nasbench-nlp", "-o", out)
    assert result.exit_code == 0, result.output
    expected = load_nasbench_recipes(recipes_file)
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"recipe-{i:03d}.json" for i in range(10)]
    for path, graph in zip(files, expected, strict=True):
        written = CellGraph.load(path)
        assert written.name == path.stem == graph.name
        assert canonical_hash(written) == canonical_hash(graph)
        assert written.to_json() == graph.to_json()
    lines = result.stdout.splitlines()
    assert lines[0] == f"imported 10 cells from {recipes_file} into {out}/"
    assert any(
        line.startswith("  recipe-002.json") and "same cell as library gru-cho" in line for line in lines
    )
    assert any(line.startswith("  recipe-003.json") and "same cell as library tanh" in line for line in lines)
    assert lines[-1] == "9 distinct cells"
    # The written cells are usable by the other commands.
    shown = invoke("cells", "show", files[2])
    assert "h' = z_act ⊙ h + (1 − z_act) ⊙ h_tilde_act" in shown.stdout


def test_import_of_an_invalid_file_writes_nothing(recipes_file: Path, tmp_path: Path) -> None:
    recipes = json.loads(recipes_file.read_text())
    recipes[5]["node_0"]["op"] = "convolution"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(recipes))
    out = tmp_path / "out"
    result = invoke("cells", "import", bad, "--from", "nasbench-nlp", "-o", out)
    assert result.exit_code == 1
    assert "recipe 5: node 'node_0': unknown NAS-Bench-NLP op 'convolution'" in result.stderr
    assert not out.exists()

    out.mkdir()
    for content in ("[{]", '{"h_new_0": {"op": "linear", "input": ["x"]}}', "[]"):
        bad.write_text(content)
        result = invoke("cells", "import", bad, "--from", "nasbench-nlp", "-o", out)
        assert result.exit_code == 1 and result.stderr.startswith("error: ")
        assert list(out.iterdir()) == []

    result = invoke("cells", "import", tmp_path / "missing.json", "--from", "nasbench-nlp", "-o", out)
    assert result.exit_code == 1 and "cannot read" in result.stderr


def test_import_refuses_unsupported_formats(recipes_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke("cells", "import", recipes_file, "--from", "onnx", "-o", out)
    assert result.exit_code == 2
    assert "--from: unsupported format 'onnx' (supported: nasbench-nlp)" in result.stderr
    assert not out.exists()
    missing_from = invoke("cells", "import", recipes_file, "-o", out)
    assert missing_from.exit_code == 2 and "--from" in missing_from.stderr


def test_import_does_not_overwrite_without_force(recipes_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "recipe-004.json").write_text("keep me")
    result = invoke("cells", "import", recipes_file, "--from", "nasbench-nlp", "-o", out)
    assert result.exit_code == 1 and "recipe-004.json already exists" in result.stderr
    assert [p.name for p in out.iterdir()] == ["recipe-004.json"]
    assert (out / "recipe-004.json").read_text() == "keep me"
    result = invoke("cells", "import", recipes_file, "--from", "nasbench-nlp", "-o", out, "--force")
    assert result.exit_code == 0, result.output
    assert len(list(out.iterdir())) == 10
    assert CellGraph.load(out / "recipe-004.json").name == "recipe-004"


def test_import_into_a_file_path_is_refused(recipes_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    shutil.copy(recipes_file, target)
    result = invoke("cells", "import", recipes_file, "--from", "nasbench-nlp", "-o", target)
    assert result.exit_code == 1 and "is not a directory" in result.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["cells", "show", "lstm", "--format", "pdf"], "--format"),
        (["cells", "list", "-f", "yaml"], "--format"),
        (["cells", "import", "r.json", "--from", "onnx", "-o", "out"], "--from"),
        (["cells", "import", "r.json", "--from", "nasbench-nlp"], "--output"),
        (["cells", "import", "r.json", "-o", "out"], "--from"),
        (["cells", "show"], "Missing argument"),
        (["cells", "show", "lstm", "--bogus", "9" * 40], "--bogus"),
    ],
)
def test_usage_errors_exit_2_naming_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], option: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert option in result.stderr
    assert list(tmp_path.iterdir()) == []
