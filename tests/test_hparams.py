"""The hyperparameter space: validation, Optuna distributions and back, per-job overrides."""

from __future__ import annotations

import math

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from workers import HyperParams, Range, SearchSpace, SearchSpaceError

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_hyperparams_defaults_and_size_rules() -> None:
    assert HyperParams().hidden_size == 64
    assert HyperParams(param_budget=10_000).hidden_size is None
    with pytest.raises(ValueError, match="hidden_size or param_budget, not both"):
        HyperParams(hidden_size=32, param_budget=10_000)
    with pytest.raises(ValueError, match="num_layers"):
        HyperParams(num_layers=5)
    with pytest.raises(ValueError, match="optimizer"):
        HyperParams(optimizer="rmsprop")
    with pytest.raises(ValueError, match="learnin_rate"):
        HyperParams.model_validate({"learnin_rate": 0.1})


def test_default_space_distributions() -> None:
    dists = SearchSpace().to_optuna()
    assert set(dists) == {
        "learning_rate",
        "init_scale",
        "max_grad_norm",
        "num_layers",
        "hidden_size",
        "dropout",
    }
    assert dists["learning_rate"] == FloatDistribution(3e-4, 3e-2, log=True)
    assert dists["num_layers"] == IntDistribution(1, 2)
    assert dists["hidden_size"] == IntDistribution(32, 128, log=True)
    assert dists["dropout"] == FloatDistribution(0.0, 0.5)


def test_choices_steps_and_fixed_values() -> None:
    space = SearchSpace(
        optimizer=["adam", "sgd"],
        init_scale=[None, 0.05, 0.1],
        hidden_size={"low": 32, "high": 96, "step": 32},  # type: ignore[arg-type]
        dropout=0.2,
        forget_bias=Range(low=0.0, high=2.0, step=0.5),
    )
    dists = space.to_optuna()
    assert dists["optimizer"] == CategoricalDistribution(["adam", "sgd"])
    assert dists["init_scale"] == CategoricalDistribution([None, 0.05, 0.1])
    assert dists["hidden_size"] == IntDistribution(32, 96, step=32)
    assert dists["forget_bias"] == FloatDistribution(0.0, 2.0, step=0.5)
    assert "dropout" not in dists
    assert space.fixed()["dropout"] == 0.2


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), max_layers=st.integers(1, 4), sgd=st.booleans())
def test_samples_round_trip_into_hyperparams(seed: int, max_layers: int, sgd: bool) -> None:
    space = SearchSpace().with_overrides(
        {"num_layers": {"low": 1, "high": max_layers}, "optimizer": ["adam", "sgd"] if sgd else "adam"}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask(space.to_optuna())
    hp = space.hparams_from(trial.params)
    for name, value in trial.params.items():
        assert getattr(hp, name) == value
    assert 3e-4 <= hp.learning_rate <= 3e-2
    assert 1 <= hp.num_layers <= max_layers
    assert hp.hidden_size is not None and 32 <= hp.hidden_size <= 128
    assert hp.param_budget is None and hp.forget_bias is None and hp.batch_size == 32
    # A distribution Optuna hands back passes its own check: the space is internally consistent.
    for name, dist in space.to_optuna().items():
        assert dist._contains(dist.to_internal_repr(trial.params[name]))


def test_hparams_from_checks_the_sample() -> None:
    space = SearchSpace(num_layers=1, hidden_size=32, dropout=0.0)
    sample = {"learning_rate": 0.01, "init_scale": 0.1, "max_grad_norm": 2.0}
    assert space.hparams_from({**sample, "seed": 7}).seed == 7  # the caller's keys win
    with pytest.raises(SearchSpaceError, match="'max_grad_norm'"):
        space.hparams_from({"learning_rate": 0.01, "init_scale": 0.1})
    with pytest.raises(SearchSpaceError, match="'momentum'"):
        space.hparams_from({**sample, "momentum": 0.9})


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"num_layer": 2}, "num_layer", "unknown field"),
        ({"num_layers": {"low": 1, "high": 9}}, "num_layers", "less than or equal to 4"),
        ({"num_layers": {"low": 3, "high": 1}}, "num_layers", "low 3 is above high 1"),
        ({"hidden_size": {"low": 16.5, "high": 64}}, "hidden_size", "integer"),
        ({"learning_rate": {"low": 0, "high": 0.1, "log": True}}, "learning_rate", "log range needs low > 0"),
        ({"learning_rate": {"lo": 0.1}}, "learning_rate", "'low': Field required"),
        ({"learning_rate": "fast"}, "learning_rate", "valid number"),
        ({"optimizer": "rmsprop"}, "optimizer", "'adam' or 'sgd'"),
        ({"optimizer": {"low": 0, "high": 1}}, "optimizer", "not a range"),
        ({"dropout": [0.1, 1.5]}, "dropout", "less than 1"),
        ({"dropout": []}, "dropout", "empty list"),
    ],
)
def test_bad_overrides_name_the_field(overrides: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(SearchSpaceError) as info:
        SearchSpace().with_overrides(overrides)
    message = str(info.value)
    assert f"'{field}'" in message and reason in message, message


def test_overrides_switch_between_hidden_size_and_param_budget() -> None:
    space = SearchSpace().with_overrides({"param_budget": {"low": 10_000, "high": 100_000, "log": True}})
    assert space.hidden_size is None
    assert space.to_optuna()["param_budget"] == IntDistribution(10_000, 100_000, log=True)
    back = space.with_overrides({"hidden_size": 48})
    assert back.param_budget is None and back.hidden_size == 48
    with pytest.raises(SearchSpaceError, match="not both"):
        SearchSpace().with_overrides({"hidden_size": 48, "param_budget": 10_000})
    # The original space is unchanged (frozen copies).
    assert SearchSpace().param_budget is None


def test_space_from_json_mapping() -> None:
    space = SearchSpace.parse({"learning_rate": {"low": 0.001, "high": 0.1, "log": True}, "num_layers": 3})
    assert math.isclose(space.to_optuna()["learning_rate"].low, 0.001)  # type: ignore[attr-defined]
    assert space.fixed()["num_layers"] == 3
    assert SearchSpace.parse(space.model_dump()) == space
