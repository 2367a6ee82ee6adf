"""The cell graph model: named nodes with an op, ordered inputs and attributes.

A cell maps ``(x, h_prev_0, ..., h_prev_{k-1})`` to ``(h_new_0, ..., h_new_{k-1})``; state 0
is the layer's output. The JSON format is documented in ``docs/cell-format.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cells._errors import CellsearchError, ValidationProblem, join_problems, validation_problems
from cells._ops import MAX_STATES, OPS
from cells._plain_text import control_character_problem
from cells._strict_json import StrictJSONError, load_strict_json
from cells._user_files import UserFileError, read_text_file

INPUT_X = "x"

MAX_NODES = 1000
"""The most nodes a cell graph may have.

The library cells have at most about 20 nodes, NAS-Bench-NLP recipes at most about 25, and
mutation and random cells stay near their ``max_nodes`` (tens): 1000 leaves room for any real
cell while bounding the work a hostile file can ask for (hashing refines labels once per
level, so its cost grows with the square of the node count in the worst case).
"""

MAX_INPUTS = 64
"""The most inputs one node may have. Real cells read at most a handful per node (a ``linear``
of ``x`` and three states, a sum of a few terms); the compiled step writes a node as one
expression, which Python cannot compile for thousands of operands."""

MAX_CELL_FILE_BYTES = 4 * 1024 * 1024
"""The largest cell JSON file read (4 MiB): a cell of :data:`MAX_NODES` nodes, pretty-printed
with long names and tags, is well under 1 MiB."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CellGraphError(CellsearchError, ValueError):
    """A cell graph is malformed; the message names the node and the reason."""


def state_input(i: int) -> str:
    """Name of the i-th previous state, e.g. ``h_prev_0``."""
    return f"h_prev_{i}"


def state_output(i: int) -> str:
    """Name of the i-th new state, e.g. ``h_new_0``."""
    return f"h_new_{i}"


