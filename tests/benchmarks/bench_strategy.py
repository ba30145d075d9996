"""Strategy-core benchmark: seconds per stage for one ``as_of``, and peak memory.

Run from the repository root::

    uv run python tests/benchmarks/bench_strategy.py

The script prints figures and asserts nothing about time: it is a measuring
stick to compare before and after a change, not a test (pytest does not
collect it).  Only the pure functions are called (no Prefect, no database):

``factor_panel``
    :func:`tiller.strategy.factors.factor_panel` over the whole history.
``factors_at``
    :func:`tiller.strategy.factors.factors_at` on that panel at ``as_of``.
``regime``
    :func:`tiller.strategy.regime.regime_at` on the VIX closes.
``signals``
    :func:`tiller.strategy.signals.generate_signals`.
``risk``
    :func:`tiller.risk.assess_risk` with the last 60 daily returns of the
    long-eligible or buy symbols, a fresh :class:`~tiller.risk.RiskState`.
``optimize``
    :func:`tiller.portfolio.optimize.optimize_weights` on the last 252 daily
    returns of the investable symbols (long-eligible and not a sell signal).
``optimize (all symbols)``
    The same function on every symbol of the universe listed for all of the
    last 756 sessions (the ``lookback`` raised to 756, exposure 1, no pair
    caps) to show the solver cost at scale; not part of the per-``as_of`` total.

Universes, all at ``as_of`` 2023-12-29 with history from 2004-01-02:

(a) ``extended``: the 15 assets of ``load_settings(universe="extended")``,
    read from ``<repo>/../shared/data/market`` through ``CsvProvider``.
(b) 150 and (c) every available symbol of
    ``<repo>/../shared/data/universe/us_equities_daily.csv.gz`` (gzip CSV
    ``date,symbol,open,high,low,close,volume``; ``adj_close`` is set to
    ``close``; all symbols on the ``XNYS`` calendar).

Notes
-----
One-time costs are printed apart and left out of the per-``as_of`` total:
importing ``pandas_ta`` (imported lazily inside ``factor_panel``) and
``riskfolio`` (inside ``optimize_weights``), both imported up front here, and
the first ``factor_panel`` call of each universe and the first risk-parity solve
of the process (``cold`` rows).  Every stage of the
table is the median of ``--repeat`` warm calls.  Peak memory is the process
high-water mark (``ru_maxrss``, KiB on Linux), so it only grows from one
universe to the next; universes run from smallest to largest.
"""

from __future__ import annotations

import argparse
import gzip
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
MARKET_DIR = REPO.parent / "shared" / "data" / "market"
UNIVERSE_FILE = REPO.parent / "shared" / "data" / "universe" / "us_equities_daily.csv.gz"
HISTORY_START = date(2004, 1, 2)
AS_OF = date(2023, 12, 29)
REQUESTED_SYMBOLS = 500
NAV = 100_000.0
MAX_WEIGHT = 0.15
RISK_ROWS = 60
SCALE_ROWS = 756
SELLS = ("SELL", "STRONG_SELL")
RULE = "-" * 100


@dataclass
class Row:
    """One printed figure: stage, universe label, seconds and a note."""

    stage: str
    universe: str
    seconds: float
    note: str = ""


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by ``fn()`` (``time.perf_counter``) and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls of ``fn`` and the last result."""
    times, result = [], None
    for _ in range(max(repeat, 1)):
        seconds, result = timed(fn)
        times.append(seconds)
    return statistics.median(times), result


def peak_mib() -> float:
    """Peak resident memory of this process so far (MiB; ru_maxrss is KiB on Linux)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":  # bytes there
        kib /= 1024
    return kib / 1024


