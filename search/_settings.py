"""Where results live: read from the command line, then the environment, then local defaults.

Every command that reads or writes results resolves its locations through
:func:`resolve_settings`, so ``launch``, ``resume``, ``status`` and the results commands
find the same job.

Example:
    >>> s = resolve_settings(db_url="sqlite:///x.db", mlflow_uri=None, ray_address=None, env={})
    >>> s.db_url, s.mlflow_uri
    ('sqlite:///x.db', 'sqlite:///mlflow.db')
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from workers import DEFAULT_DATA_DIR, ENV_DATA_DIR  # the workers read the data folder

ENV_DB_URL = "CELLSEARCH_DB_URL"
ENV_MLFLOW_URI = "MLFLOW_TRACKING_URI"
ENV_RAY_ADDRESS = "RAY_ADDRESS"
ENV_VARIABLES = (ENV_DB_URL, ENV_MLFLOW_URI, ENV_RAY_ADDRESS, ENV_DATA_DIR)
"""Every environment variable the code reads (the compose file sets these names)."""

DEFAULT_DB_URL = "sqlite:///cellsearch.db"
DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"


class Settings(BaseModel):
    """Resolved locations of the results database, the MLflow store, Ray and the data."""

    model_config = ConfigDict(frozen=True)

    db_url: str = DEFAULT_DB_URL
    mlflow_uri: str = DEFAULT_MLFLOW_URI
    ray_address: str | None = None
    """``None`` starts a local Ray instance."""
    data_dir: str = DEFAULT_DATA_DIR


def resolve_settings(
    db_url: str | None = None,
    mlflow_uri: str | None = None,
    ray_address: str | None = None,
    data_dir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Explicit values win, then the environment, then local files in the working directory."""
    env = os.environ if env is None else env
    return Settings(
        db_url=db_url or env.get(ENV_DB_URL) or DEFAULT_DB_URL,
        mlflow_uri=mlflow_uri or env.get(ENV_MLFLOW_URI) or DEFAULT_MLFLOW_URI,
        ray_address=ray_address or env.get(ENV_RAY_ADDRESS) or None,
        data_dir=data_dir or env.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR,
    )
