"""Dask worker preload for the tests (``dask worker --preload tests.dask_trace``): the
``tiller.research`` log (one line per computed point) goes to the file named by
``TILLER_TEST_TRACE``, so a test can count how often each point was computed."""

from __future__ import annotations

import logging
import os

path = os.environ.get("TILLER_TEST_TRACE")
if path:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("tiller.research")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
