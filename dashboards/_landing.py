"""Where ``cellsearch dashboard`` sends the researcher: the runs table of the latest job's
experiment (one row per architecture, its scores in columns), else the UI's home page.

Example:
    >>> lines = []
    >>> announce("sqlite:////nowhere/mlflow.db", "http://127.0.0.1:5000", lines.append)
    >>> lines
    ['MLflow UI at http://127.0.0.1:5000 (store: sqlite:////nowhere/mlflow.db); Ctrl-C stops it']
"""

from __future__ import annotations

import logging
import webbrowser
from collections.abc import Callable

from dashboards._experiment_view import latest_job_experiment, runs_page
from dashboards._tracking_ops import first_line

logger = logging.getLogger(__name__)


def landing_page(tracking_uri: str, base_url: str) -> str:
    """The runs page of the latest job's experiment in the store; ``base_url`` without one."""
    try:
        experiment = latest_job_experiment(tracking_uri)
    except Exception as exc:  # the UI still works: the address of its home page does
        logger.info("no job experiment found in %s: %s", tracking_uri, first_line(exc))
        return base_url
    return base_url if experiment is None else runs_page(base_url, experiment)


def announce(
    tracking_uri: str, base_url: str, echo: Callable[[str], object], open_browser: bool = False
) -> None:
    """Print the address of the landing page (and open it in a browser if asked)."""
    page = landing_page(tracking_uri, base_url)
    echo(f"MLflow UI at {page} (store: {tracking_uri}); Ctrl-C stops it")
    if open_browser:
        webbrowser.open(page)
