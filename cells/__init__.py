"""cells: the search space of recurrent cells.

Graph model, op set, library of known cells, canonical hashing, mutation, random cells,
compilation to PyTorch layers (lone, and batched for populations of same-shape members),
rendering and NAS-Bench-NLP import. Imports no Ray, Optuna, SQL or MLflow, and torch only
when a layer is built.

Example:
    >>> import torch
    >>> from cells import build_layer, library
    >>> layer = build_layer(library.get("lstm"), input_size=8, hidden_size=16)
    >>> out, (h, c) = layer(torch.randn(5, 3, 8))
    >>> tuple(out.shape), tuple(h.shape)
    ((5, 3, 16), (1, 3, 16))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cells import _library as library
from cells._errors import CellsearchError, ValidationProblem, first_line, join_problems, validation_problems
from cells._graph import MAX_CELL_FILE_BYTES, MAX_INPUTS, MAX_NODES, CellGraph, CellGraphError, Node
from cells._hash import canonical_form, canonical_hash
from cells._lazy import lazy_exports
from cells._nasbench import (
    MAX_RECIPE_FILE_BYTES,
    dump_nasbench_recipes,
    from_nasbench_recipe,
    load_nasbench_recipes,
    to_nasbench_recipe,
)
from cells._ops import OPS, OpSpec
from cells._plain_text import clip, control_character_problem
from cells._render import equation_legend, render_svg, to_dot, to_equations, to_markdown, weight_letter
from cells._strict_json import MAX_JSON_DEPTH, StrictJSONError, load_strict_json
from cells._strict_yaml import MAX_YAML_DEPTH, MAX_YAML_VALUES, StrictYAMLError, load_strict_yaml
from cells._text_enum import TextEnum
from cells._user_files import UserFileError, read_text_file

if TYPE_CHECKING:
    from cells._cli_failure import OneLineErrors, cli_failure
    from cells._compile import CellLayer, build_layer
    from cells._compile_cache import CompileCacheInfo, clear_compile_cache, compile_cache_info
    from cells._compile_population import PopulationLayer, build_population_layer
    from cells._console import table_console
    from cells._diagram import diagram_svg, draw_diagram
    from cells._dropout import dropout, dropout_mask
    from cells._mutation import mutate
    from cells._random_cell import random_cell
    from cells._reference import ReferenceLayer

# The layers import torch, the mutations NumPy and the diagrams matplotlib: loaded on first
# use (PEP 562), so that reading graphs (the results database, `cellsearch cells show`) stays quick.
__getattr__ = lazy_exports(
    globals(),
    {
        "cells._cli_failure": ("OneLineErrors", "cli_failure"),
        "cells._compile": ("CellLayer", "build_layer"),
        "cells._console": ("table_console",),
        "cells._compile_cache": ("CompileCacheInfo", "clear_compile_cache", "compile_cache_info"),
        "cells._compile_population": ("PopulationLayer", "build_population_layer"),
        "cells._diagram": ("diagram_svg", "draw_diagram"),
        "cells._dropout": ("dropout", "dropout_mask"),
        "cells._mutation": ("mutate",),
        "cells._random_cell": ("random_cell",),
        "cells._reference": ("ReferenceLayer",),
    },
)


__all__ = [
    "MAX_CELL_FILE_BYTES",
    "MAX_INPUTS",
    "MAX_JSON_DEPTH",
    "MAX_NODES",
    "MAX_RECIPE_FILE_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES",
    "OPS",
    "CellGraph",
    "CellGraphError",
    "CellLayer",
    "CellsearchError",
    "CompileCacheInfo",
    "Node",
    "OneLineErrors",
    "OpSpec",
    "PopulationLayer",
    "ReferenceLayer",
    "StrictJSONError",
    "StrictYAMLError",
    "TextEnum",
    "UserFileError",
    "ValidationProblem",
    "build_layer",
    "build_population_layer",
    "canonical_form",
    "canonical_hash",
    "clear_compile_cache",
    "cli_failure",
    "clip",
    "compile_cache_info",
    "control_character_problem",
    "diagram_svg",
    "draw_diagram",
    "dropout",
    "dropout_mask",
    "dump_nasbench_recipes",
    "equation_legend",
    "first_line",
    "from_nasbench_recipe",
    "join_problems",
    "lazy_exports",
    "library",
    "load_nasbench_recipes",
    "load_strict_json",
    "load_strict_yaml",
    "mutate",
    "random_cell",
    "read_text_file",
    "render_svg",
    "table_console",
    "to_dot",
    "to_equations",
    "to_markdown",
    "to_nasbench_recipe",
    "validation_problems",
    "weight_letter",
]
