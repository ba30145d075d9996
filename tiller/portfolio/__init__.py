"""Portfolio construction (SPEC stage 7): from allowed assets to target weights.

:mod:`tiller.portfolio.optimize` turns the daily returns of the assets the signals
and the risk level allow into target weights (fractions of NAV): risk-parity
weights from riskfolio-lib (with inverse-volatility and previous-weights
fallbacks), then the portfolio constraints (cash buffer, leverage, exposure,
per-asset and pair caps, long only), then the daily trading limits against the
current weights (minimum change, minimum trade value, turnover, number of trades).

Pure: pandas/numpy in, frozen dataclasses out; no Prefect, no database.
riskfolio-lib (whose import takes seconds) is imported only when a solve is needed.
"""
