"""The strategy core (SPEC stages 3-5): factors, market regime and signals.

Pure functions over pandas objects: long daily bars in, a factor panel, a
:class:`~tiller.strategy.factors.FactorSnapshot`, a
:class:`~tiller.strategy.regime.RegimeReading` and a list of
:class:`~tiller.domain.Signal` out.  No orchestration, no database: the daily
flow and the backtest call the same functions.
"""
