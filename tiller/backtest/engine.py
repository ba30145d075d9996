"""The backtest: history replayed through the daily flow's own stage functions.

What depends only on data up to a date is computed for every session at once, by the
functions the daily flow calls on its window (:mod:`tiller.pipeline`):

* the bars as aligned arrays, the session returns, the dividends
  (:class:`~tiller.pipeline.market.Market`);
* the factors (:func:`~tiller.strategy.factors.factor_panel`, cut per session by
  :func:`~tiller.strategy.factors.factor_arrays`), the regime and the signals
  (:func:`~tiller.strategy.signals.signal_panel`).

What depends on the path -- the book, fills, the risk ladder, stops, re-entry, orders --
steps session by session in a lean loop, composing the day's decision with the same
functions as the flow's risk, optimize and orders stages (:mod:`tiller.pipeline.decide`).
Per session ``d`` (the XNYS sessions in ``[start, end]``, or every day for a 24/7-only
universe), in the order a trading day happens:

1. **dividends and fills** -- cash dividends of the ex-dates since the last session;
   open orders fill on their fill sessions up to ``d``
   (:func:`tiller.execution.fills.fill_on`, the paper broker's own fill model: next open or
   the order day's close, slippage, commission, volume cap), booked with
   :func:`tiller.execution.accounting.apply_fill`; a symbol whose data ended is sold at
   its last close (delisted);
2. **mark** -- the book valued at the ``d`` closes
   (:func:`~tiller.execution.accounting.snapshot`);
3. **risk** -- :func:`tiller.pipeline.decide.assess` every session;
4. **decide** -- on a rebalance day (:func:`tiller.portfolio.cadence.rebalance_days`, or
   when the risk level rises): the day's signals and :func:`tiller.pipeline.decide.targets`;
   every session, risk's forced exits, halvings and the L4 liquidation;
5. **orders** -- :func:`tiller.pipeline.decide.orders` at the ``d`` closes; with
   ``fill_price: close`` they fill at once, otherwise at the next session's open.

No function sees a bar after ``d`` when deciding on ``d``: each session's factors are its
last row on or before ``d``, its returns end at ``d``, and fills only use bars of their
fill session.

Differences from the paper flow, by design: the book used by risk on ``d`` already holds
the fills made at ``d``'s open (the flow books them in its orders stage, after risk); on
non-rebalance days risk reads the last rebalance day's signals; an L4 halt is confirmed
by a simulated operator ``backtest.l4_confirm_after_sessions`` sessions later; cash
dividends implied by the adjusted close (:mod:`tiller.execution.dividends`) are paid on
their ex-dates (the paper broker pays none; a real broker does); risk decisions are
recorded as they start (see :attr:`BacktestResult.risk_events`).
"""

from __future__ import annotations

import bisect
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from tiller.backtest.metrics import headline
from tiller.backtest.result import DAILY_COLUMNS, EVENT_COLUMNS, TRADE_COLUMNS, BacktestResult
from tiller.calendars import portfolio_calendar
from tiller.calendars import sessions as calendar_sessions
from tiller.domain import RiskLevel, Signal
from tiller.errors import TillerError
from tiller.execution import costs
from tiller.execution import fills as fill_model
from tiller.execution.accounting import (
    Fill,
    Portfolio,
    apply_dividend,
    apply_fill,
    snapshot,
    update_peak,
)
from tiller.execution.broker import OrderRequest, OrderSide
from tiller.pipeline import decide
from tiller.pipeline.market import Market, dividend_adjusted
from tiller.portfolio.cadence import Cadence, rebalance_days
from tiller.portfolio.optimize import CASH
from tiller.risk import PositionInfo, RiskDecision, RiskState, reset_after_confirmation
from tiller.risk.window import ReturnWindow
from tiller.settings import Settings
from tiller.strategy.factors import factor_arrays, factor_panel
from tiller.strategy.regime import classify_regime
from tiller.strategy.signals import SignalPanel, inputs_from_arrays, signal_panel, signals_at


