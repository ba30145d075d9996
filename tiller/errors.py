"""Exceptions that carry a message meant for the operator.

Every error Tiller raises on bad input says what is wrong, where (setting,
file and line, symbol and date) and what to do.  The CLI prints the message
without a traceback and exits non-zero.
"""

from __future__ import annotations


class TillerError(Exception):
    """Base class: an error whose message is shown to the operator as is."""


class ConfigError(TillerError):
    """A setting or config file value is invalid."""


class DataError(TillerError):
    """Input data (a CSV file, a provider payload) is unusable."""


class StoreError(TillerError):
    """The database cannot be reached, opened or migrated."""


class BlockedError(TillerError):
    """A blocking data-quality failure stopped the flow before any later stage."""


class TradingFailed(TillerError):
    """The day's orders failed at the broker (every one, or with no answer): the run's
    stages completed, trading is paused, and the run is recorded as failed."""