class Node(BaseModel):
    """One computation: ``op`` applied to ``inputs`` (node or input names), with ``attrs``.

    ``tag`` is a free-form role label such as ``forget_gate``; it does not change what the
    cell computes and is not part of the canonical hash. Workers use ``forget_gate`` to
    apply the forget-bias hyperparameter.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    op: str
    inputs: tuple[str, ...]
    """Node or input names, in order; at most :data:`MAX_INPUTS`."""
    # Strict: ``true`` or ``"1"`` for a number is a mistake, not 1.0 (an int is still a number).
    attrs: dict[str, StrictFloat] = Field(default_factory=dict)
    tag: str | None = None

    @field_validator("inputs", mode="before")
    @classmethod
    def _not_too_many_inputs(cls, inputs: Any) -> Any:
        if isinstance(inputs, list | tuple) and len(inputs) > MAX_INPUTS:
            raise ValueError(f"expected at most {MAX_INPUTS} inputs, got {len(inputs)}")
        return inputs

    @field_validator("tag")
    @classmethod
    def _plain_tag(cls, tag: str | None) -> str | None:
        problem = None if tag is None else control_character_problem(tag)
        if problem is not None:
            raise ValueError(problem)
        return tag


class CellGraph(BaseModel):
    """A recurrent cell as a computation graph.

    Validation refuses cycles, unknown ops, wrong arity, undefined inputs, missing outputs
    and attributes out of range, naming the node and the reason. Nodes that reach no
    output are pruned.

    Example:
        >>> g = CellGraph.model_validate({
        ...     "name": "tanh", "num_states": 1,
        ...     "nodes": [
        ...         {"name": "a", "op": "linear", "inputs": ["x", "h_prev_0"]},
        ...         {"name": "h", "op": "tanh", "inputs": ["a"]},
        ...     ],
        ...     "outputs": ["h"],
        ... })
        >>> [n.name for n in g.nodes]
        ['a', 'h']
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "cell"
    description: str = ""
    # Strict: ``true`` or ``"1"`` is refused rather than read as 1.
    num_states: StrictInt = Field(ge=1, le=MAX_STATES)
    nodes: tuple[Node, ...]
    """At most :data:`MAX_NODES`, counted before any node is read."""
    outputs: tuple[str, ...]
    """``outputs[i]`` is the node (or input) whose value becomes ``h_new_i``."""

    @model_validator(mode="before")
    @classmethod
    def _not_too_many_nodes(cls, data: Any) -> Any:
        # Before pydantic reads the nodes one by one: a huge graph is refused from its length.
        nodes = data.get("nodes") if isinstance(data, dict) else None
        if isinstance(nodes, list | tuple) and len(nodes) > MAX_NODES:
            raise CellGraphError(f"nodes: expected at most {MAX_NODES} nodes, got {len(nodes)}")
        return data

    @field_validator("name", "description")
    @classmethod
    def _plain_text(cls, text: str, info: ValidationInfo) -> str:
        problem = control_character_problem(text, multiline=info.field_name == "description")
        if problem is not None:
            raise ValueError(problem)
        return text

    @field_validator("nodes")
    @classmethod
    def _names_unique(cls, nodes: tuple[Node, ...]) -> tuple[Node, ...]:
        seen: set[str] = set()
        for node in nodes:
            if node.name in seen:
                raise CellGraphError(f"node {node.name!r}: name used twice")
            if node.name == INPUT_X or node.name.startswith("h_prev_"):
                raise CellGraphError(f"node {node.name!r}: name is reserved for an input")
            # Names become parameter names ("{node}.weight.{input}") and code identifiers.
            if not _NAME.fullmatch(node.name) or "__" in node.name:
                raise CellGraphError(
                    f"node {node.name!r}: name must be letters, digits and single underscores, "
                    "not starting with a digit"
                )
            seen.add(node.name)
        return nodes

    @model_validator(mode="after")
    def _check_and_prune(self) -> CellGraph:
        inputs = self.input_names
        by_name = {n.name: n for n in self.nodes}
        for node in self.nodes:
            _check_node(node, inputs, by_name)
        if len(self.outputs) != self.num_states:
            raise CellGraphError(
                f"outputs: expected {self.num_states} (one per state, h_new_0..h_new_"
                f"{self.num_states - 1}), got {len(self.outputs)}"
            )
        for i, out in enumerate(self.outputs):
            if out not in by_name and out not in inputs:
                raise CellGraphError(f"output {state_output(i)}: refers to undefined node {out!r}")
        order = _topological_order(self.nodes, inputs)
        live = _reachable(self.outputs, by_name)
        pruned = tuple(by_name[name] for name in order if name in live)
        object.__setattr__(self, "nodes", pruned)
        return self

    @property
    def input_names(self) -> tuple[str, ...]:
        """``("x", "h_prev_0", ...)``."""
        return (INPUT_X, *(state_input(i) for i in range(self.num_states)))

    @property
    def states_read(self) -> tuple[int, ...]:
        """The previous states the cell reads (``i`` of each ``h_prev_i`` a node takes, or an
        output other than ``h_new_i`` passes on), in order. A state written but never read is
        not carried from one step to the next: it is not counted as the cell's state.

        Example:
            >>> g = CellGraph.parse({"num_states": 2, "outputs": ["h", "c"], "nodes": [
            ...     {"name": "h", "op": "tanh", "inputs": ["h_prev_0"]},
            ...     {"name": "c", "op": "sigmoid", "inputs": ["x"]}]})
            >>> g.num_states, g.states_read
            (2, (0,))
        """
        read = {src for node in self.nodes for src in node.inputs}
        read.update(out for i, out in enumerate(self.outputs) if out != state_input(i))
        return tuple(i for i in range(self.num_states) if state_input(i) in read)

    @cached_property
    def node_map(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    @property
    def requires_input_equals_hidden(self) -> bool:
        """True when ``x`` feeds a node other than ``linear`` (or is an output itself).

        Such a cell only works when input size equals hidden size.
        """
        if INPUT_X in self.outputs:
            return True
        return any(n.op != "linear" and INPUT_X in n.inputs for n in self.nodes)

    def op_counts(self) -> dict[str, int]:
        """How many nodes use each op, e.g. ``{"linear": 4, "sigmoid": 3, ...}``."""
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items()))

    def __iter__(self) -> Iterator[Node]:  # type: ignore[override]
        return iter(self.nodes)

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent, exclude_defaults=False)

    @classmethod
    def from_json(cls, text: str, source: str = "cell JSON") -> CellGraph:
        """Parse JSON text (named ``source`` in messages) strictly (see
        :func:`~cells.load_strict_json`); malformed JSON and invalid graphs raise
        :class:`CellGraphError`."""
        try:
            data = load_strict_json(text, source)
        except StrictJSONError as exc:
            raise CellGraphError(str(exc)) from None
        return cls.parse(data)

    @classmethod
    def parse(cls, data: Any) -> CellGraph:
        """Validate a mapping, turning pydantic's errors into one :class:`CellGraphError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise CellGraphError(_format_validation_error(exc, data)) from None

    @classmethod
    def load(cls, path: str | Path) -> CellGraph:
        """Read a cell graph from a JSON file: a regular UTF-8 file of at most
        :data:`MAX_CELL_FILE_BYTES`; every problem raises :class:`CellGraphError` naming the file."""
        try:
            text = read_text_file(path, what="cell file", max_bytes=MAX_CELL_FILE_BYTES)
        except UserFileError as exc:
            raise CellGraphError(str(exc)) from None
        try:
            data = load_strict_json(text, str(path))
        except StrictJSONError as exc:
            raise CellGraphError(str(exc)) from None
        try:
            return cls.parse(data)
        except CellGraphError as exc:
            raise CellGraphError(f"{path}: {exc}") from None

    def with_name(self, name: str) -> CellGraph:
        return self.model_copy(update={"name": name})


def _format_validation_error(exc: ValidationError, data: Any = None) -> str:
    return join_problems((_where(problem, data), problem.message) for problem in validation_problems(exc))


def _where(problem: ValidationProblem, data: Any) -> str:
    """``nodes.3.inputs`` -> ``node 'f_lin' (nodes.3).inputs``, so the message names the node."""
    node_name = _node_name_at(data, problem.loc)
    if node_name is None:
        return problem.path
    index = problem.loc[1]
    return f"node {node_name!r} (nodes.{index})" + problem.path.removeprefix(f"nodes.{index}")


def _node_name_at(data: Any, loc: tuple[int | str, ...]) -> str | None:
    if len(loc) < 2 or loc[0] != "nodes" or not isinstance(loc[1], int) or not isinstance(data, dict):
        return None
    nodes = data.get("nodes")
    if not isinstance(nodes, list | tuple) or not 0 <= loc[1] < len(nodes):
        return None
    node = nodes[loc[1]]
    name = node.get("name") if isinstance(node, dict) else getattr(node, "name", None)
    return name if isinstance(name, str) and name else None


def _check_node(node: Node, inputs: tuple[str, ...], by_name: dict[str, Node]) -> None:
    spec = OPS.get(node.op)
    if spec is None:
        raise CellGraphError(f"node {node.name!r}: unknown op {node.op!r} (known: {', '.join(OPS)})")
    n = len(node.inputs)
    if n < spec.min_arity or (spec.max_arity is not None and n > spec.max_arity):
        want = (
            f"exactly {spec.min_arity}"
            if spec.max_arity == spec.min_arity
            else f"at least {spec.min_arity}"
            if spec.max_arity is None
            else f"{spec.min_arity} to {spec.max_arity}"
        )
        raise CellGraphError(f"node {node.name!r}: op {node.op!r} takes {want} inputs, got {n}")
    for name in node.inputs:
        if name not in by_name and name not in inputs:
            raise CellGraphError(f"node {node.name!r}: input {name!r} is not defined")
    if node.op == "linear" and len(set(node.inputs)) != n:
        raise CellGraphError(f"node {node.name!r}: linear reads the same input twice")
    for key, value in node.attrs.items():
        attr = spec.attrs.get(key)
        if attr is None:
            raise CellGraphError(f"node {node.name!r}: op {node.op!r} has no attribute {key!r}")
        if not (attr.low <= value <= attr.high):
            raise CellGraphError(
                f"node {node.name!r}: attribute {key}={value} out of range [{attr.low}, {attr.high}]"
            )


def _topological_order(nodes: tuple[Node, ...], inputs: tuple[str, ...]) -> list[str]:
    """Node names in dependency order (stable: keeps file order where free); refuses cycles.

    A depth-first post-order walk with an explicit stack (a chain as deep as
    :data:`MAX_NODES`, listed outputs first, would overflow Python's call stack).
    """
    by_name = {n.name: n for n in nodes}
    done: set[str] = set()
    order: list[str] = []
    for node in nodes:
        if node.name in done:
            continue
        # Each frame is (name, index of the next input to visit); `path` mirrors the frames.
        stack: list[tuple[str, int]] = [(node.name, 0)]
        path: list[str] = [node.name]
        on_path: set[str] = {node.name}
        while stack:
            name, i = stack[-1]
            children = by_name[name].inputs
            if i == len(children):
                stack.pop()
                path.pop()
                on_path.discard(name)
                done.add(name)
                order.append(name)
                continue
            stack[-1] = (name, i + 1)
            child = children[i]
            if child in inputs or child in done:
                continue
            if child in on_path:
                cycle = [*path[path.index(child) :], child]
                raise CellGraphError(f"node {child!r}: cycle {' -> '.join(cycle)}")
            stack.append((child, 0))
            path.append(child)
            on_path.add(child)
    return order


def _reachable(outputs: tuple[str, ...], by_name: dict[str, Node]) -> set[str]:
    live: set[str] = set()
    stack = [o for o in outputs if o in by_name]
    while stack:
        name = stack.pop()
        if name in live:
            continue
        live.add(name)
        stack.extend(i for i in by_name[name].inputs if i in by_name)
    return live
