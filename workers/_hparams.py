"""One trial's hyperparameters and the space they are sampled from.

The paper sampled, per trial: learning rate, initialisation scale, maximum gradient norm,
number of layers (1-4), model size, dropout (language modeling) and the forget-gate bias.
A :class:`SearchSpace` field is a fixed value, a list of choices or a :class:`Range`;
:meth:`SearchSpace.to_optuna` gives Optuna distributions for the sampled fields and
:meth:`SearchSpace.hparams_from` turns a sample back into :class:`HyperParams`.

Example:
    >>> space = SearchSpace().with_overrides({"num_layers": 1, "optimizer": ["adam", "sgd"]})
    >>> sorted(space.to_optuna())
    ['dropout', 'hidden_size', 'init_scale', 'learning_rate', 'max_grad_norm', 'optimizer']
    >>> hp = space.hparams_from({"dropout": 0.1, "hidden_size": 64, "init_scale": 0.1,
    ...                          "learning_rate": 0.01, "max_grad_norm": 5.0, "optimizer": "sgd"})
    >>> hp.num_layers, hp.optimizer, hp.hidden_size
    (1, 'sgd', 64)
"""

from __future__ import annotations

import math
from functools import cache
from typing import Annotated, Any, Literal

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cells import CellsearchError, join_problems
from workers._problems import described_errors, shown_value
from workers._results import MAX_BATCH_SIZE

DEFAULT_HIDDEN_SIZE = 64
MAX_HIDDEN_SIZE = 4096
"""The widest layer a trial may ask for (a 4-layer LSTM of this width is about 0.5 GB of weights)."""
MAX_PARAM_BUDGET = 100_000_000
"""The largest ``param_budget``: 100 million parameters (0.4 GB in float32)."""
MAX_HPARAM_SEED = 2**63 - 1
MAX_BOUND = 2**63
"""The largest magnitude of a range's bounds and step (each field's own range is far inside it)."""
MAX_CHOICES = 1000
"""The most choices one search-space list may hold."""


class HyperParams(BaseModel):
    """The settings of one trial.

    The model size is either ``hidden_size`` or ``param_budget`` (the largest hidden size
    whose whole model, embedding and output layer included, has at most that many
    parameters); with neither, the hidden size is ``DEFAULT_HIDDEN_SIZE``.

    Example:
        >>> HyperParams(learning_rate=0.01, param_budget=50_000).hidden_size is None
        True
        >>> HyperParams().hidden_size
        64
    """

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(default=3e-3, gt=0, le=1e4, strict=True, allow_inf_nan=False)
    """Above 0, at most 10,000 (that high only to make a run diverge on purpose)."""
    init_scale: float | None = Field(default=None, gt=0, le=10, strict=True, allow_inf_nan=False)
    """Every parameter uniform in ``[-init_scale, init_scale]``, above 0 and at most 10;
    ``None`` keeps the layers' own init."""
    max_grad_norm: float | None = Field(default=5.0, gt=0, le=1e6, strict=True, allow_inf_nan=False)
    """Clip the global gradient norm to this, above 0 and at most 10**6; ``None`` disables clipping."""
    num_layers: int = Field(default=1, ge=1, le=4, strict=True)
    """Stacked cells, 1 to 4."""
    hidden_size: int | None = Field(default=None, ge=1, le=MAX_HIDDEN_SIZE, strict=True)
    """Width of every layer, 1 to 4096."""
    param_budget: int | None = Field(default=None, ge=1, le=MAX_PARAM_BUDGET, strict=True)
    """Most parameters of the whole model, 1 to 100,000,000."""
    dropout: float = Field(default=0.0, ge=0, lt=1, strict=True, allow_inf_nan=False)
    """On the embedding, between layers and before the output layer; at least 0, below 1."""
    forget_bias: float | None = Field(default=None, ge=-100, le=100, strict=True, allow_inf_nan=False)
    """Overrides the bias of every ``forget_gate``-tagged linear node, -100 to 100; ``None``
    keeps the cell's."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """``adam`` or plain ``sgd``."""
    tie_weights: bool = Field(default=False, strict=True)
    """Share one matrix between the embedding and the output layer (Press & Wolf 2017; Inan et
    al. 2017): token tasks whose inputs and outputs are the same vocabulary only."""
    batch_size: int = Field(default=32, ge=1, le=MAX_BATCH_SIZE, strict=True)
    """Training sequences per step, 1 to 4096."""
    seed: int = Field(default=0, ge=0, le=MAX_HPARAM_SEED, strict=True)
    """Seeds the weights, dropout and the order of training data: 0 to 2**63 - 1."""

    @model_validator(mode="after")
    def _one_size(self) -> HyperParams:
        if self.hidden_size is not None and self.param_budget is not None:
            raise ValueError("set hidden_size or param_budget, not both")
        if self.hidden_size is None and self.param_budget is None:
            self.hidden_size = DEFAULT_HIDDEN_SIZE
        return self


class Range(BaseModel):
    """A sampled interval ``[low, high]``: uniform, log-uniform (``log``) or on a ``step`` grid.

    Example:
        >>> Range(low=1e-4, high=1e-1, log=True).log
        True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: int | float
    """A finite number; the field's own range applies to it."""
    high: int | float
    """A finite number, at least ``low``; the field's own range applies to it."""
    log: bool = Field(default=False, strict=True)
    """Sample log-uniformly (``low`` above 0)."""
    step: int | float | None = Field(default=None, gt=0)
    """The grid's spacing: a finite number above 0."""

    @field_validator("low", "high", "step", mode="before")
    @classmethod
    def _finite_number(cls, value: Any) -> Any:
        # Checked before the union so that a bad bound gets one message, not one per branch.
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {shown_value(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        if abs(value) > MAX_BOUND:
            shown = f"{value:.3g}" if isinstance(value, float) else f"an integer of {value.bit_length()} bits"
            raise ValueError(f"expected a number between -2**63 and 2**63, got {shown}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("a range cannot be both log and stepped")
        return self


SpaceValue = Range | list[Any] | bool | int | float | str | None
"""A search-space field: a range (a mapping), a list of choices, or a fixed value."""

_INT_FIELDS = frozenset({"num_layers", "hidden_size", "param_budget", "batch_size", "seed"})
_CATEGORICAL_FIELDS = frozenset({"optimizer", "tie_weights"})


@cache
def _field_adapter(name: str) -> TypeAdapter[Any]:
    """Validates one value of a HyperParams field against its type and bounds."""
    field = HyperParams.model_fields[name]
    if not field.metadata:
        return TypeAdapter(field.annotation)
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)])


