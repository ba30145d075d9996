"""Backtests and stress tests through the daily flow's pure stage functions."""

from tiller.backtest.engine import BacktestError, MarketHistory, run_backtest, warmup_sessions
from tiller.backtest.result import BacktestResult

__all__ = ["BacktestError", "BacktestResult", "MarketHistory", "run_backtest", "warmup_sessions"]
