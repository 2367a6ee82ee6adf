"""The language-model protocol: how the ``text`` task trains and scores a cell by default on
Penn Treebank, following the established word-level recipe (Zaremba et al. 2014; the AWD-LSTM
family, Merity et al. 2018), scaled to short search budgets.

What the recipe fixes, because at a budget of a few hundred steps it only adds noise to a
comparison of cells: the initialisation (every weight uniform in ``[-0.1, 0.1]``, Zaremba's),
gradient clipping at a global norm of 0.25 (AWD-LSTM's), one layer of 128 units, batches of
20 columns of the token stream. What it shares: the embedding and the output layer are one
matrix (Press & Wolf 2017; Inan et al. 2017). What it tunes, because cells differ in what
suits them: the learning rate and the dropout (on the embedding, between layers and on the
outputs). The rest comes from the task: BPTT windows of 35 tokens with the state carried
from window to window, and evaluation on the whole validation split with the state carried.

The optimizer is Adam at a constant learning rate, where the published recipes use SGD (or
averaged SGD) with a decay over tens of epochs: a schedule that depends on the budget would
make a short trial something else than the start of a long one, and short trials are what a
search ranks cells by. ``docs/lm-protocol.md`` lists every difference.

Example:
    >>> from workers import task_search_space
    >>> space = task_search_space("text", preset="ptb")
    >>> space.tie_weights, space.max_grad_norm, space.batch_size, sorted(space.to_optuna())
    (True, 0.25, 20, ['dropout', 'learning_rate'])
    >>> task_search_space("text", preset="ptb", protocol="plain").tie_weights
    False
"""

from __future__ import annotations

from typing import Any, Literal

Protocol = Literal["lm", "plain"]
"""``lm``: :data:`LM_PROTOCOL` on top of the search space's defaults; ``plain``: the defaults alone."""

LM_PROTOCOL: dict[str, Any] = {
    "tie_weights": True,
    "max_grad_norm": 0.25,
    "init_scale": 0.1,
    "num_layers": 1,
    "hidden_size": 128,
    "batch_size": 20,
    "optimizer": "adam",
    # Adam's useful band on these models; a tenth of it either side trains barely or diverges.
    "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
    "dropout": {"low": 0.0, "high": 0.6},
}
"""The protocol's search-space fields; a job's ``hparams`` override any of them."""
