"""The training loop: masked losses, state carried across continuing batches, seeds, budgets,
pruning, and real learning on the paper's cheap tasks."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cells import build_layer, library
from workers import Batch, Budget, HyperParams, Task, TaskConfig, evaluate_trial, model_for, train
from workers._task_registry import make_task
from workers._train import masked_loss, validate

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small models train no slower on one thread, and far faster on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class EchoTask(Task):
    """Output the previous token of a random stream, read in windows of ``window`` steps.

    Every window after a stream's first continues it, and its first target is the previous
    window's last token: only a carried state gets those right (``start_accuracy``).
    """

    name = "echo"
    config_class = TaskConfig
    primary_metric = "accuracy"
    direction = "maximize"
    input_kind = "tokens"
    loss = "ce"

    def __init__(self, window: int = 5, windows: int = 3, vocab: int = 4) -> None:
        super().__init__(TaskConfig())
        self.window, self.windows, self.vocab = window, windows, vocab

    @property
    def input_size(self) -> int:
        return self.vocab

    @property
    def output_size(self) -> int:
        return self.vocab

    def stream(self, generator: torch.Generator, batch_size: int) -> list[Batch]:
        tokens = torch.randint(self.vocab, (self.window * self.windows, batch_size), generator=generator)
        targets = torch.cat([torch.zeros_like(tokens[:1]), tokens[:-1]])
        mask = torch.ones(tokens.shape)
        mask[0] = 0.0
        return [
            Batch(tokens[s : s + self.window], targets[s : s + self.window], mask[s : s + self.window], s > 0)
            for s in range(0, len(tokens), self.window)
        ]

    def train_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(seed)
        while True:
            yield from self.stream(generator, batch_size)

    def eval_batches(self, split: str, batch_size: int) -> list[Batch]:  # type: ignore[override]
        return self.stream(torch.Generator().manual_seed(1000 + (split == "test")), batch_size)

    def evaluate(self, predict, split, batch_size):  # type: ignore[no-untyped-def]
        right = total = start_right = starts = 0.0
        for batch in self.eval_batches(split, batch_size):
            correct = (predict(batch).argmax(-1) == batch.targets).float() * batch.mask
            right, total = right + correct.sum().item(), total + batch.mask.sum().item()
            if batch.continues:
                start_right, starts = (
                    start_right + correct[0].sum().item(),
                    starts + batch.mask[0].sum().item(),
                )
        return {"accuracy": right / total, "start_accuracy": start_right / starts}


class FrameEchoTask(EchoTask):
    """The echo task on multi-hot frames with a binary cross-entropy loss (the music tasks' shape)."""

    input_kind = "frames"
    loss = "bce"
    primary_metric = "nll"
    direction = "minimize"

    def stream(self, generator: torch.Generator, batch_size: int) -> list[Batch]:
        shape = (self.window * self.windows, batch_size, self.vocab)
        frames = (torch.rand(shape, generator=generator) < 0.3).float()
        targets = torch.cat([torch.zeros_like(frames[:1]), frames[:-1]])
        mask = torch.ones(shape[:2])
        mask[0] = 0.0
        return [
            Batch(frames[s : s + self.window], targets[s : s + self.window], mask[s : s + self.window], s > 0)
            for s in range(0, len(frames), self.window)
        ]

    def evaluate(self, predict, split, batch_size):  # type: ignore[no-untyped-def]
        total = count = 0.0
        for batch in self.eval_batches(split, batch_size):
            loss = masked_loss(predict(batch), batch.targets, batch.mask, "bce")
            total, count = total + loss.item() * batch.mask.sum().item(), count + batch.mask.sum().item()
        return {"nll": total / count}


class RecordingLayer(nn.Module):
    """A real cell layer that records the state each call receives."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.received: list[tuple[Tensor, ...] | None] = []

    def forward(
        self, x: Tensor, state: tuple[Tensor, ...] | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        self.received.append(state)
        return self.inner(x, state)


def test_masked_ce_loss_ignores_masked_positions() -> None:
    logits = torch.randn(4, 3, 5)
    targets = torch.randint(5, (4, 3))
    mask = torch.tensor([[1.0, 0.0, 1.0]] * 2 + [[0.0, 0.0, 1.0]] * 2)
    expected = F.cross_entropy(logits[mask.bool()], targets[mask.bool()])
    assert torch.allclose(masked_loss(logits, targets, mask, "ce"), expected)
    noisy = logits.clone()
    noisy[~mask.bool()] = 1e3 * torch.randn_like(noisy[~mask.bool()])
    assert torch.allclose(masked_loss(noisy, targets, mask, "ce"), expected)


def test_masked_bce_loss_sums_units_and_averages_frames() -> None:
    logits = torch.randn(3, 2, 4)
    targets = (torch.rand(3, 2, 4) > 0.5).float()
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    p = torch.sigmoid(logits)
    nll = -(targets * p.log() + (1 - targets) * (1 - p).log()).sum(-1)  # per frame
    expected = nll[mask.bool()].mean()
    assert torch.allclose(masked_loss(logits, targets, mask, "bce"), expected, atol=1e-6)


def test_state_is_carried_detached_across_continuing_batches() -> None:
    task = EchoTask(window=4, windows=3)
    layer = RecordingLayer(build_layer(library.get("tanh"), 16, 16))
    model = model_for(task, None, HyperParams(hidden_size=16), lambda i, h, n, d: layer)
    result = train(model, task, HyperParams(hidden_size=16), Budget(max_steps=6, eval_every=100))
    assert result.status == "ok" and result.steps == 6
    training_calls = layer.received[:6]
    assert [s is None for s in training_calls] == [True, False, False, True, False, False]
    assert all(not t.requires_grad for s in training_calls if s is not None for t in s)
    # Validation (3 windows) carries state the same way.
    assert [s is None for s in layer.received[6:]] == [True, False, False]


def test_lstm_learns_echo_across_window_boundaries() -> None:
    task = EchoTask(window=5, windows=3)
    torch.manual_seed(0)
    hp = HyperParams(hidden_size=24, learning_rate=0.02, batch_size=16)
    untrained = validate(model_for(task, library.get("lstm"), hp), task, 32, CPU)
    result = evaluate_trial("lstm", task, hp, Budget(max_steps=150, eval_every=50), device="cpu")
    assert result.status == "ok", result.error
    assert untrained["start_accuracy"] < 0.45
    # The first target of a continuing window is the previous window's last input.
    assert result.metrics["start_accuracy"] > 0.9
    assert result.value is not None and result.value > 0.9


def test_frames_and_bce_train() -> None:
    task = FrameEchoTask(window=5, windows=2, vocab=6)
    hp = HyperParams(hidden_size=16, learning_rate=0.02, batch_size=16)
    torch.manual_seed(0)
    untrained = validate(model_for(task, library.get("gru"), hp), task, 32, CPU)["nll"]
    result = evaluate_trial("gru", task, hp, Budget(max_steps=120, eval_every=40), device="cpu")
    assert result.status == "ok", result.error
    assert result.value is not None and result.value < untrained - 1.0
    assert result.value == min(v for _, v in result.curve)  # minimize: the best is the lowest


def test_same_seed_same_curve_other_seed_other_curve() -> None:
    task = EchoTask()
    budget = Budget(max_steps=30, eval_every=10)
    hp = {"hidden_size": 16, "learning_rate": 0.01, "dropout": 0.2, "init_scale": 0.1, "seed": 3}
    first = evaluate_trial("gru", task, hp, budget, device="cpu")
    second = evaluate_trial("gru", task, hp, budget, device="cpu")
    other = evaluate_trial("gru", task, {**hp, "seed": 4}, budget, device="cpu")
    assert first.status == second.status == other.status == "ok"
    assert first.curve == second.curve and len(first.curve) == 3
    assert first.value == second.value and first.metrics["start_accuracy"] == second.metrics["start_accuracy"]
    assert other.curve != first.curve


def test_report_prunes_and_value_is_the_best_seen() -> None:
    task = EchoTask()
    seen: list[tuple[int, float]] = []

    def report(step: int, value: float) -> bool:
        seen.append((step, value))
        return step >= 20

    result = evaluate_trial("tanh", task, {"hidden_size": 8}, Budget(max_steps=100, eval_every=10), report)
    assert result.status == "pruned"
    assert result.steps == 20 and seen == result.curve and [s for s, _ in seen] == [10, 20]
    assert result.value == max(v for _, v in seen)
    assert result.metrics["best_step"] in (10, 20) and result.metrics["final_value"] == seen[-1][1]


def test_wall_clock_budget_stops_and_evaluates_at_the_end() -> None:
    result = evaluate_trial(
        "tanh", EchoTask(), {"hidden_size": 8}, Budget(max_steps=None, max_seconds=0.2, eval_every=10**6)
    )
    assert result.status == "ok" and result.steps >= 1
    assert len(result.curve) == 1 and result.curve[0][0] == result.steps


def test_sgd_without_clipping_trains() -> None:
    hp = {"hidden_size": 16, "optimizer": "sgd", "learning_rate": 1.0, "max_grad_norm": None}
    result = evaluate_trial("lstm", EchoTask(), hp, Budget(max_steps=20, eval_every=10), device="cpu")
    assert result.status == "ok" and result.hparams["optimizer"] == "sgd"
    assert all(math.isfinite(v) for _, v in result.curve)


def majority_accuracy(task: Task, batch_size: int = 64) -> float:
    """Accuracy of always answering the most frequent validation target: the chance level."""
    counts: Counter[int] = Counter()
    for batch in task.eval_batches("valid", batch_size):
        counts.update(batch.targets[batch.mask.bool()].tolist())
    return max(counts.values()) / sum(counts.values())


@pytest.mark.parametrize(
    ("name", "settings", "steps", "margin"),
    [
        (
            "memorize",
            {"min_length": 3, "max_length": 5, "symbols": 4, "valid_size": 200, "test_size": 200},
            200,
            0.3,
        ),
        ("arith", {"max_digits": 2, "valid_size": 200, "test_size": 200}, 300, 0.15),
    ],
)
def test_lstm_beats_chance_and_its_untrained_self(
    name: str, settings: dict[str, int], steps: int, margin: float
) -> None:
    task = make_task(name, **settings)
    hp = HyperParams(hidden_size=64, learning_rate=0.02, seed=0)
    torch.manual_seed(hp.seed)
    untrained = validate(model_for(task, library.get("lstm"), hp), task, 64, CPU)[task.primary_metric]
    chance = majority_accuracy(task)
    result = evaluate_trial("lstm", task, hp, Budget(max_steps=steps, eval_every=steps), device="cpu")
    assert result.status == "ok", result.error
    assert result.value is not None
    assert result.value > chance + margin, (result.value, chance)
    assert result.value > untrained + margin, (result.value, untrained)
