"""The orders stage end to end: simulated and Alpaca (local fake) brokers, idempotency,
crash recovery, reconciliation, broker faults, and the NAV invariant."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select

from tasks.execute import orders_stage
from tasks.ingest import ingest_stage
from tests.fakes.alpaca_trading_server import AlpacaTradingState, alpaca_trading_server
from tiller.domain import Signal, SignalType
from tiller.portfolio.optimize import OptimizationResult
from tiller.risk import RiskInputs, RiskState, assess_risk
from tiller.store.repo import (
    AUDIT_EVENTS,
    FILLS,
    NAV_SNAPSHOTS,
    ORDERS,
    RECONCILIATIONS,
    Store,
)
from tiller.store.simbroker import ORDERS as SIM_ORDERS

from .helpers import context

DAY1, DAY2 = date(2024, 3, 7), date(2024, 3, 8)
ACCEPTED = ("new", "pending_new", "accepted")  # accepted by the broker, not filled yet
KEY, SECRET = "PKFAKETRADINGKEY0000", "faketradingsecret000000000000000000000000"


def _targets(**weights: float) -> OptimizationResult:
    weights = {**weights, "CASH": round(1 - sum(weights.values()), 10)}
    return OptimizationResult(
        weights=weights,
        raw_weights={},
        target_weights=weights,
        method="risk_parity",
        reason="test targets",
        risk_contributions={},
    )


def _decision(settings: Any, as_of: date, nav: float = 100_000.0):  # type: ignore[no-untyped-def]
    """L0, nothing held: every universe asset carries a confident BUY."""
    signals = tuple(
        Signal(s, SignalType.BUY, 0.8, "test: BUY", long_eligible=True) for s in settings.symbols
    )
    return assess_risk(
        RiskInputs(as_of=as_of, nav=nav, signals=signals), RiskState(), settings.risk
    )


def _count(store: Store, table: Any, *where: Any) -> int:
    query = select(func.count()).select_from(table)
    for clause in where:
        query = query.where(clause)
    return int(store.select(query).iloc[0, 0])


@pytest.fixture
def market(make_settings, db_url: str):  # type: ignore[no-untyped-def]
    """Synthetic bars for GLD, SPY, XLV and VIX up to DAY2 in a fresh database."""

    def make(**overrides: Any):  # type: ignore[no-untyped-def]
        overrides.setdefault("universe", "GLD,SPY,XLV")
        settings = make_settings(database_url=db_url, history_start=date(2024, 1, 2), **overrides)
        ingest_stage(context(settings, DAY2, flow="data-ingest"))
        return settings

    return make


def test_simulated_orders_accept_today_fill_next_open_and_never_twice(market) -> None:
    settings = market()
    targets = _targets(GLD=0.3, SPY=0.2)
    first = context(settings, DAY1)
    report = orders_stage(first, targets, _decision(settings, DAY1)).value
    store = first.store
    statuses = {r["symbol"]: r["status"] for r in report.orders.values()}
    assert statuses == {"GLD": "accepted", "SPY": "accepted"}  # accepted, not filled
    assert report.snapshot.nav == 100_000.0 and report.fills == []

    second = context(settings, DAY2)
    filled = orders_stage(second, targets, _decision(settings, DAY2)).value
    bars = store.load_bars(["GLD", "SPY"], DAY2, DAY2).set_index("symbol")
    for row in filled.orders.values():
        if row["as_of"] == DAY1:
            assert row["status"] == "filled"
            # a buy fills at the next session's open plus slippage (>= 5 bps base)
            assert row["filled_avg_price"] >= bars.loc[row["symbol"], "open"] * 1.0005
    snap = filled.snapshot
    held = sum(m.qty * m.price for m in snap.positions.values())
    assert round(snap.cash + held, 2) == snap.nav  # cash + sum(qty x price) = NAV to the cent
    assert snap.fees > 0

    sent = _count(store, SIM_ORDERS)
    fills = _count(store, FILLS)
    again = context(settings, DAY2, force=True)
    orders_stage(again, targets, _decision(settings, DAY2))  # a forced rerun of the same day
    assert _count(store, SIM_ORDERS) == sent and _count(store, FILLS) == fills


def test_a_crash_between_submit_and_persist_sends_nothing_twice(
    market, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = market()
    targets = _targets(GLD=0.3, SPY=0.2)
    ctx = context(settings, DAY1)

    def killed(book: Any) -> dict[str, Any]:
        raise RuntimeError("process killed before the stage's transaction committed")

    monkeypatch.setattr("tasks.execute.book_to_dict", killed)
    with pytest.raises(RuntimeError, match="killed"):
        orders_stage(ctx, targets, _decision(settings, DAY1))
    monkeypatch.undo()
    store = ctx.store
    sent = _count(store, SIM_ORDERS)
    assert sent == 2  # the broker has them; our stage output was rolled back
    assert _count(store, ORDERS, ORDERS.c.status == "planned") == 2  # the write-ahead rows

    rerun = context(settings, DAY1)
    report = orders_stage(rerun, targets, _decision(settings, DAY1)).value
    assert _count(store, SIM_ORDERS) == sent  # nothing sent twice
    assert {r["status"] for r in report.orders.values()} == {"accepted"}
    adopted = _count(store, AUDIT_EVENTS, AUDIT_EVENTS.c.kind == "order_adopted")
    assert adopted == 2


@pytest.fixture
def alpaca(market, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ALPACA_API_KEY", KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)
    with alpaca_trading_server(AlpacaTradingState()) as server:
        settings = market(
            broker="alpaca",
            alpaca_url=server.url,
            execution={
                "retry_backoff_seconds": 0.01,
                "poll_timeout_seconds": 0.3,
                "poll_interval_seconds": 0.05,
                "max_retries": 2,
            },
        )
        yield settings, server


def test_alpaca_orders_fill_later_and_rate_limits_are_retried(alpaca) -> None:
    settings, server = alpaca
    server.fail_next(429, {"message": "too many requests"}, times=2)
    ctx = context(settings, DAY1)
    report = orders_stage(ctx, _targets(GLD=0.3), _decision(settings, DAY1)).value
    (row,) = report.orders.values()
    assert row["status"] in ACCEPTED
    assert not server.faults  # both 429s were answered and retried past
    server.fill(row["client_order_id"], price=190.0)
    later = orders_stage(context(settings, DAY2), _targets(GLD=0.3), _decision(settings, DAY2))
    snap = later.value.snapshot
    assert snap.positions["GLD"].qty == row["qty"]
    assert _count(ctx.store, RECONCILIATIONS) == 0


def test_alpaca_outage_fails_orders_alerts_and_pauses_trading(alpaca) -> None:
    settings, server = alpaca
    server.fail_path("POST", "/v2/orders", 503, "<html>503 Service Unavailable</html>", times=100)
    ctx = context(settings, DAY1)
    report = orders_stage(ctx, _targets(GLD=0.3, SPY=0.3, XLV=0.1), _decision(settings, DAY1))
    rows = report.value.orders.values()
    assert {r["status"] for r in rows} == {"failed"} and len(rows) == 3
    assert all(r["attempts"] == 3 for r in rows)  # 1 try + 2 bounded retries
    store = ctx.store
    assert _count(store, AUDIT_EVENTS, AUDIT_EVENTS.c.kind == "order_failed") == 3
    state = store.load_risk_state("paper")
    assert state is not None and state["kill_switch"] is True
    assert _count(store, NAV_SNAPSHOTS) == 1  # the book and NAV stay consistent


def test_alpaca_rejections_are_recorded_with_their_reason(alpaca) -> None:
    settings, server = alpaca
    server.state.market_open = False  # after hours: Alpaca queues day orders, no error
    server.fail_path(
        "POST", "/v2/orders", 403, {"code": 40310000, "message": "insufficient buying power"}
    )
    ctx = context(settings, DAY1)
    report = orders_stage(ctx, _targets(GLD=0.3, SPY=0.2, XLV=0.1), _decision(settings, DAY1))
    by_symbol = {r["symbol"]: r for r in report.value.orders.values()}
    assert by_symbol["XLV"]["status"] == "rejected"  # the fake's exchange has no XLV
    assert "unknown_symbol" in by_symbol["XLV"]["reason"]
    rejected = [r for r in by_symbol.values() if "insufficient_buying_power" in (r["reason"] or "")]
    assert len(rejected) == 1
    accepted = [r for r in by_symbol.values() if r["status"] in ACCEPTED]
    assert len(accepted) == 1  # the market is closed, yet the order is queued


def test_a_fill_we_missed_is_reconciled_to_the_broker(alpaca) -> None:
    settings, server = alpaca
    server.set_position("SPY", 10, 500.0, adjust_cash=True)
    ctx = context(settings, DAY1)
    report = orders_stage(ctx, _targets(), _decision(settings, DAY1)).value
    assert report.book.positions["SPY"].qty == 10
    symbols = {r["symbol"] for r in report.reconciliations}
    assert symbols == {"SPY", "CASH"}
    snap = report.snapshot
    # invariant after the adjustment: NAV = capital + realized + unrealized - fees
    assert round(100_000 + snap.realized_pnl + snap.unrealized_pnl - snap.fees, 2) == snap.nav
    assert _count(ctx.store, AUDIT_EVENTS, AUDIT_EVENTS.c.kind == "reconciliation") == 2


def test_an_unreachable_broker_pauses_trading_and_sends_nothing(alpaca) -> None:
    settings, server = alpaca
    server.fail_path("GET", "/v2/positions", 503, "<html>503</html>", times=100)
    ctx = context(settings, DAY1)
    report = orders_stage(ctx, _targets(GLD=0.3), _decision(settings, DAY1)).value
    assert report.orders == {} and server.order_requests() == []
    state = ctx.store.load_risk_state("paper")
    assert state is not None and state["kill_switch"] is True
    assert "unreachable" in state["kill_reason"]


def _emergency(settings: Any, as_of: date):  # type: ignore[no-untyped-def]
    """An L4 decision: NAV 84,000 against a 100,000 peak is a 16% drawdown (>= 15%)."""
    decision = assess_risk(
        RiskInputs(as_of=as_of, nav=84_000.0), RiskState(peak_nav=100_000.0), settings.risk
    )
    assert decision.halted and "LIQUIDATE" in decision.actions
    return decision


def test_l4_emergency_stop_liquidates_everything(market) -> None:
    settings = market()
    targets = _targets(GLD=0.3, SPY=0.2)
    orders_stage(context(settings, DAY1), targets, _decision(settings, DAY1))
    ctx = context(settings, DAY2)
    report = orders_stage(ctx, targets, _emergency(settings, DAY2)).value
    held = {s: p.qty for s, p in report.book.positions.items()}  # day 1 buys filled at open
    assert set(held) == {"GLD", "SPY"}
    stops = [r for r in report.orders.values() if "-stop-" in r["client_order_id"]]
    assert {(r["symbol"], r["side"], r["qty"]) for r in stops} == {
        (s, "sell", q) for s, q in held.items()
    }


def test_l4_emergency_stop_cancels_open_orders(market) -> None:
    settings = market(execution={"fill_delay_sessions": 5})  # day 1 orders stay open
    orders_stage(context(settings, DAY1), _targets(GLD=0.3), _decision(settings, DAY1))
    ctx = context(settings, DAY2)
    report = orders_stage(ctx, _targets(GLD=0.3), _emergency(settings, DAY2)).value
    assert {r["status"] for r in report.orders.values()} == {"canceled"}
    assert _count(ctx.store, AUDIT_EVENTS, AUDIT_EVENTS.c.kind == "cancel") == 1


# --- outcomes the broker did not tell us -------------------------------------------------


@pytest.fixture
def lossy(market, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Alpaca fake that fills market orders as they arrive; no retries, a short timeout."""
    monkeypatch.setenv("ALPACA_API_KEY", KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)
    state = AlpacaTradingState(fill_on_submit=True)
    with alpaca_trading_server(state) as server:
        settings = market(
            broker="alpaca",
            alpaca_url=server.url,
            execution={
                "broker_timeout_seconds": 0.3,
                "max_retries": 0,
                "poll_timeout_seconds": 0.5,
                "poll_interval_seconds": 0.05,
            },
        )
        yield settings, server


