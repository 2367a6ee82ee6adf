"""The op set of cell graphs: arity, commutativity and attributes of every op."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AttrSpec:
    """One numeric attribute of an op: its default and the closed range it must lie in."""

    default: float | None
    low: float
    high: float


@dataclass(frozen=True)
class OpSpec:
    """What an op accepts.

    ``max_arity`` of ``None`` means any number of inputs from ``min_arity`` up.
    ``commutative`` ops ignore the order of their inputs (it does not change the hash).
    """

    name: str
    min_arity: int
    max_arity: int | None
    commutative: bool = False
    attrs: dict[str, AttrSpec] = field(default_factory=dict)

    @property
    def unary(self) -> bool:
        return self.min_arity == 1 and self.max_arity == 1 and self.name not in ("diag",)


UNARY_OPS: tuple[str, ...] = (
    "tanh",
    "sigmoid",
    "relu",
    "leaky_relu",
    "identity",
    "one_minus",
    "scale",
    "shift",
)
"""Elementwise one-input ops (``diag`` excluded: it has a parameter)."""

BINARY_OPS: tuple[str, ...] = ("add", "sub", "mul")
"""Elementwise two-input ops (``add`` and ``mul`` also take more inputs)."""

OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        # bias_init None: the default uniform init; a number: the bias starts at that constant.
        OpSpec("linear", 1, None, True, {"bias_init": AttrSpec(None, -10.0, 10.0)}),
        OpSpec("add", 2, None, True),
        OpSpec("mul", 2, None, True),
        OpSpec("sub", 2, 2),
        OpSpec("blend", 3, 3),
        OpSpec("diag", 1, 1),
        OpSpec("tanh", 1, 1),
        OpSpec("sigmoid", 1, 1),
        OpSpec("relu", 1, 1),
        OpSpec("leaky_relu", 1, 1, attrs={"negative_slope": AttrSpec(0.01, 0.0, 1.0)}),
        OpSpec("identity", 1, 1),
        OpSpec("one_minus", 1, 1),
        OpSpec("scale", 1, 1, attrs={"alpha": AttrSpec(1.0, -10.0, 10.0)}),
        OpSpec("shift", 1, 1, attrs={"beta": AttrSpec(0.0, -10.0, 10.0)}),
    )
}
"""Every op a cell graph may use, by name."""

MAX_STATES = 3
