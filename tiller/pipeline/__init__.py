"""The pipeline core: the stages composed once, for the daily flow and the backtest.

* :mod:`tiller.pipeline.market` -- the bars of a universe as aligned arrays (the flow's
  window, or the whole history);
* :mod:`tiller.pipeline.decide` -- the day's risk decision, targets and orders from the
  pure stage functions.

The maths works on panels (every date at once) where it depends only on data up to a
date (factors, regime, signals, returns); only the path-dependent part (book, fills,
ladder, orders) steps date by date.
"""