def test_an_order_whose_answer_was_lost_is_asked_for_and_booked_not_marked_failed(
    lossy,
) -> None:
    """Every submit's answer is lost (held past the client's timeout) while the broker
    creates and fills the order: the order is ``unknown``, then found by its client order
    id before the run ends and booked with its fill; book = broker, nothing resent."""
    settings, server = lossy
    server.state.stall_after_submit = [1.0, 1.0]
    ctx = context(settings, DAY1)
    report = orders_stage(ctx, _targets(GLD=0.3, SPY=0.2), _decision(settings, DAY1)).value
    assert {r["status"] for r in report.orders.values()} == {"filled"}
    assert report.trading_failed is None and report.unknown == 0
    posted = [body["client_order_id"] for body in server.order_requests()]
    assert len(posted) == len(set(posted)) == 2  # each sent once
    held = {s: p.qty for s, p in report.book.positions.items()}
    assert held == {s.replace("/", ""): p["qty"] for s, p in server.state.positions.items()}
    assert report.book.cash == pytest.approx(server.state.cash, abs=0.05)
    kinds = ctx.store.select(select(AUDIT_EVENTS.c.kind))["kind"].tolist()
    assert kinds.count("order_unknown") == 2 and kinds.count("order_adopted") == 2
    assert _count(ctx.store, FILLS) == 2


