"""The orders stage (SPEC stage 8): targets -> orders -> broker -> fills -> book -> NAV.

One run for ``as_of``:

1. the simulated broker plays the sessions that have arrived (yesterday's
   orders fill at today's open);
2. every open order is read back from the broker; new fills are recorded once
   (by the growth of the order's filled quantity) and applied to the book;
3. the book is reconciled with the broker's positions and cash; a difference
   is recorded, audited and resolved to the broker's truth;
4. on an L4 halt open orders are cancelled and everything is sold; otherwise
   the targets are turned into orders and checked before trading;
5. planned orders are written ahead (their own transaction) and then sent,
   each with a deterministic client order id: the broker is asked for the id
   first, so a rerun or a crash between submit and persist never sends twice;
6. fills are polled until every order is final or the poll time-out passes
   (open orders are picked up by the next run), then the book is valued at the
   ``as_of`` closes: cash + sum(qty x price) = NAV to the cent.

Everything except the write-ahead rows lands with the stage's checkpoint in
one transaction.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, select

from tasks.audit import AuditLog, export_day
from tasks.checkpoint import StageOutcome, fault, fingerprint, run_stage
from tasks.context import RunContext
from tiller.domain import Signal
from tiller.execution.accounting import (
    Fill,
    NavSnapshot,
    Portfolio,
    PositionState,
    align_to_broker,
    apply_fill,
    check_invariants,
    snapshot,
    update_peak,
)
from tiller.execution.broker import (
    Broker,
    BrokerError,
    BrokerOrder,
    OrderRequest,
    OrderSide,
    OrderStatus,
)
from tiller.execution.orders import liquidation_orders, plan_orders
from tiller.execution.retry import RetryingBroker
from tiller.portfolio.optimize import OptimizationResult
from tiller.risk import RiskDecision
from tiller.settings import Settings
from tiller.store.repo import (
    BOOK_STATE,
    FILLS,
    NAV_SNAPSHOTS,
    ORDER_REJECTIONS,
    ORDERS,
    POSITION_SNAPSHOTS,
    RECONCILIATIONS,
    Store,
    utcnow,
)

PORTFOLIO = "paper"
CASH_TOLERANCE = 0.05  # USD: rounding noise between the book and the broker


# ------------------------------------------------------------------ the book
def book_to_dict(book: Portfolio) -> dict[str, Any]:
    return {
        "cash": book.cash,
        "realized_pnl": book.realized_pnl,
        "fees": book.fees,
        "peak_nav": book.peak_nav,
        "positions": {
            s: {"qty": p.qty, "cost_basis": p.cost_basis} for s, p in book.positions.items()
        },
    }


def book_from_dict(data: dict[str, Any]) -> Portfolio:
    return Portfolio(
        cash=float(data["cash"]),
        positions={
            s: PositionState(s, float(p["qty"]), float(p["cost_basis"]))
            for s, p in data["positions"].items()
        },
        realized_pnl=float(data["realized_pnl"]),
        fees=float(data["fees"]),
        peak_nav=float(data["peak_nav"]),
    )


def load_book(store: Store, initial_capital: float) -> Portfolio:
    """The persisted local book, or all cash at ``initial_capital`` before the first trade."""
    raw = store.select(select(BOOK_STATE.c.state).where(BOOK_STATE.c.portfolio == PORTFOLIO))
    if raw.empty:
        return Portfolio.initial(initial_capital)
    return book_from_dict(json.loads(raw.iloc[0, 0]))


def last_prices(store: Store, symbols: Sequence[str], as_of: date) -> dict[str, float]:
    """The last close on or before ``as_of`` per symbol (USD)."""
    if not symbols:
        return {}
    bars = store.load_bars(list(symbols), as_of - timedelta(days=14), as_of)
    last = bars.groupby("symbol").last()
    return {str(s): float(c) for s, c in last["close"].items()}


def build_broker(settings: Settings, store: Store) -> RetryingBroker:
    """The configured broker (simulated paper, or Alpaca's paper API) with bounded retries."""
    config = settings.execution
    return RetryingBroker(_venue(settings, store), config.max_retries, config.retry_backoff_seconds)


def _venue(settings: Settings, store: Store) -> Broker:
    if settings.broker == "alpaca":
        from tiller.execution.alpaca import AlpacaPaperBroker

        # retries live in the orders stage (with_retries), not a second time in the adapter
        return AlpacaPaperBroker.from_settings(
            settings, retries=0, timeout=settings.execution.broker_timeout_seconds
        )
    from tiller.execution.simulated import SimulatedBroker

    return SimulatedBroker(store, settings)


# ---------------------------------------------------------------- the report
@dataclass
class ExecutionReport:
    """What the stage did: rows to persist, the new book and its NAV snapshot."""

    as_of: date
    book: Portfolio
    snapshot: NavSnapshot
    audit: AuditLog
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    fills: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    reconciliations: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0
    unreachable: str | None = None
    unknown: int = 0  # orders of the day whose outcome the broker could not tell us
    all_failed: bool = False  # every order of the day failed (or stayed unknown)

    @property
    def trading_failed(self) -> str | None:
        """Why the day's trading failed (the run is then not ``completed``), or None."""
        if self.unreachable:
            return self.unreachable
        if self.all_failed:
            return f"every one of the day's {len(self.orders)} order(s) failed at the broker"
        if self.unknown:
            return f"{self.unknown} order(s) still of unknown outcome (the broker did not answer)"
        return None


class Executor:
    """One orders-stage run: holds the broker, the book and the rows to persist."""

    def __init__(self, ctx: RunContext, broker: RetryingBroker):
        self.ctx = ctx
        self.store = ctx.store
        self.settings = ctx.settings
        self.config = ctx.settings.execution
        self.broker = broker
        self.book = load_book(self.store, ctx.settings.optimize.initial_capital)
        self.audit = AuditLog(ctx.as_of, ctx.run_id, ctx.settings.home_dir / "audit")
        self.orders: dict[str, dict[str, Any]] = {}
        self.fills: list[dict[str, Any]] = []
        self.reconciliations: list[dict[str, Any]] = []
        self.rejections: list[dict[str, Any]] = []
        self.failures = 0
        self.unreachable: str | None = None

    # -------------------------------------------------------------- orders
    def _open_local_orders(self, planned: bool = False) -> list[dict[str, Any]]:
        """Orders not final yet: stored ones, with this run's unsaved updates taking
        precedence; with ``planned`` also those written ahead but not known to be sent."""
        final = [s.value for s in OrderStatus if s.terminal] + ["failed", "abandoned"]
        if not planned:
            final.append("planned")
        # only this broker's orders: after TILLER_BROKER changes, the new broker is never
        # asked about the old one's orders
        query = select(ORDERS).where(
            ORDERS.c.status.not_in(final), ORDERS.c.broker == self.broker.name
        )
        stored = {
            str(r["client_order_id"]): dict(r) for r in self.store.select(query).to_dict("records")
        }
        merged = {**stored, **self.orders}
        return [r for r in merged.values() if r["status"] not in final]

    def open_symbols(self) -> set[str]:
        """Symbols with an order that may still fill (sent, not final)."""
        return {str(r["symbol"]) for r in self._open_local_orders()}

    def _row(self, cid: str) -> dict[str, Any] | None:
        if cid in self.orders:
            return self.orders[cid]
        frame = self.store.select(select(ORDERS).where(ORDERS.c.client_order_id == cid))
        return None if frame.empty else dict(frame.to_dict("records")[0])

    def _absorb(self, row: dict[str, Any], order: BrokerOrder) -> None:
        """Record the broker's view of an order; apply any new fill to the book once."""
        new_qty = round(order.filled_qty - float(row["filled_qty"] or 0.0), 10)
        if new_qty > 0 and order.filled_avg_price:
            before = float(row["filled_qty"] or 0.0) * float(row["filled_avg_price"] or 0.0)
            price = (order.filled_qty * order.filled_avg_price - before) / new_qty
            commission = max(order.commission - float(row["commission"] or 0.0), 0.0)
            fill = Fill(
                row["client_order_id"],
                row["symbol"],
                OrderSide(row["side"]),
                new_qty,
                price,
                commission,
                order.filled_at or utcnow(),
            )
            self.book = apply_fill(self.book, fill)
            self.fills.append(
                {
                    "client_order_id": fill.client_order_id,
                    "as_of": self.ctx.as_of,
                    "symbol": fill.symbol,
                    "side": fill.side.value,
                    "qty": fill.qty,
                    "price": fill.price,
                    "commission": fill.commission,
                    "filled_at": fill.filled_at,
                }
            )
            self.audit.add(
                "fill",
                {"qty": new_qty, "price": price, "commission": commission},
                row["correlation_id"],
                row["symbol"],
            )
        row.update(
            broker_order_id=order.broker_id,
            status=order.status.value,
            filled_qty=order.filled_qty,
            filled_avg_price=order.filled_avg_price,
            commission=order.commission,
            reason=order.reject_reason or row.get("reason"),
            updated_at=utcnow(),
        )
        self.orders[row["client_order_id"]] = row

    def sync(self) -> None:
        """Read every unfinished order back from the broker and book new fills once.

        Orders written ahead but never confirmed as sent (``planned``, e.g. after a crash
        between submit and persist) are looked up by client order id first: found, they
        are adopted with their fills (before :meth:`reconcile`, so a fill is booked once);
        not found and planned on an earlier day, they are ``abandoned`` (a decision is
        only sent on its own day).
        """
        for row in self._open_local_orders(planned=True):
            try:
                found = (
                    self.broker.get_order(row["broker_order_id"])
                    if row["broker_order_id"]
                    else self.broker.get_order_by_client_id(row["client_order_id"])
                )
            except BrokerError as exc:
                self.audit.add(
                    "order_sync_failed", {"error": exc.detail}, row["correlation_id"], row["symbol"]
                )
                continue
            if found is not None:
                if row["status"] in ("planned", "unknown"):
                    self.audit.add(
                        "order_adopted",
                        {"status": found.status.value, "was": row["status"]},
                        row["correlation_id"],
                        row["symbol"],
                    )
                self._absorb(row, found)
            elif row["status"] == "unknown":
                self._lost(row)
            elif row["status"] == "planned" and row["as_of"] < self.ctx.as_of:
                row.update(
                    status="abandoned",
                    reason=f"planned on {row['as_of']} but never sent (that run stopped "
                    "before submitting); not sent later: an order is for its own day",
                    updated_at=utcnow(),
                )
                self.orders[row["client_order_id"]] = row
                self.audit.add(
                    "order_abandoned",
                    {"reason": row["reason"]},
                    row["correlation_id"],
                    row["symbol"],
                )

    # ------------------------------------------------------- reconciliation
    def reconcile(self) -> None:
        """Make the book agree with the broker (positions and cash); audit each difference
        (:func:`~tiller.execution.accounting.align_to_broker`: symbols with an open order,
        and cash while any order is open, wait for the next run)."""
        aligned = align_to_broker(
            self.book,
            self.broker.positions(),
            self.broker.account().cash,
            self.open_symbols(),
            CASH_TOLERANCE,
        )
        for d in aligned.discrepancies:
            self._discrepancy(d.symbol, d.local_qty, d.broker_qty)
        if aligned.cash is not None:
            self._discrepancy("CASH", *aligned.cash)
        self.book = Portfolio(
            round(aligned.book.cash, 2),
            aligned.book.positions,
            round(aligned.book.realized_pnl, 2),
            aligned.book.fees,
            aligned.book.peak_nav,
        )

    def _discrepancy(self, symbol: str, local: float, remote: float) -> None:
        resolution = f"book set to the broker's {remote:g} (was {local:g})"
        self.reconciliations.append(
            {
                "as_of": self.ctx.as_of,
                "symbol": symbol,
                "local_qty": local,
                "broker_qty": remote,
                "resolution": resolution,
                "created_at": utcnow(),
                "run_id": self.ctx.run_id,
            }
        )
        self.audit.add(
            "reconciliation",
            {"local": local, "broker": remote, "resolution": resolution},
            None,
            symbol,
        )

    # ------------------------------------------------------------- planning
    def plan(self, result: OptimizationResult, decision: RiskDecision) -> list[OrderRequest]:
        """Orders for today (or the liquidation on an L4 halt); rejections are recorded."""
        as_of = self.ctx.as_of
        held = self.book.quantities()
        if decision.halted or "LIQUIDATE" in decision.actions:
            for order in self.broker.open_orders():
                self.broker.cancel_order(order.broker_id)
                self.audit.add(
                    "cancel", {"reason": "L4 emergency stop"}, order.client_order_id, order.symbol
                )
            classes = {
                s: self.settings.asset(s).asset_class for s in held if s in self.settings.assets
            }
            return liquidation_orders(as_of, held, self.config.strategy_tag, asset_classes=classes)
        universe = sorted(set(result.weights) - {"CASH"} | set(held))
        prices = last_prices(self.store, universe, as_of)
        snap = snapshot(self.book, prices, as_of)
        account = self.broker.account()
        weights = dict(result.weights)
        for symbol, why in self.quarantined_today().items():
            if symbol not in weights and symbol not in held:
                continue
            # keep what is held: a symbol whose bar today was refused is not traded today
            weights[symbol] = held.get(symbol, 0.0) * prices.get(symbol, 0.0) / snap.nav
            reason = f"not traded today: its bar for {as_of} is quarantined ({why})"
            self.rejections.append(
                {
                    "as_of": as_of,
                    "symbol": symbol,
                    "side": "-",
                    "qty": 0.0,
                    "reason": reason,
                    "run_id": self.ctx.run_id,
                }
            )
            self.audit.add("rejection", {"reason": reason}, None, symbol)
        plan = plan_orders(
            as_of,
            weights,
            held,
            prices,
            nav=snap.nav,
            cash=self.book.cash,
            buying_power=account.buying_power,
            decision=decision,
            assets=self.settings.assets,
            config=self.config,
            strategy=self.config.strategy_tag,
            paper_only=True,
        )
        for rejection in plan.rejected:
            side = rejection.side.value if rejection.side else None
            self.rejections.append(
                {
                    "as_of": as_of,
                    "symbol": rejection.symbol,
                    "side": side or "-",
                    "qty": rejection.qty,
                    "reason": rejection.reason,
                    "run_id": self.ctx.run_id,
                }
            )
            self.audit.add(
                "rejection",
                {"side": side, "qty": rejection.qty, "reason": rejection.reason},
                None,
                rejection.symbol,
            )
        return plan.orders

    def quarantined_today(self) -> dict[str, str]:
        """``{symbol: reason}`` of the symbols whose ``as_of`` bar validation refused."""
        frame = self.store.quarantined(self.ctx.as_of)
        if frame.empty:
            return {}
        today = frame[pd.to_datetime(frame["date"]).dt.date == self.ctx.as_of]
        return {str(r.symbol): str(r.reason) for r in today.itertuples()}

    def write_ahead(self, orders: Sequence[OrderRequest]) -> None:
        """Record the planned orders before anything is sent (their own transaction)."""
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for order in orders:
            if self._row(order.client_order_id) is not None:
                continue
            rows.append(
                {
                    "client_order_id": order.client_order_id,
                    "as_of": order.as_of,
                    "correlation_id": str(uuid.uuid4()),
                    "broker": self.broker.name,
                    "broker_order_id": None,
                    "symbol": order.symbol,
                    "side": order.side.value,
                    "qty": order.qty,
                    "status": "planned",
                    "filled_qty": 0.0,
                    "filled_avg_price": None,
                    "commission": 0.0,
                    "reason": None,
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                    "run_id": self.ctx.run_id,
                }
            )
        planned = AuditLog(self.ctx.as_of, self.ctx.run_id, self.audit.folder)
        for row in rows:
            planned.add(
                "order_planned",
                {"side": row["side"], "qty": row["qty"]},
                row["correlation_id"],
                row["symbol"],
            )
        with self.store.transaction() as tx:  # the rows and their audit events together
            self.store.insert(tx, ORDERS, rows)
            planned.write(self.store, tx)

    # ------------------------------------------------------------- sending
    def send_planned(self) -> None:
        """Send every planned order of ``as_of`` not yet at the broker (ask first, by id)."""
        query = select(ORDERS).where(ORDERS.c.as_of == self.ctx.as_of, ORDERS.c.status == "planned")
        for record in self.store.select(query).to_dict("records"):
            row: dict[str, Any] = self.orders.get(str(record["client_order_id"]), dict(record))
            if row["status"] != "planned":  # adopted or abandoned by sync() in this run
                continue
            request = OrderRequest(
                row["client_order_id"],
                row["symbol"],
                OrderSide(row["side"]),
                float(row["qty"]),
                row["as_of"],
            )
            try:
                existing = self.broker.get_order_by_client_id(request.client_order_id)
                if existing is not None:
                    self.audit.add(
                        "order_adopted",
                        {"status": existing.status.value},
                        row["correlation_id"],
                        row["symbol"],
                    )
                    self._absorb(row, existing)
                    continue
                accepted = self.broker.submit(request)
                attempts = self.broker.last_attempts
                fault("orders:after_submit")
            except BrokerError as exc:
                if exc.kind.transient:  # the request may have reached the broker
                    self._unknown(row, exc)
                else:
                    self._failed(row, exc)
                continue
            row["attempts"] = attempts
            self.failures = 0
            self.audit.add(
                "order_submitted",
                {"status": accepted.status.value, "attempts": attempts},
                row["correlation_id"],
                row["symbol"],
            )
            self._absorb(row, accepted)

    def _failed(self, row: dict[str, Any], exc: BrokerError) -> None:
        """The broker refused the order (a business rejection): final."""
        row.update(
            status="rejected",
            reason=f"{exc.kind}: {exc.detail}",
            attempts=getattr(exc, "attempts", 1),
            updated_at=utcnow(),
        )
        self.orders[row["client_order_id"]] = row
        self.audit.add(
            "order_failed",
            {"kind": str(exc.kind), "error": exc.detail},
            row["correlation_id"],
            row["symbol"],
        )

    def _unknown(self, row: dict[str, Any], exc: BrokerError) -> None:
        """No answer (timeout, connection lost, 5xx after the retries): the order may or may
        not exist at the broker.  It is ``unknown`` until :meth:`sync` asks the broker for
        its client order id: found, it is adopted with its fills; not found, it failed."""
        row.update(
            status="unknown",
            reason=f"no answer from the broker ({exc.kind}: {exc.detail}); asked again by "
            "client order id before the run ends",
            attempts=getattr(exc, "attempts", 1),
            updated_at=utcnow(),
        )
        self.orders[row["client_order_id"]] = row
        self.audit.add(
            "order_unknown",
            {"kind": str(exc.kind), "error": exc.detail},
            row["correlation_id"],
            row["symbol"],
        )

    def _lost(self, row: dict[str, Any]) -> None:
        """An ``unknown`` order the broker does not have: it failed."""
        row.update(
            status="failed",
            reason=f"{row.get('reason') or 'no answer'}; the broker has no order with this id",
            updated_at=utcnow(),
        )
        self.orders[row["client_order_id"]] = row
        self.failures += 1
        self.audit.add(
            "order_failed", {"error": row["reason"]}, row["correlation_id"], row["symbol"]
        )

    @property
    def today(self) -> list[dict[str, Any]]:
        """This run's orders of ``as_of`` (sent or tried)."""
        return [r for r in self.orders.values() if r["as_of"] == self.ctx.as_of]

    def settle(self) -> None:
        """Let the broker fill what it can now, then poll until final or time-out."""
        process = getattr(self.broker, "process", None)
        if process is not None:
            process(self.ctx.as_of)
            self.sync()
            return
        deadline = time.monotonic() + self.config.poll_timeout_seconds
        final = ("filled", "canceled", "expired", "rejected", "failed", "abandoned")
        while True:
            self.sync()  # also resolves the orders whose outcome is unknown
            pending = self._open_local_orders() or any(
                r["status"] not in final for r in self.orders.values()
            )
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(self.config.poll_interval_seconds)

    def report(self) -> ExecutionReport:
        held = sorted(self.book.positions)
        prices = last_prices(self.store, held, self.ctx.as_of)
        snap = snapshot(self.book, prices, self.ctx.as_of)
        self.book = update_peak(self.book, snap)
        snap = snapshot(self.book, prices, self.ctx.as_of)
        check_invariants(snap, self.settings.optimize.initial_capital)
        return ExecutionReport(
            self.ctx.as_of,
            self.book,
            snap,
            self.audit,
            self.orders,
            self.fills,
            self.rejections,
            self.reconciliations,
            self.failures,
            self.unreachable,
            unknown=sum(r["status"] == "unknown" for r in self.today),
            all_failed=bool(self.today)
            and all(r["status"] in ("failed", "unknown") for r in self.today),
        )


def execute(
    ctx: RunContext,
    result: OptimizationResult,
    decision: RiskDecision,
    signals: Sequence[Signal] = (),
) -> ExecutionReport:
    """Steps 1-6 of the module docstring against the configured broker."""
    executor = Executor(ctx, build_broker(ctx.settings, ctx.store))
    for signal in signals:
        executor.audit.add(
            "signal",
            {
                "signal": signal.signal.value,
                "confidence": signal.confidence,
                "long_eligible": signal.long_eligible,
                "reason": signal.reason,
            },
            None,
            signal.symbol,
        )
    executor.audit.add(
        "risk_check",
        {
            "level": decision.level.name,
            "drawdown": decision.drawdown,
            "orders_allowed": decision.orders_allowed,
            "buy_allowed": decision.buy_allowed,
            "kill_switch": decision.kill_switch,
            "actions": decision.actions,
        },
    )
    process = getattr(executor.broker, "process", None)
    if process is not None:
        process(ctx.as_of)
    try:
        executor.sync()
        executor.reconcile()
    except BrokerError as exc:
        if not exc.kind.transient:
            raise
        # the broker is down: send nothing, pause trading, keep the book as it was
        executor.unreachable = f"broker unreachable after retries: {exc.detail}"
        executor.audit.add("broker_unreachable", {"error": exc.detail})
        return executor.report()
    emergency = decision.halted or "LIQUIDATE" in decision.actions
    planned_today = not executor.store.select(
        select(ORDERS.c.client_order_id).where(ORDERS.c.as_of == ctx.as_of)
    ).empty
    if not decision.orders_allowed:
        executor.audit.add("orders_blocked", {"reason": decision.kill_reason})
    elif emergency or not planned_today:
        # liquidation ids differ from rebalance ids, so an emergency stop on a day that
        # already traded is still sent, once
        executor.write_ahead(executor.plan(result, decision))
    executor.send_planned()
    executor.settle()
    fault("orders:after_settle")
    try:
        executor.reconcile()  # the book leaves the run equal to the broker
    except BrokerError as exc:
        if not exc.kind.transient:
            raise
        executor.audit.add("reconcile_deferred", {"error": exc.detail})
    return executor.report()


def pause_trading(ctx: RunContext, tx: Connection, report: ExecutionReport) -> None:
    """Switch the kill switch on (until a person turns it off): the broker is unreachable,
    or orders failed at the broker several times in a row."""
    from tasks.risk import PORTFOLIO as RISK_PORTFOLIO
    from tiller.risk import RiskState, set_kill_switch

    stored = ctx.store.load_risk_state(RISK_PORTFOLIO)
    state = RiskState.from_dict(stored) if stored else RiskState()
    why = report.trading_failed or f"{report.failures} orders failed in a row at the broker"
    reason = f"{why}; trading paused (check the broker, then `tiller risk kill-switch off`)"
    paused = set_kill_switch(state, True, reason, by="system")
    ctx.store.save_risk_state(tx, RISK_PORTFOLIO, ctx.as_of, paused.to_dict())
    report.audit.add("trading_paused", {"reason": reason, "failures": report.failures})


def orders_stage(
    ctx: RunContext,
    result: OptimizationResult,
    decision: RiskDecision,
    signals: Sequence[Signal] = (),
) -> StageOutcome:
    """Trade towards the targets of ``as_of``; persist orders, fills, book and NAV."""
    key = fingerprint(
        ctx.as_of,
        sorted(result.weights.items()),
        int(decision.level),
        decision.orders_allowed,
        decision.halted,
        ctx.settings.broker,
    )

    def compute() -> ExecutionReport:
        return execute(ctx, result, decision, signals)

    def persist(tx: Connection, report: ExecutionReport) -> tuple[str, str]:
        store = ctx.store
        for row in report.orders.values():
            store.upsert(tx, ORDERS, [row], ("client_order_id",))
        store.insert(tx, FILLS, report.fills)
        store.replace_for_as_of(tx, ORDER_REJECTIONS, ctx.as_of)
        store.insert(tx, ORDER_REJECTIONS, report.rejections)
        store.insert(tx, RECONCILIATIONS, report.reconciliations)
        store.upsert(
            tx,
            BOOK_STATE,
            [
                {
                    "portfolio": PORTFOLIO,
                    "as_of": ctx.as_of,
                    "state": json.dumps(book_to_dict(report.book), sort_keys=True),
                    "updated_at": utcnow(),
                }
            ],
            ("portfolio",),
        )
        snap = report.snapshot
        store.replace_for_as_of(tx, NAV_SNAPSHOTS, ctx.as_of)
        store.replace_for_as_of(tx, POSITION_SNAPSHOTS, ctx.as_of)
        store.insert(
            tx,
            NAV_SNAPSHOTS,
            [
                {
                    "as_of": ctx.as_of,
                    "portfolio": PORTFOLIO,
                    "cash": snap.cash,
                    "positions_value": snap.positions_value,
                    "nav": snap.nav,
                    "peak_nav": snap.peak_nav,
                    "drawdown": snap.drawdown,
                    "realized_pnl": snap.realized_pnl,
                    "unrealized_pnl": snap.unrealized_pnl,
                    "fees": snap.fees,
                    "run_id": ctx.run_id,
                }
            ],
        )
        store.insert(
            tx,
            POSITION_SNAPSHOTS,
            [
                {
                    "as_of": ctx.as_of,
                    "portfolio": PORTFOLIO,
                    "symbol": symbol,
                    "qty": m.qty,
                    "price": m.price,
                    "value": m.value,
                    "avg_cost": m.avg_cost,
                    "unrealized_pnl": m.unrealized,
                    "weight": m.value / snap.nav if snap.nav else 0.0,
                }
                for symbol, m in snap.positions.items()
            ],
        )
        if report.trading_failed or report.failures >= ctx.settings.execution.pause_after_failures:
            pause_trading(ctx, tx, report)
        report.audit.write(store, tx)
        return "completed", f"nav_snapshots?as_of={ctx.as_of.isoformat()}"

    outcome = run_stage(ctx, "orders", key, compute, persist)
    fault("orders:after_commit")
    export_day(ctx.store, ctx.as_of, ctx.settings.home_dir / "audit")
    return outcome
