"""Imported by the forkserver of :mod:`tests.runner` before it forks any run: the modules
a daily run imports, and great-expectations' context (about a second each time),
so that each forked run pays only for its stages."""

from __future__ import annotations

import tasks.daily
import tasks.execute
import tasks.report
import tasks.validate  # noqa: F401
import tiller.cli  # noqa: F401
from tiller.validation import _context

_context()