def load_extended(symbols: Sequence[str]) -> pd.DataFrame:
    """Long bars of the extended universe through ``CsvProvider``."""
    from tiller.data.base import SeriesKind, SeriesRequest
    from tiller.data.providers.csv import CsvProvider

    provider = CsvProvider(MARKET_DIR)
    frames = []
    for symbol in symbols:
        frame = provider.fetch(SeriesRequest(symbol, SeriesKind.BAR, HISTORY_START, AS_OF))
        frames.append(frame.assign(symbol=symbol))
    return pd.concat(frames, ignore_index=True)


def load_vix() -> pd.DataFrame:
    """VIX bars (``date, close``) through ``CsvProvider``."""
    from tiller.data.base import SeriesKind, SeriesRequest
    from tiller.data.providers.csv import CsvProvider

    frame = CsvProvider(MARKET_DIR).fetch(
        SeriesRequest("VIX", SeriesKind.BAR, HISTORY_START, AS_OF)
    )
    return frame[["date", "close"]]


def load_equities() -> pd.DataFrame:
    """Long bars of the equities file from ``HISTORY_START`` to ``AS_OF``, ``adj_close = close``."""
    with gzip.open(UNIVERSE_FILE, "rt") as handle:
        frame = pd.read_csv(handle, parse_dates=["date"])
    window = (frame["date"] >= pd.Timestamp(HISTORY_START)) & (frame["date"] <= pd.Timestamp(AS_OF))
    frame = frame.loc[window].copy()
    frame["adj_close"] = frame["close"]
    return frame.reset_index(drop=True)


def daily_returns(bars: pd.DataFrame, calendar_of: dict[str, str]) -> pd.DataFrame:
    """Wide daily simple returns of ``adj_close`` on the exchange (non-24/7) sessions.

    Like ``tasks.risk.daily_returns`` (pivot, forward fill, ``pct_change``), but the
    weekend rows of 24/7 assets are dropped first, so a 24/7 asset gets the return
    from one exchange session to the next.  Returns are fractions per
    session.
    """
    wide = bars.pivot(index="date", columns="symbol", values="adj_close").sort_index()
    exchange = [s for s in wide.columns if calendar_of[s] != "24/7"]
    wide = wide.loc[wide[exchange].notna().any(axis=1)].ffill()
    return wide.pct_change(fill_method=None).iloc[1:]