class BacktestError(TillerError, ValueError):
    """The backtest cannot run on the data given (the message says what to fix)."""


@dataclass
class _OpenOrder:
    request: OrderRequest
    order_day: date
    daily_vol: float
    filled: float = 0.0
    processed: date | None = None

    @property
    def remaining(self) -> float:
        return round(self.request.qty - self.filled, 10)


class _Timer:
    """Seconds per stage, accumulated."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - began


@dataclass(frozen=True)
class MarketHistory:
    """The inputs of a backtest, prepared once.

    Attributes
    ----------
    bars:
        Long daily bars of the universe (``symbol, date, open, high, low, close, adj_close,
        volume``), warm-up history included.
    vix:
        Volatility-index bars (``date, close``).
    """

    bars: pd.DataFrame
    vix: pd.DataFrame


def warmup_sessions(settings: Settings) -> int:
    """Sessions of history needed before the first decision: the longest factor window,
    the covariance lookback and the correlation window, plus a margin of 5."""
    factors = settings.strategy.factors
    longest = max(
        factors.momentum_long + 1,
        max(factors.sma_windows),
        max(factors.momentum_windows) + 1,
        settings.optimize.lookback + 1,
        settings.risk.correlation_window + 1,
    )
    return longest + 5


def run_backtest(
    settings: Settings,
    market: MarketHistory,
    start: date,
    end: date,
    *,
    cadence: Cadence | None = None,
    label: str = "backtest",
    run_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Replay ``[start, end]`` (see the module docstring) and return the record.

    Parameters
    ----------
    settings:
        Universe, strategy, risk, optimize, execution and backtest settings.
    market:
        Bars from before ``start`` (:func:`warmup_sessions`) to at least ``end``.
    start, end:
        The first and last dates replayed (non-sessions are skipped).
    cadence:
        Rebalance cadence; default ``settings.backtest.cadence``.
    label:
        Human name of the run.
    run_id:
        Identifier; default ``bt-<12 hex>``.
    progress:
        Called as ``progress(sessions done, total sessions)`` about every 1% of the
        sessions replayed, and once at the end (a terminal's progress bar).

    Raises
    ------
    BacktestError
        ``start`` after ``end``, no bars for the universe, no session in the range, or
        a window that runs past the data.
    """
    return _Replay(settings, market, start, end, cadence or settings.backtest.cadence).run(
        label, run_id or f"bt-{uuid.uuid4().hex[:12]}", progress
    )


