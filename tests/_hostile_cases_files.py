"""Hostile files: not job files at all (class 4), large graphs and deep nesting (class 5), cells
and recipes with coerced types (class 10), each through ``launch``, ``cells show``,
``cells import`` and ``cells eval --space``. The big ones are generated when the case runs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _hostile_cases_jobs import EVAL, LAUNCH, Raw, job_text
from _hostile_runner import Case

TANH: dict[str, Any] = {
    "name": "tanh1",
    "num_states": 1,
    "nodes": [
        {"name": "lin", "op": "linear", "inputs": ["x", "h_prev_0"]},
        {"name": "h_new", "op": "tanh", "inputs": ["lin"]},
    ],
    "outputs": ["h_new"],
}


def chain(n: int, reverse: bool = False) -> dict[str, Any]:
    """A cell of ``n`` nodes in a chain (linear, then tanh after tanh), listed backwards if asked."""
    nodes = [{"name": "n0", "op": "linear", "inputs": ["x", "h_prev_0"]}]
    nodes += [{"name": f"n{i}", "op": "tanh", "inputs": [f"n{i - 1}"]} for i in range(1, n)]
    if reverse:
        nodes.reverse()
    return {"name": f"chain{n}", "num_states": 1, "nodes": nodes, "outputs": [f"n{n - 1}"]}


def recipe_chain(n: int) -> list[dict[str, Any]]:
    """A NAS-Bench-NLP recipe file of one recipe: a chain of ``n`` nodes ending in ``h_new_0``."""
    recipe: dict[str, Any] = {"node_0": {"op": "linear", "input": ["x", "h_prev_0"]}}
    for i in range(1, n - 1):
        recipe[f"node_{i}"] = {"op": "activation_tanh", "input": [f"node_{i - 1}"]}
    recipe["h_new_0"] = {"op": "activation_tanh", "input": [f"node_{n - 2}"]}
    return [recipe]


def json_file(data: Any) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_text(json.dumps(data))

    return make


def fifo(path: Path) -> None:
    os.mkfifo(path)


def link_to(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def big_file(size: int, line: bytes = b"# comment\n") -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with path.open("wb") as stream:
            stream.write(b"name: big\n")
            stream.write(line * (size // len(line)))

    return make


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def cell(**changes: Any) -> str:
    return json.dumps({**TANH, **changes}, ensure_ascii=False)


def node_attrs(attrs: Any, op: str = "scale") -> str:
    data = json.loads(json.dumps(TANH))
    data["nodes"].insert(1, {"name": "s", "op": op, "inputs": ["lin"], "attrs": attrs})
    data["nodes"][-1]["inputs"] = ["s"]
    return json.dumps(data)


_JOB_TEXT = job_text()
_UTF16_JOB = _JOB_TEXT.encode("utf-16")
_LATIN1_JOB = job_text(("description", "café")).encode("latin-1")
SHOW = ("cells", "show", "{tmp}/cell.json")
EVAL_SPACE = (*EVAL, "--space", "{tmp}/space.yaml")
IMPORT = ("cells", "import", "{tmp}/recipes.json", "--from", "nasbench-nlp", "-o", "{tmp}/out")
_SEED_JOB = job_text(("seed_cells", ["bad.json"]), ("strategy.cells", ["bad.json"]))


def _launch_file(case_id: str, content: Any, *words: str, code: Any = (1, 2)) -> Case:
    return Case(
        case_id,
        "4",
        ("launch", "{tmp}/job.yaml", "--no-mlflow", "--db", "sqlite:///{tmp}/r.db"),
        code=code,
        words=words or ("job.yaml",),
        files={"job.yaml": content},
    )


CLASS_4 = [
    Case(
        "c4-launch-dev-zero",
        "4",
        ("launch", "/dev/zero", "--no-mlflow", "--db", "sqlite:///{tmp}/r.db"),
        code=(1, 2),
        words=("/dev/zero",),
    ),
    _launch_file("c4-launch-fifo", fifo),
    _launch_file("c4-launch-link-to-dev-zero", link_to("/dev/zero")),
    _launch_file("c4-launch-link-to-dev-urandom", link_to("/dev/urandom")),
    _launch_file("c4-launch-utf16", _UTF16_JOB),
    _launch_file("c4-launch-latin1", _LATIN1_JOB),
    _launch_file("c4-launch-binary", bytes(range(256)) * 8),
    _launch_file("c4-launch-50mb", big_file(50 * 2**20)),
    _launch_file("c4-launch-directory", lambda p: p.mkdir()),
    _launch_file("c4-launch-dangling-link", link_to("/nonexistent/job.yaml")),
    Case(
        "c4-launch-missing",
        "4",
        ("launch", "{tmp}/nope.yaml", "--no-mlflow", "--db", "sqlite:///{tmp}/r.db"),
        code=(1, 2),
        words=("nope.yaml",),
    ),
    Case(
        "c4-launch-proc-file",
        "4",
        ("launch", "/proc/self/environ", "--no-mlflow", "--db", "sqlite:///{tmp}/r.db"),
        code=(1, 2),
        words=("/proc/self/environ",),
    ),
    Case("c4-show-cell-dev-zero", "4", ("cells", "show", "/dev/zero"), code=(1, 2), words=("/dev/zero",)),
    Case("c4-show-cell-fifo", "4", SHOW, code=(1, 2), words=("cell.json",), files={"cell.json": fifo}),
    Case(
        "c4-show-cell-utf16",
        "4",
        SHOW,
        code=(1, 2),
        words=("cell.json",),
        files={"cell.json": json.dumps(TANH).encode("utf-16")},
    ),
    Case(
        "c4-show-cell-latin1",
        "4",
        SHOW,
        code=(1, 2),
        words=("cell.json",),
        files={"cell.json": cell(description="café").encode("latin-1")},
    ),
    Case(
        "c4-show-cell-directory",
        "4",
        SHOW,
        code=(1, 2),
        words=("cell.json",),
        files={"cell.json": lambda p: p.mkdir()},
    ),
    Case(
        "c4-show-cell-30mb",
        "4",
        SHOW,
        code=(1, 2),
        words=("cell.json",),
        files={"cell.json": lambda p: p.write_text('{"name": "' + "x" * 30 * 2**20 + '"}')},
    ),
    Case(
        "c4-space-utf16",
        "4",
        EVAL_SPACE,
        code=(1, 2),
        words=("space.yaml",),
        files={"space.yaml": "num_layers: 1\n".encode("utf-16")},
    ),
    Case(
        "c4-space-latin1",
        "4",
        EVAL_SPACE,
        code=(1, 2),
        words=("space.yaml",),
        files={"space.yaml": "# café\nnum_layers: 1\n".encode("latin-1")},
    ),
    Case("c4-space-fifo", "4", EVAL_SPACE, code=(1, 2), words=("space.yaml",), files={"space.yaml": fifo}),
    Case(
        "c4-space-dev-zero",
        "4",
        EVAL_SPACE,
        code=(1, 2),
        words=("space.yaml",),
        files={"space.yaml": link_to("/dev/zero")},
    ),
    Case(
        "c4-import-utf16",
        "4",
        IMPORT,
        code=(1, 2),
        words=("recipes.json",),
        files={"recipes.json": json.dumps(recipe_chain(3)).encode("utf-16")},
    ),
    Case("c4-import-fifo", "4", IMPORT, code=(1, 2), words=("recipes.json",), files={"recipes.json": fifo}),
    Case(
        "c4-import-dev-zero",
        "4",
        IMPORT,
        code=(1, 2),
        words=("recipes.json",),
        files={"recipes.json": link_to("/dev/zero")},
    ),
    Case(
        "c4-seed-cell-dev-zero",
        "4",
        LAUNCH,
        code=(1, 2),
        words=("bad.json",),
        problems=2,
        files={"job.yaml": _SEED_JOB, "bad.json": link_to("/dev/zero")},
    ),
    Case(
        "c4-seed-cell-fifo",
        "4",
        LAUNCH,
        code=(1, 2),
        words=("bad.json",),
        problems=2,
        files={"job.yaml": _SEED_JOB, "bad.json": fifo},
    ),
]

_CHAIN_JOB = job_text(("strategy.cells", ["big.json"]))
_R = "(control: a valid cell under the node limit is shown)"

CLASS_5 = [
    Case(
        "c5-launch-chain-100k",
        "5",
        LAUNCH,
        words=("big.json",),
        files={"job.yaml": _CHAIN_JOB, "big.json": json_file(chain(100_000))},
    ),
    Case(
        "c5-show-chain-100k",
        "5",
        SHOW,
        code=(1, 2),
        words=("cell.json",),
        files={"cell.json": json_file(chain(100_000))},
    ),
    Case(
        "c5-show-reverse-chain-100k",
        "5",
        SHOW,
        code=(1, 2),
        words=("cell.json",),
        files={"cell.json": json_file(chain(100_000, reverse=True))},
    ),
    Case("c5-show-chain-300-text", "5", SHOW, code=0, files={"cell.json": json_file(chain(300))}, note=_R),
    *[
        Case(
            f"c5-show-chain-300-{fmt}",
            "5",
            (*SHOW, "-f", fmt),
            code=0,
            files={"cell.json": json_file(chain(300))},
            note=_R,
        )
        for fmt in ("latex", "markdown", "dot", "json")
    ],
    Case(
        "c5-show-reverse-chain-300",
        "5",
        SHOW,
        code=0,
        files={"cell.json": json_file(chain(300, True))},
        note=_R,
    ),
    Case(
        "c5-show-reverse-chain-1000",
        "5",
        SHOW,
        code=(0, 1, 2),
        files={"cell.json": json_file(chain(1000, True))},
        note="either shown or refused by the node limit, never a traceback",
    ),
    Case(
        "c5-show-deep-json-100k",
        "5",
        SHOW,
        code=(1, 2),
        words=("cell.json",),
        files={"cell.json": deep_json(100_000)},
    ),
    Case(
        "c5-show-deep-json-in-attrs",
        "5",
        SHOW,
        code=(1, 2),
        words=("cell.json",),
        files={"cell.json": node_attrs(json.loads("[" * 50 + "]" * 50))},
    ),
    Case(
        "c5-launch-deep-yaml-100k",
        "5",
        LAUNCH,
        code=(1, 2),
        words=("job.yaml",),
        files={"job.yaml": "name: " + "[" * 100_000 + "]" * 100_000 + "\n"},
    ),
    Case(
        "c5-launch-deep-yaml-mapping",
        "5",
        LAUNCH,
        code=(1, 2),
        words=("job.yaml",),
        files={"job.yaml": "a: " * 20_000 + "1\n"},
    ),
    Case(
        "c5-launch-seed-deep-json",
        "5",
        LAUNCH,
        code=(1, 2),
        words=("big.json",),
        files={"job.yaml": _CHAIN_JOB, "big.json": deep_json(100_000)},
    ),
    Case(
        "c5-space-deep-yaml",
        "5",
        EVAL_SPACE,
        code=(1, 2),
        words=("space.yaml",),
        files={"space.yaml": "num_layers: " + "[" * 100_000 + "]" * 100_000 + "\n"},
    ),
    Case(
        "c5-import-recipe-5000",
        "5",
        IMPORT,
        code=(1, 2),
        words=("recipes.json",),
        files={"recipes.json": json_file(recipe_chain(5000))},
    ),
    Case(
        "c5-import-recipe-100k",
        "5",
        IMPORT,
        code=(1, 2),
        words=("recipes.json",),
        files={"recipes.json": json_file(recipe_chain(100_000))},
    ),
    Case(
        "c5-import-deep-json",
        "5",
        IMPORT,
        code=(1, 2),
        words=("recipes.json",),
        files={"recipes.json": deep_json(100_000)},
    ),
    Case(
        "c5-import-recipe-300",
        "5",
        IMPORT,
        code=0,
        writes=True,
        files={"recipes.json": json_file(recipe_chain(300))},
        note="control: imported, one file written",
    ),
    Case(
        "c5-yaml-billion-laughs",
        "5",
        LAUNCH,
        words=("(yaml)",),
        files={
            "job.yaml": job_text(
                (
                    "description",
                    Raw(
                        "[&a [x,x,x,x,x,x,x,x,x], "
                        + ", ".join(
                            f"&{c} [{','.join(['*' + p] * 9)}]"
                            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
                        )
                        + "]"
                    ),
                )
            )
        },
    ),
]

CASES = CLASS_4 + CLASS_5
