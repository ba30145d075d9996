"""The order life cycle of one trading day (SPEC stage 8): targets -> orders -> broker
-> fills -> book -> NAV.

1. the broker plays the sessions that have arrived (:meth:`Broker.advance`: the simulated
   broker fills yesterday's orders at today's open; a real one fills on its own clock);
2. every unfinished order is read back from the broker -- orders written ahead but not
   known to be sent are looked up by client order id and adopted -- and new fills are
   booked once (by the growth of the order's filled quantity);
3. the book is reconciled with the broker's positions and cash
   (:func:`~tiller.execution.accounting.align_to_broker`); a difference is recorded,
   audited and resolved to the broker's truth;
4. on an L4 halt open orders are cancelled and everything is sold; otherwise the targets
   are turned into orders and checked before trading
   (:func:`tiller.pipeline.decide.orders`, as the backtest plans them);
5. planned orders are written ahead (their own transaction, with their audit events) and
   then sent, each with a deterministic client order id: the broker is asked for the id
   first, so a rerun or a crash between submit and persist never sends twice; an order
   whose answer is lost is ``unknown`` until the broker is asked for it;
6. fills are polled until every order is final or the poll time-out passes (open orders
   are picked up by the next run), the book is reconciled again and valued at the
   ``as_of`` closes: cash + sum(qty x price) = NAV to the cent.

Persistence is behind :class:`OrderJournal` (the store's implementation is
:class:`tiller.store.book.Journal`); the caller persists the :class:`ExecutionReport`
with its checkpoint.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from tiller.domain import Signal
from tiller.execution.accounting import (
    Fill,
    NavSnapshot,
    Portfolio,
    align_to_broker,
    apply_fill,
    check_invariants,
    snapshot,
    update_peak,
)
from tiller.execution.audit import AuditLog
from tiller.execution.broker import (
    BrokerError,
    BrokerOrder,
    OrderRequest,
    OrderSide,
    OrderStatus,
)
from tiller.execution.retry import RetryingBroker
from tiller.faults import fault
from tiller.pipeline import decide
from tiller.risk import RiskDecision
from tiller.settings import Settings
from tiller.store.repo import utcnow

CASH_TOLERANCE = 0.05  # USD: rounding noise between the book and the broker


class OrderJournal(Protocol):
    """Where a day's orders are written ahead and read back (the store, or a test double)."""

    def unsettled_orders(self, broker: str, final: Sequence[str]) -> list[dict[str, Any]]:
        """Orders of ``broker`` whose status is not in ``final``."""
        ...

    def order(self, client_order_id: str) -> dict[str, Any] | None: ...

    def planned(self, as_of: date) -> list[dict[str, Any]]:
        """Orders of ``as_of`` written ahead and not known to be sent."""
        ...

    def any_orders(self, as_of: date) -> bool: ...

    def write_ahead(self, rows: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]) -> None:
        """Record planned orders and their audit events, committed before any is sent."""
        ...

    def prices(self, symbols: Sequence[str], as_of: date) -> dict[str, float]:
        """The last close on or before ``as_of`` of each symbol (USD)."""
        ...

    def quarantined_today(self, as_of: date) -> dict[str, str]:
        """Symbols whose ``as_of`` bar validation refused, with the reason."""
        ...


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


