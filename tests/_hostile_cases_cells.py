"""Hostile cells, recipes and search spaces: coerced types, repeated keys, control characters
(class 10) and recipes that used to give tracebacks (class 9)."""

from __future__ import annotations

import json

from _hostile_cases_files import EVAL_SPACE, IMPORT, SHOW, cell, node_attrs, recipe_chain
from _hostile_cases_jobs import LAUNCH, job_text
from _hostile_runner import Case

_OP_LIST = [
    {
        "node_0": {"op": ["linear"], "input": ["x", "h_prev_0"]},
        "h_new_0": {"op": "activation_tanh", "input": ["node_0"]},
    }
]

CLASS_10_CELLS = [
    Case(
        "c10-cell-num-states-string",
        "10",
        SHOW,
        code=(1, 2),
        words=("num_states",),
        files={"cell.json": cell(num_states="1")},
    ),
    Case(
        "c10-cell-num-states-true",
        "10",
        SHOW,
        code=(1, 2),
        words=("num_states",),
        files={"cell.json": cell(num_states=True)},
    ),
    Case(
        "c10-cell-num-states-float",
        "10",
        SHOW,
        code=(1, 2),
        words=("num_states",),
        files={"cell.json": cell(num_states=1.0)},
    ),
    Case(
        "c10-cell-alpha-true",
        "10",
        SHOW,
        code=(1, 2),
        words=("alpha",),
        files={"cell.json": node_attrs({"alpha": True})},
    ),
    Case(
        "c10-cell-alpha-string",
        "10",
        SHOW,
        code=(1, 2),
        words=("alpha",),
        files={"cell.json": node_attrs({"alpha": "0.5"})},
    ),
    Case(
        "c10-cell-alpha-nan",
        "10",
        SHOW,
        code=(1, 2),
        words=("cell.json",),
        files={"cell.json": node_attrs({"alpha": "NaN"}).replace('"NaN"', "NaN")},
    ),
    Case(
        "c10-cell-slope-inf",
        "10",
        SHOW,
        code=(1, 2),
        words=("cell.json",),
        files={"cell.json": node_attrs({"negative_slope": 1}, "leaky_relu").replace(": 1}", ": Infinity}")},
    ),
    Case(
        "c10-cell-duplicate-key",
        "10",
        SHOW,
        code=(1, 2),
        words=("name",),
        files={"cell.json": '{"name": "a", "name": "b",' + cell()[1:]},
    ),
    Case(
        "c10-cell-duplicate-node-key",
        "10",
        SHOW,
        code=(1, 2),
        words=("op",),
        files={"cell.json": cell().replace('"op": "tanh"', '"op": "tanh", "op": "sigmoid"')},
    ),
    Case(
        "c10-cell-name-rlo",
        "10",
        SHOW,
        code=(1, 2),
        words=("name",),
        files={"cell.json": cell(name="a\u202eb")},
    ),
    Case(
        "c10-cell-node-name-nul",
        "10",
        SHOW,
        code=(1, 2),
        words=("cell.json",),
        files={"cell.json": cell().replace('"lin"', '"l\\u0000in"')},
    ),
    Case(
        "c10-cell-inputs-string",
        "10",
        SHOW,
        code=(1, 2),
        words=("inputs",),
        files={"cell.json": cell().replace('["lin"]', '"lin"')},
    ),
    Case(
        "c10-cell-in-job-duplicate-key",
        "10",
        LAUNCH,
        code=(1, 2),
        words=("c.json",),
        files={
            "job.yaml": job_text(("strategy.cells", ["c.json"])),
            "c.json": '{"name": "a", "name": "b",' + cell()[1:],
        },
    ),
    Case(
        "c10-recipe-duplicate-key",
        "10",
        IMPORT,
        code=(1, 2),
        words=("node_0",),
        files={
            "recipes.json": '[{"node_0": {"op": "linear", "input": ["x", "h_prev_0"]}, '
            '"node_0": {"op": "linear", "input": ["x"]}, "h_new_0": {"op": "activation_tanh", '
            '"input": ["node_0"]}}]'
        },
    ),
    Case(
        "c10-space-duplicate-key",
        "10",
        EVAL_SPACE,
        code=(1, 2),
        words=("num_layers",),
        files={"space.yaml": "num_layers: 1\nnum_layers: 2\n"},
    ),
    Case(
        "c10-space-hidden-true",
        "10",
        EVAL_SPACE,
        code=2,
        words=("hidden_size",),
        files={"space.yaml": "hidden_size: true\n"},
    ),
]

CLASS_9_FILES = [
    Case(
        "c9-recipe-op-list",
        "9",
        IMPORT,
        code=(1, 2),
        words=("node_0",),
        files={"recipes.json": json.dumps(_OP_LIST)},
    ),
    Case(
        "c9-recipe-op-null",
        "9",
        IMPORT,
        code=(1, 2),
        words=("node_0",),
        files={"recipes.json": json.dumps(_OP_LIST).replace('["linear"]', "null")},
    ),
    Case(
        "c9-recipe-input-string",
        "9",
        IMPORT,
        code=(1, 2),
        words=("h_new_0",),
        files={
            "recipes.json": json.dumps(_OP_LIST)
            .replace('["linear"]', '"linear"')
            .replace('["node_0"]', '"node_0"')
        },
    ),
    Case(
        "c9-recipe-not-list",
        "9",
        IMPORT,
        code=(1, 2),
        words=("recipes.json",),
        files={"recipes.json": "[1, 2]"},
    ),
    Case(
        "c9-recipe-node-not-object",
        "9",
        IMPORT,
        code=(1, 2),
        words=("node_0",),
        files={"recipes.json": '[{"node_0": 5}]'},
    ),
    Case(
        "c9-recipe-nan",
        "9",
        IMPORT,
        code=(1, 2),
        words=("recipes.json",),
        files={"recipes.json": '[{"node_0": NaN}]'},
    ),
    Case(
        "c9-recipe-output-exists",
        "9",
        IMPORT,
        code=(1, 2),
        words=("-o",),
        files={"recipes.json": json.dumps(recipe_chain(3)), "out": "a regular file, not a folder"},
    ),
]

CASES = CLASS_10_CELLS + CLASS_9_FILES
