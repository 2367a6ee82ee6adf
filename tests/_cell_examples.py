"""Cells that several test modules build on."""

from __future__ import annotations

from typing import Any

WRITES_C: dict[str, Any] = {
    "name": "writes-c",
    "num_states": 2,
    "nodes": [
        {"name": "a", "op": "linear", "inputs": ["x", "h_prev_0"]},
        {"name": "h_new", "op": "tanh", "inputs": ["a"]},
        {"name": "c_new", "op": "sigmoid", "inputs": ["a"]},
    ],
    "outputs": ["h_new", "c_new"],
}
"""Two states declared, ``c`` written but never read: the cell carries one state."""