def test_an_order_never_created_after_a_lost_answer_is_failed_and_pauses_trading(lossy) -> None:
    """A 503 storm: no order is created; each is unknown, then looked up: not there, so it
    failed.  Every order of the day failed: trading is paused (recorded as automatic,
    not manual) and the stage says the day's trading failed."""
    settings, server = lossy
    server.fail_path("POST", "/v2/orders", 503, "<html>503 Service Unavailable</html>", times=50)
    ctx = context(settings, DAY1)
    report = orders_stage(ctx, _targets(GLD=0.3, SPY=0.2), _decision(settings, DAY1)).value
    assert {r["status"] for r in report.orders.values()} == {"failed"}
    assert "the broker has no order with this id" in next(iter(report.orders.values()))["reason"]
    assert report.all_failed and report.trading_failed
    assert "every one of the day's 2 order(s) failed" in report.trading_failed
    state = ctx.store.load_risk_state("paper")
    assert state is not None and state["kill_switch"] is True and state["manual_by"] == "system"
    assert state["kill_reason"].startswith("automatic pause: every one of the day's 2 order(s)")


def test_an_unanswered_broker_leaves_the_outcome_unknown_and_the_day_failed(lossy) -> None:
    """The answers are lost and, after the two asks before sending, the broker cannot be
    asked either: the orders stay ``unknown`` (never ``failed`` while they may exist), the
    day failed, and the next run asks again and books them once."""
    settings, server = lossy
    server.state.stall_after_submit = [1.0, 1.0]
    lookups = "/v2/orders:by_client_order_id"
    server.fail_path("GET", lookups, 503, "<html>503</html>", times=500, after=2)
    ctx = context(settings, DAY1)
    report = orders_stage(ctx, _targets(GLD=0.3, SPY=0.2), _decision(settings, DAY1)).value
    assert {r["status"] for r in report.orders.values()} == {"unknown"}
    assert report.unknown == 2 and report.trading_failed
    server.path_faults.clear()
    # the next session asks again: both orders exist (filled), and are booked once
    later = orders_stage(context(settings, DAY2), _targets(), _decision(settings, DAY2)).value
    day1 = [r for r in later.orders.values() if r["as_of"] == DAY1]
    assert {r["status"] for r in day1} == {"filled"}
    held = {s: p.qty for s, p in later.book.positions.items()}
    assert held == {s.replace("/", ""): p["qty"] for s, p in server.state.positions.items()}