def run_universe(
    label: str,
    bars: pd.DataFrame,
    calendar_of: dict[str, str],
    asset_classes: dict[str, str],
    vix: pd.DataFrame,
    settings: Any,
    repeat: int,
    cold_optimize: bool,
) -> tuple[list[Row], dict[str, Any]]:
    """Time every stage of the strategy core on one universe; rows and facts to print."""
    from tiller.portfolio.optimize import optimize_weights
    from tiller.risk import RiskInputs, RiskState, assess_risk
    from tiller.strategy.factors import factor_panel, factors_at
    from tiller.strategy.regime import regime_at
    from tiller.strategy.signals import generate_signals

    strategy = settings.strategy
    rows: list[Row] = []
    symbols = sorted(bars["symbol"].unique())
    returns = daily_returns(bars, calendar_of)
    returns = returns.loc[returns.index <= pd.Timestamp(AS_OF)]

    cold, _ = timed(lambda: factor_panel(bars, strategy.factors, calendar_of))
    rows.append(Row("factor_panel (cold, first call)", label, cold, "one-time: not in the total"))
    seconds, panel = median_of(lambda: factor_panel(bars, strategy.factors, calendar_of), repeat)
    rows.append(Row("factor_panel", label, seconds, f"{len(panel):,} panel rows"))
    seconds, snapshot = median_of(lambda: factors_at(panel, AS_OF), repeat)
    rows.append(Row("factors_at", label, seconds, f"{len(snapshot.symbols)} symbols"))
    seconds, reading = median_of(lambda: regime_at(vix, AS_OF, strategy.regime), repeat)
    rows.append(Row("regime", label, seconds, f"{reading.regime} (VIX {reading.vix:.2f})"))
    seconds, signals = median_of(
        lambda: generate_signals(snapshot, reading, strategy.signals), repeat
    )
    eligible = sum(s.long_eligible for s in signals)
    rows.append(Row("signals", label, seconds, f"{len(signals)} signals, {eligible} eligible"))

    watched = sorted(s.symbol for s in signals if s.long_eligible or s.signal.is_buy)
    inputs = RiskInputs(
        as_of=AS_OF,
        nav=NAV,
        returns=returns[watched].iloc[-RISK_ROWS:],
        signals=tuple(signals),
        asset_classes=asset_classes,
    )
    seconds, decision = median_of(lambda: assess_risk(inputs, RiskState(), settings.risk), repeat)
    rows.append(
        Row(
            "risk",
            label,
            seconds,
            f"{len(watched)} watched, level {decision.level}, {len(decision.pair_caps)} pair caps",
        )
    )

    investable = sorted(
        s.symbol for s in signals if s.long_eligible and s.signal.value not in SELLS
    )
    frame = returns[investable].iloc[-settings.optimize.lookback :].dropna()

    def optimize(data: pd.DataFrame, config: Any, exposure: float, pairs: Any) -> Any:
        return optimize_weights(
            data,
            {},
            NAV,
            max_weights={s: MAX_WEIGHT for s in data.columns},
            config=config,
            exposure=exposure,
            pair_caps=pairs,
        )

    if cold_optimize:
        seconds, _ = timed(
            lambda: optimize(frame, settings.optimize, decision.exposure_scale, decision.pair_caps)
        )
        rows.append(
            Row("optimize (cold, first solve)", label, seconds, "one-time: not in the total")
        )
    seconds, result = median_of(
        lambda: optimize(frame, settings.optimize, decision.exposure_scale, decision.pair_caps),
        repeat,
    )
    rows.append(
        Row(
            "optimize",
            label,
            seconds,
            f"{len(investable)} assets x {len(frame)} rows, method {result.method}",
        )
    )

    scale_config = settings.optimize.model_copy(update={"lookback": SCALE_ROWS})
    everything = returns.iloc[-SCALE_ROWS:]
    everything = everything.loc[:, everything.notna().all()]  # listed for all 756 sessions
    short = len(symbols) - everything.shape[1]
    seconds, scale = median_of(lambda: optimize(everything, scale_config, 1.0, ()), repeat)
    rows.append(
        Row(
            "optimize (all symbols)",
            label,
            seconds,
            f"{everything.shape[1]} assets x {len(everything)} rows ({short} with a shorter "
            f"history left out), method {scale.method}; not in the total",
        )
    )
    facts = {
        "symbols": len(symbols),
        "bar_rows": len(bars),
        "first": bars["date"].min().date(),
        "last": bars["date"].max().date(),
        "scale_reason": scale.reason,
        "reason": result.reason,
    }
    return rows, facts


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="warm calls per stage (median)")
    args = parser.parse_args(argv)

    imports: list[Row] = []
    seconds, _ = timed(lambda: __import__("tiller.settings"))
    imports.append(Row("import tiller.settings (pandas, pydantic)", "-", seconds))
    seconds, _ = timed(
        lambda: [
            __import__(m)
            for m in (
                "tiller.strategy.factors",
                "tiller.strategy.regime",
                "tiller.strategy.signals",
                "tiller.risk",
                "tiller.portfolio.optimize",
            )
        ]
    )
    imports.append(Row("import tiller strategy/risk/optimize modules", "-", seconds))
    seconds, _ = timed(lambda: __import__("pandas_ta"))
    imports.append(Row("import pandas_ta (lazy in factor_panel)", "-", seconds))
    seconds, _ = timed(lambda: __import__("riskfolio"))
    imports.append(Row("import riskfolio (lazy in optimize_weights)", "-", seconds))

    after_imports = peak_mib()
    from tiller.settings import load_settings

    settings = load_settings(universe="extended")
    loads: list[Row] = []
    extended_symbols = sorted(settings.assets)
    seconds, extended = timed(lambda: load_extended(extended_symbols))
    loads.append(Row("load bars (CsvProvider)", "extended", seconds, f"{len(extended):,} rows"))
    seconds, vix = timed(load_vix)
    loads.append(Row("load VIX (CsvProvider)", "-", seconds, f"{len(vix):,} rows"))
    seconds, equities = timed(load_equities)
    available = sorted(equities["symbol"].unique())
    loads.append(
        Row("load equities csv.gz", "-", seconds, f"{len(equities):,} rows, {len(available)} sym")
    )

    after_loads = peak_mib()
    runs: list[tuple[str, pd.DataFrame, dict[str, str], dict[str, str]]] = []
    calendars = {s: ("24/7" if s == "BTC-USD" else "XNYS") for s in extended_symbols}
    classes = {s: settings.assets[s].asset_class for s in extended_symbols}
    runs.append(("extended (15)", extended, calendars, classes))
    for count in (150, len(available)):
        chosen = available[:count]
        bars = equities.loc[equities["symbol"].isin(chosen)].reset_index(drop=True)
        label = f"equities ({len(chosen)})"
        runs.append((label, bars, dict.fromkeys(chosen, "XNYS"), dict.fromkeys(chosen, "equity")))

    table: list[Row] = []
    totals: list[tuple[str, float, float, dict[str, Any]]] = []
    for number, (label, bars, calendar_of, asset_classes) in enumerate(runs):
        rows, facts = run_universe(
            label, bars, calendar_of, asset_classes, vix, settings, args.repeat, number == 0
        )
        core = sum(r.seconds for r in rows if "not in the total" not in r.note)
        totals.append((label, core, peak_mib(), facts))
        table.extend(rows)

    print(RULE)
    print(f"Strategy core benchmark  as_of {AS_OF}  history from {HISTORY_START}  ", end="")
    print(f"median of {args.repeat} warm call(s) per stage")
    print(RULE)
    print("One-time imports (each timed on its first import in this process):")
    for row in imports:
        print(f"  {row.stage:<48} {row.seconds:8.3f} s")
    print(f"  peak RSS after the imports: {after_imports:.1f} MiB")
    print("Data loading (not part of the strategy core):")
    for row in loads:
        print(f"  {row.stage:<28} {row.universe:<10} {row.seconds:8.3f} s  {row.note}")
    print(f"  peak RSS after loading all data: {after_loads:.1f} MiB")
    if len(available) < REQUESTED_SYMBOLS:
        print(
            f"NOTE: {REQUESTED_SYMBOLS} symbols were requested, but {UNIVERSE_FILE.name} holds "
            f"only {len(available)} symbols; the largest run uses all {len(available)}."
        )
    print(RULE)
    print(f"{'stage':<34} {'universe':<16} {'seconds':>9}  note")
    print(RULE)
    for row in table:
        print(f"{row.stage:<34} {row.universe:<16} {row.seconds:9.4f}  {row.note}")
    print(RULE)
    print("Total strategy core per as_of (factor_panel + factors_at + regime + signals + risk")
    print("+ optimize, warm, excluding one-time imports, cold calls and the all-symbol optimize):")
    for label, core, peak, facts in totals:
        print(
            f"  {label:<16} {core:8.3f} s   peak RSS so far {peak:8.1f} MiB   "
            f"({facts['symbols']} symbols, {facts['bar_rows']:,} bar rows, "
            f"{facts['first']} .. {facts['last']})"
        )
    print("Optimizer notes:")
    for label, _, _, facts in totals:
        print(f"  {label:<16} eligible: {facts['reason']}")
        print(f"  {'':<16} all:      {facts['scale_reason']}")
    print(f"Peak resident memory of this process (ru_maxrss): {peak_mib():.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
