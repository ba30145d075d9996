"""The orders stage (SPEC stage 8): load the book, run the day's order life cycle
(:mod:`tiller.execution.lifecycle`), persist orders, fills, book and NAV with the
checkpoint.  Everything except the orders written ahead lands in one transaction."""

from __future__ import annotations

from collections.abc import Sequence

from tasks.checkpoint import StageOutcome, fingerprint, run_stage
from tasks.context import RunContext
from tasks.portfolio import PORTFOLIO, load_book
from tiller.domain import Signal
from tiller.execution.accounting import book_to_dict
from tiller.execution.audit import AuditLog, export_day
from tiller.execution.broker import Broker
from tiller.execution.lifecycle import ExecutionReport, OrderLifecycle, execute
from tiller.execution.retry import RetryingBroker
from tiller.faults import fault
from tiller.portfolio.optimize import OptimizationResult
from tiller.risk import RiskDecision, RiskState, set_kill_switch
from tiller.settings import Settings
from tiller.store import Tx
from tiller.store import book as book_store
from tiller.store.repo import Store


def build_broker(settings: Settings, store: Store) -> RetryingBroker:
    """The configured broker (simulated paper, or Alpaca's paper API) behind the one retry
    layer (bounded, with backoff)."""
    config = settings.execution
    return RetryingBroker(_venue(settings, store), config.max_retries, config.retry_backoff_seconds)


def _venue(settings: Settings, store: Store) -> Broker:
    if settings.broker == "alpaca":
        from tiller.execution.alpaca import AlpacaPaperBroker

        return AlpacaPaperBroker.from_settings(settings)
    from tiller.execution.simulated import SimulatedBroker

    return SimulatedBroker(store, settings)


def pause_trading(ctx: RunContext, tx: Tx, report: ExecutionReport) -> None:
    """Switch the kill switch on (until a person turns it off): the broker is unreachable,
    the day's orders failed, or orders failed at the broker several times in a row."""
    stored = ctx.store.load_risk_state(PORTFOLIO)
    state = RiskState.from_dict(stored) if stored else RiskState()
    why = report.trading_failed or f"{report.failures} orders failed in a row at the broker"
    reason = f"{why}; trading paused (check the broker, then `tiller risk kill-switch off`)"
    paused = set_kill_switch(state, True, reason, by="system")
    ctx.store.save_risk_state(tx, PORTFOLIO, ctx.as_of, paused.to_dict())
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
        settings = ctx.settings
        lifecycle = OrderLifecycle(
            book_store.Journal(ctx.store),
            build_broker(settings, ctx.store),
            ctx.as_of,
            ctx.run_id,
            settings,
            load_book(ctx.store, settings.optimize.initial_capital),
            AuditLog(ctx.as_of, ctx.run_id, settings.home_dir / "audit"),
        )
        rebalance = result.method != "hold"
        return execute(lifecycle, result.weights, decision, signals, rebalance)

    def persist(tx: Tx, report: ExecutionReport) -> tuple[str, str]:
        store = ctx.store
        book_store.save_orders(tx, store, list(report.orders.values()))
        book_store.save_fills(tx, store, report.fills)
        book_store.replace_rejections(tx, store, ctx.as_of, report.rejections)
        book_store.save_reconciliations(tx, store, report.reconciliations)
        book_store.save_state(tx, store, PORTFOLIO, ctx.as_of, book_to_dict(report.book))
        snap = report.snapshot
        book_store.save_snapshot(
            tx,
            store,
            PORTFOLIO,
            ctx.as_of,
            {
                "cash": snap.cash,
                "positions_value": snap.positions_value,
                "nav": snap.nav,
                "peak_nav": snap.peak_nav,
                "drawdown": snap.drawdown,
                "realized_pnl": snap.realized_pnl,
                "unrealized_pnl": snap.unrealized_pnl,
                "fees": snap.fees,
                "run_id": ctx.run_id,
            },
            [
                {
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
