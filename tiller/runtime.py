"""Process set-up shared by the CLI, the server and the tests: where Prefect keeps its
state, and quiet offline defaults for the libraries.  Call before importing Prefect."""

from __future__ import annotations

import os

from tiller.settings import Settings


def prepare_environment(settings: Settings) -> None:
    """Point Prefect at ``TILLER_HOME/prefect`` and switch off telemetry (unless already set)."""
    home = settings.home_dir
    home.mkdir(parents=True, exist_ok=True)
    defaults = {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": settings.log_level,
        "GX_ANALYTICS_ENABLED": "false",
        "YF_TELEMETRY": "0",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
