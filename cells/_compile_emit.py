"""What the code generators share: op templates, tensor layouts and the line writer.

Generated code is a flat list of tensor calls; these helpers spell the pieces of it for one
sequence (``[T, B, n]`` buffers) or for a member-stacked population (``[T, P, B, n]``).
"""

from __future__ import annotations

from cells._compile_plan import NodeStep, Plan, Product

FORWARD_OPS = {
    "tanh": "torch.tanh({0})",
    "sigmoid": "torch.sigmoid({0})",
    "relu": "torch.relu({0})",
    "leaky_relu": "functional.leaky_relu({0}, {attr})",
    "one_minus": "torch.rsub({0}, 1.0)",
    "scale": "({0} * {attr})",
    "shift": "({0} + {attr})",
    "sub": "({0} - {1})",
    "blend": "torch.lerp({2}, {1}, {0})",  # blend(z, a, b) = b + z * (a - b)
}
INPLACE_OPS = {
    "tanh": "{0}.tanh_()",
    "sigmoid": "{0}.sigmoid_()",
    "relu": "{0}.relu_()",
    "leaky_relu": "functional.leaky_relu_({0}, {attr})",
    "one_minus": "{0}.neg_().add_(1.0)",
    "scale": "{0}.mul_({attr})",
    "shift": "{0}.add_({attr})",
}
# The batched code calls tanh through the names ``tanh`` / ``tanh_`` of its scope (on CPU,
# torch's tanh is several times slower than a sigmoid).
BATCHED_FORWARD_OPS = {**FORWARD_OPS, "tanh": "tanh({0})"}
BATCHED_INPLACE_OPS = {**INPLACE_OPS, "tanh": "tanh_({0})"}
# Derivative of a unary op from its output y, over whole [T, B, n] buffers at once.
DERIVATIVE = {
    "tanh": "torch.rsub({0} * {0}, 1.0)",
    "sigmoid": "torch.addcmul({0}, {0}, {0}, value=-1.0)",
    "relu": "({0} > 0).to({0}.dtype)",
    "leaky_relu": "torch.where({0} > 0, 1.0, {attr}).to({0}.dtype)",
}
CONSTANT_DERIVATIVE = {"scale": "{attr}", "shift": "1.0", "one_minus": "-1.0"}


class Layout:
    """How generated code indexes tensors: one sequence (``[T, B, n]``) or a member-stacked
    population (``[T, P, B, n]``; weights ``[P, rows, in]``)."""

    def __init__(self, batched: bool) -> None:
        self.batched = batched

    def all_cols(self, start: int, stop: int) -> str:
        """Columns of an all-steps buffer."""
        return f"..., {cols(start, stop)}" if self.batched else f":, :, {cols(start, stop)}"

    def step_cols(self, start: int, stop: int) -> str:
        """Columns of one step's tensor."""
        return f"..., {cols(start, stop)}" if self.batched else f":, {cols(start, stop)}"

    def rows(self, weight: str, row: int, count: int) -> str:
        """Row blocks of a weight."""
        rows = f"{row} * H:{row + count} * H"
        return f"{weight}[:, {rows}]" if self.batched else f"{weight}[{rows}]"

    def t(self, expr: str) -> str:
        """The transpose, as the right-hand operand of every step's product (batched: copied once,
        as a strided batch operand makes ``baddbmm_`` copy it at every step)."""
        return f"{expr}.transpose(1, 2).contiguous()" if self.batched else f"{expr}.t()"


class Lines:
    """Source lines at an indentation depth (1: the generated function's body)."""

    def __init__(self, depth: int = 1) -> None:
        self.lines: list[str] = []
        self.depth = depth

    def __call__(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def text(self) -> str:
        return "\n".join(self.lines)


def cols(start: int, stop: int) -> str:
    return f"{start} * H:{stop} * H"


def var(name: str) -> str:
    """The generated variable holding one step's value of ``name``."""
    return f"v_{name}"


def state_vars(plan: Plan) -> list[str]:
    return [var(f"h_prev_{i}") for i in range(plan.num_states)]


def referenced(plan: Plan) -> set[str]:
    """Values some per-step computation reads by name (node inputs, product sources, outputs)."""
    names: set[str] = set(plan.outputs)
    for task in plan.tasks:
        if isinstance(task, NodeStep):
            names.update(task.inputs)
        elif isinstance(task, Product):
            names.add(task.source)
    return {plan.alias.get(n, n) for n in names}


def node_expr(
    task: NodeStep,
    plan: Plan,
    fused: dict[str, str],
    steps: dict[str, NodeStep],
    ops: dict[str, str] = FORWARD_OPS,
) -> str:
    """The expression of one node's value; adds compute their fused muls (``fused``) inside."""
    args = [var(plan.alias.get(i, i)) for i in task.inputs]
    if task.op == "add":
        plain = [a for i, a in zip(task.inputs, args, strict=True) if fused.get(i) != task.name]
        muls = [steps[i] for i in task.inputs if fused.get(i) == task.name]
        if plain:
            expr = " + ".join(plain)
        else:  # add of two fused muls: compute the first one plainly
            first = muls.pop(0)
            expr = " * ".join(var(plan.alias.get(i, i)) for i in first.inputs)
        for m in muls:
            a, b = (var(plan.alias.get(i, i)) for i in m.inputs)
            expr = f"torch.addcmul({expr}, {a}, {b})"
        return expr
    if task.op == "mul":
        return " * ".join(args)
    if task.op == "diag":
        return f"{args[0]} * d_{task.name}"
    return ops[task.op].format(*args, attr=repr(task.attr))


def runs_of(blocks: list[int]) -> list[tuple[int, int]]:
    """Ascending block indices -> maximal ranges of consecutive blocks."""
    runs: list[tuple[int, int]] = []
    for b in blocks:
        if runs and runs[-1][1] == b:
            runs[-1] = (runs[-1][0], b + 1)
        else:
            runs.append((b, b + 1))
    return runs


def diag_input(plan: Plan, name: str) -> str:
    task = next(t for t in plan.tasks if isinstance(t, NodeStep) and t.name == name)
    return task.inputs[0]