class OrderLifecycle:
    """One day's order life cycle: holds the broker, the book and the rows to persist.

    Parameters
    ----------
    journal:
        Where the orders are written ahead and read back (:class:`OrderJournal`).
    broker:
        The venue, behind the retry layer (:class:`~tiller.execution.retry.RetryingBroker`,
        which counts the attempts of each call).
    as_of, run_id:
        The session traded and the run doing it.
    settings:
        Execution, universe and cost settings.
    book:
        The book as persisted after the last run.
    audit:
        The day's audit log (events land with the stage's output).
    """

    def __init__(
        self,
        journal: OrderJournal,
        broker: RetryingBroker,
        as_of: date,
        run_id: str,
        settings: Settings,
        book: Portfolio,
        audit: AuditLog,
    ):
        self.journal = journal
        self.as_of = as_of
        self.run_id = run_id
        self.settings = settings
        self.config = settings.execution
        self.broker = broker
        self.book = book
        self.audit = audit
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
        stored = {
            str(r["client_order_id"]): r
            for r in self.journal.unsettled_orders(self.broker.name, final)
        }
        merged = {**stored, **self.orders}
        return [r for r in merged.values() if r["status"] not in final]

    def open_symbols(self) -> set[str]:
        """Symbols with an order that may still fill (sent, not final)."""
        return {str(r["symbol"]) for r in self._open_local_orders()}

    def _row(self, cid: str) -> dict[str, Any] | None:
        if cid in self.orders:
            return self.orders[cid]
        return self.journal.order(cid)

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
                    "as_of": self.as_of,
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
            elif row["status"] == "planned" and row["as_of"] < self.as_of:
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
                "as_of": self.as_of,
                "symbol": symbol,
                "local_qty": local,
                "broker_qty": remote,
                "resolution": resolution,
                "created_at": utcnow(),
                "run_id": self.run_id,
            }
        )
        self.audit.add(
            "reconciliation",
            {"local": local, "broker": remote, "resolution": resolution},
            None,
            symbol,
        )

    # ------------------------------------------------------------- planning
    def plan(
        self, weights: Mapping[str, float], decision: RiskDecision, hold: bool = False
    ) -> list[OrderRequest]:
        """Orders for today towards ``weights`` (or the liquidation on an L4 halt), through
        :func:`tiller.pipeline.decide.orders` as the backtest plans them; rejections are
        recorded.  ``hold`` (a day that does not rebalance): towards the current weights,
        so only the exits and halvings risk forces are traded."""
        as_of = self.as_of
        held = self.book.quantities()
        if decision.halted or "LIQUIDATE" in decision.actions:
            for order in self.broker.open_orders():
                self.broker.cancel_order(order.broker_id)
                self.audit.add(
                    "cancel", {"reason": "L4 emergency stop"}, order.client_order_id, order.symbol
                )
            return decide.orders(as_of, {}, held, {}, 0.0, 0.0, 0.0, decision, self.settings).orders
        universe = sorted(set(weights) - {"CASH"} | set(held))
        prices = self.journal.prices(universe, as_of)
        snap = snapshot(self.book, prices, as_of)
        account = self.broker.account()
        wanted = dict(weights)
        if hold:
            wanted = {s: m.value / snap.nav for s, m in snap.positions.items()}
        for symbol, why in self.journal.quarantined_today(as_of).items():
            if symbol not in wanted and symbol not in held:
                continue
            # keep what is held: a symbol whose bar today was refused is not traded today
            wanted[symbol] = held.get(symbol, 0.0) * prices.get(symbol, 0.0) / snap.nav
            reason = f"not traded today: its bar for {as_of} is quarantined ({why})"
            self._reject(symbol, None, 0.0, reason)
        plan = decide.orders(
            as_of,
            wanted,
            held,
            prices,
            snap.nav,
            self.book.cash,
            account.buying_power,
            decision,
            self.settings,
        )
        for rejection in plan.rejected:
            self._reject(rejection.symbol, rejection.side, rejection.qty, rejection.reason)
        return plan.orders

    def _reject(self, symbol: str, side: OrderSide | None, qty: float, reason: str) -> None:
        self.rejections.append(
            {
                "as_of": self.as_of,
                "symbol": symbol,
                "side": side.value if side else "-",
                "qty": qty,
                "reason": reason,
                "run_id": self.run_id,
            }
        )
        self.audit.add(
            "rejection",
            {"side": side.value if side else None, "qty": qty, "reason": reason},
            None,
            symbol,
        )

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
                    "run_id": self.run_id,
                }
            )
        planned = AuditLog(self.as_of, self.run_id, self.audit.folder)
        for row in rows:
            planned.add(
                "order_planned",
                {"side": row["side"], "qty": row["qty"]},
                row["correlation_id"],
                row["symbol"],
            )
        self.journal.write_ahead(rows, planned.take())  # rows and events together

    # ------------------------------------------------------------- sending
    def send_planned(self) -> None:
        """Send every planned order of ``as_of`` not yet at the broker (ask first, by id)."""
        for record in self.journal.planned(self.as_of):
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
        return [r for r in self.orders.values() if r["as_of"] == self.as_of]

    def settle(self) -> None:
        """Let the broker fill what it can now (the simulated broker fills at once), then poll
        until every order is final or the poll time-out passes.  A broker that fills only
        when advanced (the simulated one: today's orders fill at the next session) is read
        once, not polled: waiting would change nothing."""
        self.broker.advance(self.as_of)
        deadline = time.monotonic() + self.config.poll_timeout_seconds
        final = ("filled", "canceled", "expired", "rejected", "failed", "abandoned")
        while True:
            self.sync()  # also resolves the orders whose outcome is unknown
            pending = self._open_local_orders() or any(
                r["status"] not in final for r in self.orders.values()
            )
            if not pending or not self.broker.fills_on_own_clock or time.monotonic() >= deadline:
                break
            time.sleep(self.config.poll_interval_seconds)

    def report(self) -> ExecutionReport:
        held = sorted(self.book.positions)
        prices = self.journal.prices(held, self.as_of)
        snap = snapshot(self.book, prices, self.as_of)
        self.book = update_peak(self.book, snap)
        snap = snapshot(self.book, prices, self.as_of)
        check_invariants(snap, self.settings.optimize.initial_capital)
        return ExecutionReport(
            self.as_of,
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
    lifecycle: OrderLifecycle,
    weights: Mapping[str, float],
    decision: RiskDecision,
    signals: Sequence[Signal] = (),
    rebalance: bool = True,
) -> ExecutionReport:
    """The day's life cycle (the module docstring's steps) against the lifecycle's broker.

    ``rebalance`` False (a day off the cadence): nothing is planned unless risk forces an
    exit or a halving (:func:`tiller.pipeline.decide.trades_today`); fills of earlier
    orders are still read and the book reconciled."""
    for signal in signals:
        lifecycle.audit.add(
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
    lifecycle.audit.add(
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
    try:
        lifecycle.broker.advance(lifecycle.as_of)
        lifecycle.sync()
        lifecycle.reconcile()
    except BrokerError as exc:
        if not exc.kind.transient:
            raise
        # the broker is down: send nothing, pause trading, keep the book as it was
        lifecycle.unreachable = f"broker unreachable after retries: {exc.detail}"
        lifecycle.audit.add("broker_unreachable", {"error": exc.detail})
        return lifecycle.report()
    emergency = decision.halted or "LIQUIDATE" in decision.actions
    if not decision.orders_allowed:
        lifecycle.audit.add("orders_blocked", {"reason": decision.kill_reason})
    elif emergency or (
        decide.trades_today(rebalance, decision)
        and not lifecycle.journal.any_orders(lifecycle.as_of)
    ):
        # liquidation ids differ from rebalance ids, so an emergency stop on a day that
        # already traded is still sent, once
        lifecycle.write_ahead(lifecycle.plan(weights, decision, hold=not rebalance))
    lifecycle.send_planned()
    lifecycle.settle()
    fault("orders:after_settle")
    try:
        lifecycle.reconcile()  # the book leaves the run equal to the broker
    except BrokerError as exc:
        if not exc.kind.transient:
            raise
        lifecycle.audit.add("reconcile_deferred", {"error": exc.detail})
    return lifecycle.report()
