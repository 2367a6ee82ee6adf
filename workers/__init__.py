"""workers: tasks and their data, the model around a cell, the training loop, the
hyperparameter space and the trial runner.

Most submodules import torch (and ``_hparams`` Optuna): their names load on first use
(PEP 562), so that importing a light part, such as :class:`TrialResult`, stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cells import lazy_exports
from workers._curve_score import CURVE_SCORES, CurveScore, curve_score
from workers._direction import Direction
from workers._download import (
    DATASETS,
    DEFAULT_DATA_DIR,
    ENV_DATA_DIR,
    DownloadError,
    download_dataset,
    download_file,
)
from workers._results import MAX_SCORE_HORIZON, Budget, TrialResult, TrialStatus

if TYPE_CHECKING:
    from workers._arith import ArithConfig, ArithTask
    from workers._evaluate import evaluate_trial, resolve_task
    from workers._hparams import HyperParams, Range, SearchSpace, SearchSpaceError
    from workers._lm_protocol import LM_PROTOCOL
    from workers._memorize import MemorizeConfig, MemorizeTask
    from workers._model import (
        LayerFactory,
        RecurrentModel,
        count_parameters,
        hidden_size_for_budget,
        model_for,
        set_forget_bias,
        torch_lstm_factory,
    )
    from workers._music import MusicConfig, MusicTask, load_note_sequences, piano_roll
    from workers._population import (
        PopulationSetting,
        plan_populations,
        population_size,
        train_population,
    )
    from workers._prefilter import (
        PROXIES,
        PrefilterConfig,
        Proxy,
        drop_worst,
        prefilter_score,
        rank_candidates,
    )
    from workers._runner import (
        Evaluate,
        PopulationRequest,
        TrialRequest,
        population_runner,
        start_relay,
        trial_runner,
    )
    from workers._task import (
        Batch,
        Example,
        SequenceTask,
        SequenceTaskConfig,
        Task,
        TaskConfig,
        TaskConfigError,
        TaskSpec,
    )
    from workers._task_registry import (
        TASKS,
        clear_task_cache,
        make_task,
        register_task,
        task_config,
        task_search_space,
    )
    from workers._text import FileSlice, TextConfig, TextTask
    from workers._train import train
    from workers._xml import XmlConfig, XmlTask

__getattr__ = lazy_exports(
    globals(),
    {
        "workers._arith": ("ArithConfig", "ArithTask"),
        "workers._evaluate": ("evaluate_trial", "resolve_task"),
        "workers._runner": (
            "Evaluate",
            "PopulationRequest",
            "TrialRequest",
            "population_runner",
            "start_relay",
            "trial_runner",
        ),
        "workers._hparams": ("HyperParams", "Range", "SearchSpace", "SearchSpaceError"),
        "workers._memorize": ("MemorizeConfig", "MemorizeTask"),
        "workers._model": (
            "LayerFactory",
            "RecurrentModel",
            "count_parameters",
    "curve_score",
            "hidden_size_for_budget",
            "model_for",
            "set_forget_bias",
            "torch_lstm_factory",
        ),
        "workers._music": ("MusicConfig", "MusicTask", "load_note_sequences", "piano_roll"),
        "workers._population": (
            "PopulationSetting",
            "plan_populations",
            "population_size",
            "train_population",
        ),
        "workers._prefilter": (
            "PROXIES",
            "PrefilterConfig",
            "Proxy",
            "drop_worst",
            "prefilter_score",
            "rank_candidates",
        ),
        "workers._task": (
            "Batch",
            "Example",
            "SequenceTask",
            "SequenceTaskConfig",
            "Task",
            "TaskConfig",
            "TaskConfigError",
            "TaskSpec",
        ),
        "workers._task_registry": (
            "TASKS",
            "clear_task_cache",
            "make_task",
            "register_task",
            "task_config",
    "task_search_space",
            "task_search_space",
        ),
        "workers._lm_protocol": ("LM_PROTOCOL",),
        "workers._text": ("FileSlice", "TextConfig", "TextTask"),
        "workers._train": ("train",),
        "workers._xml": ("XmlConfig", "XmlTask"),
    },
)


__all__ = [
    "CURVE_SCORES",
    "DATASETS",
    "DEFAULT_DATA_DIR",
    "ENV_DATA_DIR",
    "LM_PROTOCOL",
    "MAX_SCORE_HORIZON",
    "PROXIES",
    "TASKS",
    "ArithConfig",
    "ArithTask",
    "Batch",
    "Budget",
    "CurveScore",
    "Direction",
    "DownloadError",
    "Evaluate",
    "Example",
    "FileSlice",
    "HyperParams",
    "LayerFactory",
    "MemorizeConfig",
    "MemorizeTask",
    "MusicConfig",
    "MusicTask",
    "PopulationRequest",
    "PopulationSetting",
    "PrefilterConfig",
    "Proxy",
    "Range",
    "RecurrentModel",
    "SearchSpace",
    "SearchSpaceError",
    "SequenceTask",
    "SequenceTaskConfig",
    "Task",
    "TaskConfig",
    "TaskConfigError",
    "TaskSpec",
    "TextConfig",
    "TextTask",
    "TrialRequest",
    "TrialResult",
    "TrialStatus",
    "XmlConfig",
    "XmlTask",
    "clear_task_cache",
    "count_parameters",
    "curve_score",
    "download_dataset",
    "download_file",
    "drop_worst",
    "evaluate_trial",
    "hidden_size_for_budget",
    "load_note_sequences",
    "make_task",
    "model_for",
    "piano_roll",
    "plan_populations",
    "population_runner",
    "population_size",
    "prefilter_score",
    "rank_candidates",
    "register_task",
    "resolve_task",
    "set_forget_bias",
    "start_relay",
    "task_config",
    "task_search_space",
    "torch_lstm_factory",
    "train",
    "train_population",
    "trial_runner",
]
