"""Process set-up shared by the CLI, the server and the tests: where Prefect keeps its
state, and quiet offline defaults for the libraries.  Call before importing Prefect."""

from __future__ import annotations

import os
import tempfile

from tiller.errors import ConfigError
from tiller.settings import Settings


def check_home(settings: Settings) -> None:
    """``TILLER_HOME`` exists (it is created) and a file can be written in it.

    Raises
    ------
    ConfigError
        One line naming ``TILLER_HOME`` and why it cannot be written.
    """
    home = settings.home_dir
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"TILLER_HOME={home} cannot be written ({reason}); point TILLER_HOME at a folder "
            "this user can write"
        ) from None


def prepare_environment(settings: Settings) -> None:
    """Point Prefect at ``TILLER_HOME/prefect`` and switch off telemetry (unless already set)."""
    check_home(settings)  # one line naming TILLER_HOME when it cannot be written
    home = settings.home_dir
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
