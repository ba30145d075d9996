"""Crash points for the crash-and-rerun tests.

``TILLER_FAULT_INJECT=<point>`` makes the process die at that point with exit code 137
and no clean-up at all, as a ``kill -9`` would: ``<stage>:before_commit`` inside a
stage's transaction, ``orders:after_submit``, ``orders:after_settle``,
``orders:after_commit``.  Unset (always, outside tests), :func:`fault` does nothing.
"""

from __future__ import annotations

import os

FAULT_ENV = "TILLER_FAULT_INJECT"


def fault(point: str) -> None:
    """Die here (exit 137, no clean-up) when ``TILLER_FAULT_INJECT`` names ``point``."""
    if os.environ.get(FAULT_ENV) == point:
        os._exit(137)