class _Replay:
    def __init__(
        self, settings: Settings, market: MarketHistory, start: date, end: date, cadence: Cadence
    ):
        if start > end:
            raise BacktestError(f"start {start} is after end {end}: give --start before --end")
        self.settings = settings
        self.cadence = cadence
        self.timer = _Timer()
        bars = market.bars[market.bars["date"] <= pd.Timestamp(end)]
        if not settings.backtest.warmup:
            bars = bars[bars["date"] >= pd.Timestamp(start)]
        bars = bars[bars["symbol"].isin(settings.symbols)]
        if settings.backtest.traded_price == "adj_close":
            bars = dividend_adjusted(bars)
        if bars.empty:
            raise BacktestError(
                f"no bars for the universe {', '.join(settings.symbols)} up to {end}; "
                "check TILLER_DATA_SOURCES and the symbols' history"
            )
        calendars = {s: settings.calendar_of(s) for s in settings.symbols}
        with self.timer("prepare"):
            self.market = Market.from_bars(bars, market.vix, settings.symbols, calendars)
        self.symbols = list(self.market.symbols)
        self.no_data = [s for s in settings.symbols if s not in self.market.symbols]
        self.calendars = {s: calendars[s] for s in self.symbols}
        self.asset_classes = {s: settings.asset(s).asset_class for s in self.symbols}
        with self.timer("prepare"):
            self._prepare(start, end)
        with self.timer("factors"):
            panel = factor_panel(bars, settings.strategy.factors, self.calendars)
        with self.timer("signals"):
            self.signals = self._signal_panel(panel)

    # ------------------------------------------------------------------ set-up
    def _prepare(self, start: date, end: date) -> None:
        market = self.market
        days = calendar_sessions(portfolio_calendar(self.calendars.values()), start, end)
        first_bar = market.grid.min()
        self.days = [d.date() for d in days if d >= first_bar]
        if not self.days:
            raise BacktestError(
                f"no trading session between {start} and {end} with data; the bars start on "
                f"{first_bar.date()}"
            )
        self.rebalance_days = rebalance_days(self.days, self.cadence)
        self.rows = [market.row(d) for d in self.days]  # grid row of each session
        self.return_rows = [market.returns_rows(d) for d in self.days]
        self.close = market.values("close")
        self.open = market.values("open")
        self.volume = market.values("volume")
        self.mark = market.mark
        self.price = market.price.to_numpy(dtype=float)
        self.returns = market.returns_values
        self.column = {s: j for j, s in enumerate(self.symbols)}
        self.grid = [d.date() for d in market.grid]
        self.bar_rows = market.bar_rows
        self.bar_dates = {s: [self.grid[r] for r in rows] for s, rows in self.bar_rows.items()}
        self._check_coverage(start, end)

    def _check_coverage(self, start: date, end: date) -> None:
        """Refuse a window that runs past the data; note the symbols whose data ends inside
        it (delisted: sold at their last close on the next session, or with
        ``backtest.delisting: next_rebalance`` on the next rebalance day, held at that
        close until then)."""
        last_bar = {s: self.bar_dates[s][-1] for s in self.symbols if self.bar_dates[s]}
        index = self.settings.volatility_index
        vix = self.market.vix
        vix_end = vix["date"].max().date() if len(vix) else None
        window_last = self.days[-1]
        data_end = max(last_bar.values())
        usable = min(data_end, vix_end) if vix_end is not None else None
        if usable is None or window_last > usable:
            ends = ", ".join(
                [f"{s} no bars" for s in self.no_data]
                + [f"{s} {d}" for s, d in sorted(last_bar.items(), key=lambda i: i[1])]
            )
            raise BacktestError(
                f"the window {start}..{end} runs past the data: its last session is "
                f"{window_last}, but the data ends earlier ({ends}; {index} "
                f"{vix_end or 'none'}); end the backtest on or before "
                f"{usable or 'a date with data'}, or add the missing data"
            )
        self.delistings: dict[str, tuple[date, date]] = {}
        at_rebalance = self.settings.backtest.delisting == "next_rebalance"
        for symbol, last in last_bar.items():
            position = bisect.bisect_right(self.days, last)
            if at_rebalance:
                later = np.flatnonzero(self.rebalance_days[position:])
                position = position + int(later[0]) if len(later) else len(self.days)
            if position < len(self.days):
                self.delistings[symbol] = (last, self.days[position])

    def _signal_panel(self, panel: pd.DataFrame) -> SignalPanel:
        """Every session's signals at once (no look-ahead: each session's factors are
        its last row on or before it; delisted symbols are left out from their delisting)."""
        settings = self.settings
        excluded = np.zeros((len(self.days), len(self.symbols)), dtype=bool)
        days = np.array(self.days, dtype="datetime64[D]")
        for symbol, (_, gone) in self.delistings.items():
            excluded[days >= np.datetime64(gone, "D"), self.column[symbol]] = True
        arrays = factor_arrays(panel, self.days, self.symbols, excluded)
        vix = np.array(
            [v if (v := self.market.vix_on(d)) is not None else np.nan for d in self.days]
        )
        inputs = inputs_from_arrays(
            arrays, vix, settings.strategy.signals, settings.strategy.regime
        )
        window_periods = int(panel.attrs.get("window_periods_per_year", 252))
        return signal_panel(inputs, settings.strategy.signals, window_periods)

    # ------------------------------------------------------------------- replay
    def run(
        self, label: str, run_id: str, progress: Callable[[int, int], None] | None = None
    ) -> BacktestResult:
        settings = self.settings
        total = len(self.days)
        every = max(1, total // 100)  # report about every 1% of the sessions
        capital = settings.optimize.initial_capital
        book = Portfolio.initial(capital)
        state = RiskState()
        previous_nav: float | None = None
        previous_day: date | None = None
        previous_level = RiskLevel.L0
        signals: list[Signal] = []
        targets: dict[str, float] = {}
        open_orders: list[_OpenOrder] = []
        daily_rows: list[dict[str, Any]] = []
        weight_rows: list[dict[str, float]] = []
        trades: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        self.events = events
        self.gone: set[str] = set()
        confirm_after = settings.backtest.l4_confirm_after_sessions
        halted_days = 0
        ongoing: set[tuple[str, str | None]] = set()

        for i, day in enumerate(self.days):
            traded: list[dict[str, Any]] = []
            with self.timer("fills"):
                book, paid = self._pay_dividends(book, i)
                book = self._fill(book, open_orders, day, traded)
                if self.delistings:
                    book = self._delist(book, day, traded)
            with self.timer("mark"):
                marks = self._marks(book, i)
                snap = snapshot(book, marks, day)
                book = update_peak(book, snap)
            if state.halted and confirm_after is not None:
                halted_days += 1
                if halted_days > confirm_after:
                    state = reset_after_confirmation(state, day)
                    halted_days = 0
                    events.append(
                        _event(day, "operator_reset", None, "simulated operator confirmation")
                    )
            with self.timer("risk"):
                decision = self._risk(
                    i, day, snap.nav, previous_nav, book, marks, state, signals, targets
                )
            state = decision.state
            events.extend(
                _event(day, e.kind, e.symbol, e.reason)
                for e in _onsets(decision, ongoing, previous_level, previous_day is None)
            )
            ongoing = {(e.kind, e.symbol) for e in decision.decisions}

            rebalance = decide.rebalances(
                bool(self.rebalance_days[i]), decision.level, previous_level
            )
            requests: list[OrderRequest] = []
            with self.timer("orders"):
                if decision.orders_allowed and decision.halted:
                    open_orders.clear()
                    requests = self._plan(i, day, {}, book, snap.nav, decision)
            if decision.orders_allowed and not decision.halted:
                if rebalance:
                    with self.timer("signals"):
                        signals = signals_at(self.signals, i, settings.strategy.signals)
                    with self.timer("optimize"):
                        current = self._weights(book, marks, snap.nav)
                        targets = decide.targets(
                            signals,
                            decision,
                            current,
                            snap.nav,
                            self._window(i),
                            settings,
                            day=day,
                            opened={s: p.opened for s, p in book.positions.items()},
                        ).weights
                    wanted: Mapping[str, float] = targets
                elif decide.trades_today(rebalance, decision):
                    wanted = self._weights(book, marks, snap.nav)
                else:
                    wanted = {}
                if wanted or rebalance:
                    with self.timer("orders"):
                        open_orders.clear()  # day orders: what did not fill is not carried
                        requests = self._plan(i, day, wanted, book, snap.nav, decision)
            open_orders.extend(self._open(r, day, i) for r in requests)
            if settings.execution.fill_price == "close" and open_orders:
                with self.timer("fills"):
                    book = self._fill(book, open_orders, day, traded)
                    marks = self._marks(book, i)
                    snap = snapshot(book, marks, day)
                    book = update_peak(book, snap)
            trades.extend(traded)
            daily_rows.append(self._daily(day, snap, decision, traded, rebalance, paid))
            weight_rows.append(self._weights(book, marks, snap.nav, with_cash=True))
            previous_nav, previous_day, previous_level = snap.nav, day, decision.level
            if progress is not None and ((i + 1) % every == 0 or i + 1 == total):
                progress(i + 1, total)
        return self._result(run_id, label, daily_rows, weight_rows, trades, events)

    # ------------------------------------------------------------------ stages
    def _pay_dividends(self, book: Portfolio, i: int) -> tuple[Portfolio, float]:
        """Credit the cash dividends of the ex-dates after the previous session up to this
        one on the positions held at the open (a holder before the ex-date is paid)."""
        if not book.positions or i == 0:
            return book, 0.0
        lo, hi = self.rows[i - 1] + 1, self.rows[i] + 1
        if hi <= lo:
            return book, 0.0
        window = self.market.dividends[lo:hi]
        before = book.cash
        for symbol in list(book.positions):
            for per_share in window[:, self.column[symbol]]:
                if per_share > 0:
                    book = apply_dividend(book, symbol, float(per_share))
        return book, book.cash - before

    def _marks(self, book: Portfolio, i: int) -> dict[str, float]:
        row = self.rows[i]
        if row < 0:
            return {}
        return {s: float(self.mark[row, self.column[s]]) for s in book.positions}

    def _weights(
        self, book: Portfolio, marks: Mapping[str, float], nav: float, with_cash: bool = False
    ) -> dict[str, float]:
        weights = {s: p.qty * marks[s] / nav for s, p in book.positions.items()}
        if with_cash:
            weights[CASH] = book.cash / nav
        return weights

    def _window(self, i: int) -> ReturnWindow:
        """The universe's session returns up to session ``i`` (no later row)."""
        return ReturnWindow(self.returns[: self.return_rows[i]], tuple(self.symbols))

    def _risk(
        self,
        i: int,
        day: date,
        nav: float,
        previous_nav: float | None,
        book: Portfolio,
        marks: Mapping[str, float],
        state: RiskState,
        signals: list[Signal],
        targets: Mapping[str, float],
    ) -> RiskDecision:
        positions = {
            s: PositionInfo(
                qty=p.qty, entry_price=p.avg_cost, price=marks[s], weight=p.qty * marks[s] / nav
            )
            for s, p in book.positions.items()
        }
        rows = self.return_rows[i]
        window = ReturnWindow(
            self.returns[max(0, rows - self.settings.risk.correlation_window) : rows],
            tuple(self.symbols),
        )
        live = [s for s in signals if s.symbol not in self.gone]
        return decide.assess(
            day,
            nav,
            previous_nav,
            positions,
            window,
            targets,
            live,
            state,
            self.settings,
            classes=self.asset_classes,
        )

    def _plan(
        self,
        i: int,
        day: date,
        targets: Mapping[str, float],
        book: Portfolio,
        nav: float,
        decision: RiskDecision,
    ) -> list[OrderRequest]:
        row = self.rows[i]
        prices = {}
        if row >= 0 and self.grid[row] == day:
            for s in sorted(set(targets) | set(book.positions)):
                j = self.column.get(s)
                if j is not None and not math.isnan(self.close[row, j]):
                    prices[s] = float(self.close[row, j])
        plan = decide.orders(
            day,
            targets,
            book.quantities(),
            prices,
            nav,
            book.cash,
            book.cash,
            decision,
            self.settings,
        )
        return plan.orders

    def _open(self, request: OrderRequest, day: date, i: int) -> _OpenOrder:
        column = self.price[: self.rows[i] + 1, self.column[request.symbol]]
        return _OpenOrder(request, day, costs.daily_volatility(column[np.isfinite(column)]))

    def _fill(
        self,
        book: Portfolio,
        open_orders: list[_OpenOrder],
        day: date,
        traded: list[dict[str, Any]],
    ) -> Portfolio:
        """Fill the open orders on their sessions up to ``day``; sells first (their cash
        funds the buys), a buy the cash cannot pay is cut to what it can."""
        for order in sorted(open_orders, key=lambda o: o.request.side is OrderSide.BUY):
            request = order.request
            dates = self.bar_dates[request.symbol]
            rows = self.bar_rows[request.symbol]
            j = self.column[request.symbol]
            lo = max(bisect.bisect_right(dates, order.processed or order.order_day) - 1, 0)
            hi = bisect.bisect_right(dates, day)
            candidates = [d for d in dates[lo:hi] if d >= order.order_day]
            row_of = dict(zip(dates[lo:hi], rows[lo:hi], strict=True))
            for session in fill_model.fill_sessions(
                candidates, order.order_day, order.processed, self.settings
            ):
                if order.remaining <= fill_model.EPSILON:
                    break
                row = row_of[session]
                fill = fill_model.fill_on(
                    request.symbol,
                    request.side,
                    session,
                    float(self.open[row, j]),
                    float(self.close[row, j]),
                    float(self.volume[row, j]),
                    order.remaining,
                    order.daily_vol,
                    self.settings,
                )
                order.processed = session
                if fill is None:
                    continue
                if request.side is OrderSide.BUY:
                    fill = _affordable(fill, book.cash, request.symbol, self.settings)
                    if fill is None:
                        order.filled = request.qty  # nothing affordable: the order ends
                        break
                book = apply_fill(
                    book,
                    Fill(
                        request.client_order_id,
                        request.symbol,
                        request.side,
                        fill.qty,
                        fill.price,
                        fill.commission,
                        datetime.combine(session, datetime.min.time(), tzinfo=UTC),
                    ),
                )
                order.filled += fill.qty
                traded.append(
                    _trade(
                        fill, order.order_day, request.symbol, request.side, request.client_order_id
                    )
                )
        open_orders[:] = [o for o in open_orders if o.remaining > fill_model.EPSILON]
        return book

    def _delist(self, book: Portfolio, day: date, traded: list[dict[str, Any]]) -> Portfolio:
        """Sell every position whose data ended before ``day`` at its last close (see
        :func:`tiller.execution.fills.delisting_fill`) and leave the symbol out from now on."""
        for symbol, (last, first_missing) in self.delistings.items():
            if first_missing != day:
                continue
            self.gone.add(symbol)
            position = book.positions.get(symbol)
            if position is None:
                self.events.append(
                    _event(
                        day,
                        "delisted",
                        symbol,
                        f"{symbol}: no data after {last}; not held, left out of the universe "
                        "from now on",
                    )
                )
                continue
            j = self.column[symbol]
            last_row = int(self.bar_rows[symbol][-1])
            close = float(self.close[last_row, j])
            history = self.price[: last_row + 1, j]
            fill = fill_model.delisting_fill(
                symbol,
                position.qty,
                close,
                day,
                costs.daily_volatility(history[np.isfinite(history)]),
                self.settings,
            )
            cid = f"delist-{day:%Y%m%d}-{symbol}"
            book = apply_fill(
                book,
                Fill(
                    cid,
                    symbol,
                    OrderSide.SELL,
                    fill.qty,
                    fill.price,
                    fill.commission,
                    datetime.combine(day, datetime.min.time(), tzinfo=UTC),
                ),
            )
            traded.append(_trade(fill, last, symbol, OrderSide.SELL, cid))
            self.events.append(
                _event(
                    day,
                    "delisted",
                    symbol,
                    f"{symbol}: no data after {last}: the {fill.qty:g} held are sold at the "
                    f"last close {close:,.4f} less slippage ({fill.price:,.4f}), commission "
                    f"{fill.commission:,.2f}; left out of the universe from now on",
                )
            )
        return book

    # ------------------------------------------------------------------ record
    def _daily(
        self,
        day: date,
        snap: Any,
        decision: RiskDecision,
        traded: list[dict[str, Any]],
        rebalance: bool,
        dividends: float,
    ) -> dict[str, Any]:
        notional = math.fsum(t["notional"] for t in traded)
        vix = self.market.vix_on(day)
        regime = (
            classify_regime(vix, self.settings.strategy.regime).value if vix is not None else ""
        )
        return {
            "date": day,
            "nav": snap.nav,
            "cash": snap.cash,
            "long_value": snap.positions_value,
            "exposure": snap.positions_value / snap.nav if snap.nav else 0.0,
            "peak_nav": snap.peak_nav,
            "drawdown": snap.drawdown,
            "level": int(decision.level),
            "regime": regime,
            "traded": notional,
            "turnover": notional / snap.nav if snap.nav else 0.0,
            "commission": math.fsum(t["commission"] for t in traded),
            "slippage": math.fsum(t["slippage"] for t in traded),
            "rebalanced": rebalance,
            "dividends": dividends,
        }

    def _result(
        self,
        run_id: str,
        label: str,
        daily_rows: list[dict[str, Any]],
        weight_rows: list[dict[str, float]],
        trades: list[dict[str, Any]],
        events: list[dict[str, Any]],
    ) -> BacktestResult:
        daily = pd.DataFrame(daily_rows).set_index("date")[list(DAILY_COLUMNS)]
        weights = pd.DataFrame(weight_rows, index=daily.index).fillna(0.0)
        trade_frame = pd.DataFrame(trades, columns=list(TRADE_COLUMNS))
        event_frame = pd.DataFrame(events, columns=list(EVENT_COLUMNS))
        settings = self.settings
        return BacktestResult(
            run_id=run_id,
            label=label,
            start=self.days[0],
            end=self.days[-1],
            cadence=self.cadence,
            initial_capital=settings.optimize.initial_capital,
            daily=daily,
            weights=weights,
            trades=trade_frame,
            risk_events=event_frame,
            metrics=headline(daily, trade_frame, settings.optimize.initial_capital),
            timings=dict(self.timer.seconds),
            config={
                "universe": self.symbols,
                "cadence": self.cadence,
                "method": settings.optimize.method,
                "fill_price": settings.execution.fill_price,
                "traded_price": settings.backtest.traded_price,
                "warmup": settings.backtest.warmup,
                "signals": settings.strategy.signals.rule,
                "solver": settings.optimize.solver,
                "initial_capital": settings.optimize.initial_capital,
                "delisted": {s: last.isoformat() for s, (last, _) in self.delistings.items()},
                "no_data": list(self.no_data),
            },
        )


def _trade(
    fill: fill_model.Fill, order_day: date, symbol: str, side: OrderSide, client_order_id: str
) -> dict[str, Any]:
    """One row of :attr:`BacktestResult.trades`."""
    return {
        "date": fill.session,
        "order_date": order_day,
        "symbol": symbol,
        "side": side.value,
        "qty": fill.qty,
        "price": fill.price,
        "reference_price": fill.reference,
        "notional": fill.qty * fill.price,
        "commission": fill.commission,
        "slippage": abs(fill.price - fill.reference) * fill.qty,
        "client_order_id": client_order_id,
    }


def _affordable(
    fill: fill_model.Fill, cash: float, symbol: str, settings: Settings
) -> fill_model.Fill | None:
    """The part of a buy that ``cash`` pays for, commission included (lot-rounded down)."""
    if fill.qty * fill.price + fill.commission <= cash + 1e-6:
        return fill
    rate = settings.costs[settings.asset(symbol).cost_class].commission
    unit = fill_model.lot(symbol, settings)
    qty = max(cash, 0.0) / (fill.price * (1.0 + rate))
    qty = math.floor(qty / unit + fill_model.EPSILON) * unit if unit > 0 else qty
    if qty <= fill_model.EPSILON:
        return None
    return replace(fill, qty=qty, commission=costs.commission(qty * fill.price, rate))


def _onsets(
    decision: RiskDecision,
    ongoing: set[tuple[str, str | None]],
    previous_level: RiskLevel,
    first: bool,
) -> list[Any]:
    """The day's risk decisions that start today: the level when it changes, any other
    decision (a pair cap, a blocked buy, a stop, the kill switch) on its first day of a
    run of days.  The paper flow stores every decision every day; over years of sessions
    a backtest keeps the transitions (a pair cap held for a month is one event)."""
    return [
        e
        for e in decision.decisions
        if (e.kind == "level" and (first or decision.level != previous_level))
        or (e.kind != "level" and (e.kind, e.symbol) not in ongoing)
    ]


def _event(day: date, kind: str, symbol: str | None, reason: str) -> dict[str, Any]:
    return {"date": day, "kind": kind, "symbol": symbol, "reason": reason}