class SearchSpaceError(CellsearchError, ValueError):
    """A search space or an override is invalid; the message names the field and the reason."""


class SearchSpace(BaseModel):
    """Where each hyperparameter comes from: a fixed value, a list of choices or a :class:`Range`.

    Defaults (chosen for short CPU-sized trials in the paper's spirit): Adam with a
    log-uniform learning rate in [3e-4, 3e-2] (the useful band for Adam on these models;
    wider bands waste trials on runs that barely move or diverge), init scale log-uniform in
    [0.02, 0.3] (the uniform init scale is multiplicative, hence log), max gradient norm
    log-uniform in [1, 10], 1-2 layers (the paper went to 4: raise ``num_layers`` on GPU),
    hidden size log-uniform in [32, 128], dropout uniform in [0, 0.5], and the forget bias
    left to each cell (``None``: so ``lstm`` and ``lstm-b1`` stay different architectures;
    set e.g. ``{"low": 0, "high": 2}`` to tune it as the paper did). To size models by
    parameter count instead, override ``param_budget``; that clears ``hidden_size`` unless
    the same overrides set it too.

    Example:
        >>> space = SearchSpace(num_layers=1, hidden_size=[32, 64])
        >>> space.to_optuna()["hidden_size"]
        CategoricalDistribution(choices=(32, 64))
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: SpaceValue = Range(low=3e-4, high=3e-2, log=True)
    init_scale: SpaceValue = Range(low=0.02, high=0.3, log=True)
    max_grad_norm: SpaceValue = Range(low=1.0, high=10.0, log=True)
    num_layers: SpaceValue = Range(low=1, high=2)
    hidden_size: SpaceValue = Range(low=32, high=128, log=True)
    param_budget: SpaceValue = None
    dropout: SpaceValue = Range(low=0.0, high=0.5)
    forget_bias: SpaceValue = None
    optimizer: SpaceValue = "adam"
    tie_weights: SpaceValue = False
    batch_size: SpaceValue = 32
    seed: SpaceValue = 0

    @field_validator("*", mode="before")
    @classmethod
    def _mapping_is_range(cls, value: Any) -> Any:
        # Parse ranges here so a bad range reports its own error, not every union branch's.
        if isinstance(value, dict):
            try:
                return Range.model_validate(value)
            except ValidationError as exc:
                raise ValueError(_format_errors(exc, "range")) from None
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _valid_for_field(cls, value: SpaceValue, info: ValidationInfo) -> SpaceValue:
        name = info.field_name
        assert name is not None
        adapter = _field_adapter(name)
        if isinstance(value, Range):
            if name in _CATEGORICAL_FIELDS:
                raise ValueError("a categorical field takes a value or a list of choices, not a range")
            if name in _INT_FIELDS and not all(
                float(v).is_integer() for v in (value.low, value.high, value.step or 1)
            ):
                raise ValueError("an integer field needs integer low, high and step")
            candidates: list[Any] = [value.low, value.high]
        elif isinstance(value, list):
            if not value:
                raise ValueError("an empty list of choices")
            if len(value) > MAX_CHOICES:
                raise ValueError(f"expected at most {MAX_CHOICES} choices, got {len(value)}")
            candidates = value
        else:
            candidates = [value]
        for candidate in candidates:
            adapter.validate_python(candidate)
        return value

    @model_validator(mode="after")
    def _one_size(self) -> SearchSpace:
        if self.hidden_size is not None and self.param_budget is not None:
            raise ValueError("set hidden_size or param_budget, not both (set the other to null)")
        return self

    def to_optuna(self) -> dict[str, BaseDistribution]:
        """Optuna distributions of the sampled (non-fixed) fields."""
        distributions: dict[str, BaseDistribution] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, list):
                distributions[name] = CategoricalDistribution(value)
            elif isinstance(value, Range) and name in _INT_FIELDS:
                step = int(value.step or 1)
                distributions[name] = IntDistribution(
                    int(value.low), int(value.high), log=value.log, step=step
                )
            elif isinstance(value, Range):
                distributions[name] = FloatDistribution(
                    float(value.low), float(value.high), log=value.log, step=value.step
                )
        return distributions

    def fixed(self) -> dict[str, Any]:
        """The fields that are not sampled, with their values."""
        return {
            name: value
            for name in type(self).model_fields
            if not isinstance(value := getattr(self, name), Range | list)
        }

    def hparams_from(self, params: dict[str, Any]) -> HyperParams:
        """The :class:`HyperParams` of a sample ``params`` (e.g. an Optuna trial's ``params``)
        merged with the fixed fields; keys in ``params`` win, so a caller may set e.g. ``seed``."""
        unknown = sorted(set(params) - set(type(self).model_fields))
        if unknown:
            raise SearchSpaceError(
                f"unknown hyperparameter {unknown[0]!r} (known: {', '.join(self._names())})"
            )
        missing = sorted(set(self.to_optuna()) - set(params))
        if missing:
            raise SearchSpaceError(f"sample lacks the sampled hyperparameter {missing[0]!r}")
        return HyperParams.model_validate({**self.fixed(), **params})

    def with_overrides(self, overrides: dict[str, Any]) -> SearchSpace:
        """A copy with some fields replaced (a job's per-task settings); errors name the field.

        Example:
            >>> SearchSpace().with_overrides({"num_layer": 2})
            Traceback (most recent call last):
            ...
            workers._hparams.SearchSpaceError: search space: unknown field 'num_layer' (known: ...)
        """
        unknown = [name for name in overrides if name not in type(self).model_fields]
        if unknown:
            raise SearchSpaceError(
                f"search space: unknown field {unknown[0]!r} (known: {', '.join(self._names())})"
            )
        merged = {name: getattr(self, name) for name in type(self).model_fields} | dict(overrides)
        if overrides.get("param_budget") is not None and "hidden_size" not in overrides:
            merged["hidden_size"] = None
        if overrides.get("hidden_size") is not None and "param_budget" not in overrides:
            merged["param_budget"] = None
        return self.parse(merged)

    @classmethod
    def parse(cls, data: Any) -> SearchSpace:
        """Validate a mapping into a search space, raising :class:`SearchSpaceError` naming the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SearchSpaceError(_format_errors(exc)) from None

    def _names(self) -> list[str]:
        return list(type(self).model_fields)


def _format_errors(exc: ValidationError, what: str = "search space") -> str:
    """``search space: field 'x': reason``, one clause per field (not per union branch)."""
    by_field: dict[str, str] = {}
    for problem, message in described_errors(exc):
        by_field.setdefault(f"field {problem.loc[0]!r}: " if problem.loc else "", message)
    return join_problems((what, field + message) for field, message in by_field.items())