def test_after_switching_brokers_the_new_one_is_never_asked_about_the_old_ones_orders(
    market, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paper orders left open (they fill 5 sessions later), then TILLER_BROKER=alpaca: the
    Alpaca API is asked about no paper order, and those stay as they were."""
    paper = market(execution={"fill_delay_sessions": 5})
    first = orders_stage(context(paper, DAY1), _targets(GLD=0.3), _decision(paper, DAY1)).value
    paper_ids = {r["client_order_id"] for r in first.orders.values()}
    assert paper_ids
    monkeypatch.setenv("ALPACA_API_KEY", KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)
    with alpaca_trading_server(AlpacaTradingState()) as server:
        alpaca = market(
            broker="alpaca",
            alpaca_url=server.url,
            execution={"fill_delay_sessions": 5, "poll_timeout_seconds": 0.2},
        )
        orders_stage(context(alpaca, DAY2), _targets(), _decision(alpaca, DAY2))
        asked = [f"{r.path} {r.query}" for r in server.requests if "orders" in r.path]
        assert not any(cid in text for cid in paper_ids for text in asked), asked
    store = Store.open(paper.db_url)
    statuses = store.select(select(ORDERS.c.client_order_id, ORDERS.c.status, ORDERS.c.broker))
    left = statuses[statuses["client_order_id"].isin(paper_ids)]
    assert set(left["broker"]) == {"paper"} and set(left["status"]) == {"accepted"}
