"""Research at scale: parameter sweeps and walk-forward studies of the backtest, on this
process or a Dask cluster (:mod:`tiller.research.executor`), persisted point by point."""
