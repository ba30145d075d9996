"""The risk stage (SPEC stage 6): hand-worked ladders, stops, correlation, kill switch,
re-entry, state round-trip, and the 2008 drawdown of real SPY closes."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiller.data.base import SeriesKind, SeriesRequest
from tiller.data.providers.csv import CsvProvider
from tiller.domain import RiskLevel, Signal, SignalType
from tiller.risk import (
    PositionInfo,
    RiskInputs,
    RiskState,
    assess_risk,
    reset_after_confirmation,
    risk_status,
    set_kill_switch,
)
from tiller.risk.correlation import correlation_report
from tiller.risk.ladder import drawdown_level
from tiller.risk.reentry import annualised_volatility, ramp_fraction
from tiller.settings import RiskConfig

from .conftest import MARKET

CONFIG = RiskConfig()  # the defaults, identical to config/risk.yaml
CLASSES = {"GLD": "commodity", "SPY": "equity", "QQQ": "equity", "BTC-USD": "crypto", "TLT": "bond"}
DAY = date(2024, 3, 1)
PEAK = 100_000.0


def _state(**changes: object) -> RiskState:
    return replace(RiskState(peak_nav=PEAK, last_date=DAY - timedelta(days=1)), **changes)


def _inputs(nav: float, **changes: object) -> RiskInputs:
    base = RiskInputs(as_of=DAY, nav=nav, asset_classes=CLASSES)
    return replace(base, **changes)


def _position(entry: float = 100.0, price: float = 100.0, qty: float = 10.0) -> PositionInfo:
    return PositionInfo(qty=qty, entry_price=entry, price=price, weight=0.1)


def _buy(symbol: str, confidence: float = 0.9) -> Signal:
    return Signal(symbol, SignalType.BUY, confidence, "test", True)


def _calm_returns(n: int = 30, daily: float = 0.001) -> pd.Series:
    """Alternating +/-daily: annualised vol = daily * sqrt(252) * sqrt(n / (n - 1))."""
    return pd.Series([daily if i % 2 else -daily for i in range(n)], dtype=float)


# --- the drawdown ladder, worked by hand --------------------------------------------------


@pytest.mark.parametrize(
    ("nav", "drawdown", "level", "distance", "exposure"),
    [
        # 1 - 96,000 / 100,000 = 4%   -> L0; 5 - 4 = 1 point to L1
        (96_000, 0.04, RiskLevel.L0, 0.01, 1.0),
        # 1 - 95,000 / 100,000 = 5%   -> L1 exactly at the threshold; 8 - 5 = 3 points to L2
        (95_000, 0.05, RiskLevel.L1, 0.03, 1.0),
        # 1 - 92,000 / 100,000 = 8%   (0.07999999999999996 in floats) -> L2; 4 points to L3
        (92_000, 0.08, RiskLevel.L2, 0.04, 0.75),
        # 1 - 91,500 / 100,000 = 8.5% -> L2; 12 - 8.5 = 3.5 points to L3; exposure 1 - 0.25
        (91_500, 0.085, RiskLevel.L2, 0.035, 0.75),
        # 1 - 87,000 / 100,000 = 13%  -> L3; 15 - 13 = 2 points to L4; exposure 1 - 0.5
        (87_000, 0.13, RiskLevel.L3, 0.02, 0.5),
        # 1 - 85,000 / 100,000 = 15%  -> L4; no level above; exposure 0
        (85_000, 0.15, RiskLevel.L4, None, 0.0),
    ],
)
def test_hand_worked_levels(
    nav: float, drawdown: float, level: RiskLevel, distance: float | None, exposure: float
) -> None:
    decision = assess_risk(_inputs(nav), _state(), CONFIG)
    assert decision.drawdown == pytest.approx(drawdown)
    assert decision.level == level
    if distance is None:
        assert decision.distance_to_next is None
    else:
        assert decision.distance_to_next == pytest.approx(distance)
    assert decision.exposure_scale == pytest.approx(exposure)
    assert decision.decisions[0].kind == "level"
    assert decision.decisions[0].reason.startswith(level.name)


def test_peak_is_updated_with_todays_nav_first() -> None:
    # NAV 105,000 above the stored peak 100,000: the new peak is 105,000, drawdown 0.
    decision = assess_risk(_inputs(105_000), _state(), CONFIG)
    assert decision.peak_nav == 105_000
    assert decision.drawdown == 0
    assert decision.state.peak_nav == 105_000
    # First day ever: no peak yet, today's NAV becomes the peak.
    first = assess_risk(_inputs(100_000), RiskState(), CONFIG)
    assert first.state.peak_nav == 100_000
    assert first.level == RiskLevel.L0
    assert first.distance_to_next == pytest.approx(0.05)


def test_level_reason_quotes_the_numbers() -> None:
    decision = assess_risk(_inputs(91_500), _state(level=RiskLevel.L1), CONFIG)
    reason = decision.decisions[0].reason
    assert "L2 (was L1)" in reason
    assert "8.50%" in reason and "100,000.00" in reason and "91,500.00" in reason
    assert "3.50 points to L3" in reason


def test_l1_alerts_raises_confidence_and_blocks_new_btc() -> None:
    # 1 - 94,000 / 100,000 = 6% -> L1
    positions = {"BTC-USD": _position()}
    decision = assess_risk(
        _inputs(94_000, positions=positions, signals=[_buy("BTC-USD"), _buy("SPY", 0.5)]),
        _state(),
        CONFIG,
    )
    assert decision.level == RiskLevel.L1
    assert decision.actions == ["ALERT", "RAISE_CONFIDENCE_THRESHOLD", "BLOCK_NEW_BTC"]
    assert decision.min_confidence == 0.6
    assert decision.buy_allowed and decision.orders_allowed
    assert "BTC-USD" in decision.allowed_symbols  # may be kept...
    assert decision.blocked_buys == ("BTC-USD",)  # ...but not bought more
    assert decision.forced_exits == {}
    assert decision.may_buy("BTC-USD", 0.9)[0] is False
    assert decision.may_buy("SPY", 0.7) == (True, "allowed at L1")
    ok, why = decision.may_buy("SPY", 0.5)
    assert not ok and "0.50 < L1 minimum 0.60" in why
    blocked = {e.symbol for e in decision.decisions if e.kind == "buy_block"}
    assert blocked == {"BTC-USD", "SPY"}  # BTC: no new crypto; SPY: confidence 0.5 < 0.6
    # At L0 any confidence will do.
    calm = assess_risk(_inputs(99_000), _state(), CONFIG)
    assert calm.min_confidence == 0.0 and calm.actions == [] and calm.blocked_buys == ()


def test_l2_closes_btc_cuts_exposure_and_is_sell_only() -> None:
    positions = {"BTC-USD": _position(), "SPY": _position()}
    decision = assess_risk(_inputs(91_500, positions=positions), _state(), CONFIG)
    assert decision.level == RiskLevel.L2
    assert decision.actions == [
        "ALERT",
        "RAISE_CONFIDENCE_THRESHOLD",
        "REDUCE_EXPOSURE_25",
        "CLOSE_BTC",
        "SELL_ONLY",
    ]
    assert decision.exposure_scale == 0.75
    assert not decision.buy_allowed and decision.orders_allowed
    assert "sell-only" in (decision.buy_block_reason or "")
    assert set(decision.forced_exits) == {"BTC-USD"}
    assert "SPY" in decision.allowed_symbols and "BTC-USD" not in decision.allowed_symbols


def test_l3_holds_only_safe_havens_and_flags_review() -> None:
    # 1 - 87,000 / 100,000 = 13% -> L3
    positions = {"SPY": _position(), "GLD": _position(), "BTC-USD": _position()}
    decision = assess_risk(_inputs(87_000, positions=positions), _state(), CONFIG)
    assert decision.level == RiskLevel.L3
    assert {"REDUCE_EXPOSURE_50", "SAFE_HAVENS_ONLY", "MANUAL_REVIEW", "SELL_ONLY"} <= set(
        decision.actions
    )
    assert decision.allowed_symbols == ("GLD", "TLT")  # safe havens in the universe
    assert set(decision.forced_exits) == {"SPY", "BTC-USD"}
    assert "only safe havens" in decision.forced_exits["SPY"]
    assert decision.exposure_scale == 0.5
    assert not decision.buy_allowed


def test_l4_liquidates_and_halts_until_a_person_confirms() -> None:
    positions = {"SPY": _position(), "GLD": _position()}
    # 1 - 84,000 / 100,000 = 16% -> L4
    fired = assess_risk(
        _inputs(84_000, positions=positions, signals=[_buy("GLD")]), _state(), CONFIG
    )
    assert fired.level == RiskLevel.L4 and fired.halted
    assert fired.actions == ["ALERT", "MANUAL_REVIEW", "LIQUIDATE", "HALT"]
    assert fired.exposure_scale == 0 and not fired.buy_allowed
    assert set(fired.forced_exits) == {"SPY", "GLD"}
    assert fired.allowed_symbols == ()
    assert any(
        e.kind == "halt" and "tiller risk reset --confirm" in e.reason for e in fired.decisions
    )
    assert fired.state.halted_since == DAY

    # The NAV recovers to a new high: still halted, nothing bought, exposure 0.
    state = fired.state
    for offset, nav in enumerate([90_000, 99_000, 101_000, 110_000], start=1):
        day = DAY + timedelta(days=offset)
        decision = assess_risk(
            _inputs(nav, as_of=day, signals=[_buy("GLD")], portfolio_returns=_calm_returns()),
            state,
            CONFIG,
        )
        assert decision.level == RiskLevel.L4 and decision.halted
        assert decision.exposure_scale == 0 and not decision.buy_allowed
        assert decision.may_buy("GLD", 1.0)[0] is False
        assert any(e.kind == "halted" for e in decision.decisions)
        assert decision.state.low_vol_days == 0  # calm days do not count while halted
        state = decision.state
    assert state.peak_nav == 110_000

    # The person confirms: waiting (exposure still 0), peak rebased to the next NAV.
    reset = reset_after_confirmation(state, DAY + timedelta(days=4))
    assert not reset.halted and reset.reentry_phase == "waiting" and reset.peak_nav is None
    waiting = assess_risk(
        _inputs(80_000, as_of=DAY + timedelta(days=5), signals=[_buy("GLD")]), reset, CONFIG
    )
    assert waiting.level == RiskLevel.L0 and waiting.drawdown == 0 and waiting.peak_nav == 80_000
    assert waiting.exposure_scale == 0 and not waiting.buy_allowed
    assert waiting.actions == ["REENTRY_WAIT"]
    with pytest.raises(ValueError, match="not halted"):
        reset_after_confirmation(waiting.state, DAY + timedelta(days=5))
    with pytest.raises(ValueError, match="before the halt"):
        reset_after_confirmation(state, DAY - timedelta(days=1))


def test_l4_during_the_ramp_halts_again() -> None:
    ramping = _state(reentry_phase="ramping", ramp_fraction=0.5, ramp_started=DAY - timedelta(7))
    decision = assess_risk(_inputs(84_000), ramping, CONFIG)
    assert decision.halted and decision.reentry_phase is None and decision.exposure_scale == 0


level_states = st.builds(
    RiskState,
    peak_nav=st.floats(50_000, 200_000),
    level=st.sampled_from(list(RiskLevel)),
    halted=st.booleans(),
    reentry_phase=st.sampled_from([None, "waiting", "ramping"]),
    low_vol_days=st.integers(0, 4),
    ramp_fraction=st.sampled_from([0.25, 0.5, 0.75, 1.0]),
    ramp_started=st.just(DAY - timedelta(days=3)),
    manual_kill=st.booleans(),
    manual_reason=st.just("test"),
    last_date=st.just(DAY - timedelta(days=1)),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    state=level_states,
    drawdowns=st.lists(st.floats(0, 0.6), min_size=2, max_size=6),
    correlated=st.booleans(),
)
def test_level_is_monotone_in_drawdown(
    state: RiskState, drawdowns: list[float], correlated: bool
) -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0, 0.01, 60)
    noise = rng.normal(0, 0.01, 60)
    spy_qqq = pd.DataFrame({"SPY": base, "QQQ": base + (0.2 if correlated else 3) * noise})
    peak = state.peak_nav or PEAK
    previous: tuple[RiskLevel, float, bool] | None = None
    for drawdown in sorted(drawdowns):
        inputs = _inputs(
            peak * (1 - drawdown),
            returns=spy_qqq,
            positions={"SPY": _position(), "QQQ": _position()},
            portfolio_returns=_calm_returns(),
        )
        decision = assess_risk(inputs, state, CONFIG)
        current = (decision.level, decision.exposure_scale, decision.buy_allowed)
        if previous is not None:
            assert current[0] >= previous[0]  # level never falls as drawdown deepens
            assert current[1] <= previous[1] + 1e-12  # exposure never grows
            assert current[2] <= previous[2]  # buying never re-opens
        previous = current


# --- per-asset stops ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "outcome"),
    [
        (88.5, None),  # (100 - 88.5) / 100 = 11.5% < 12%: nothing
        (88.0, "halve"),  # (100 - 88) / 100 = 12%: halve
        (83.0, "halve"),  # 17% < 18%: still only halve
        (82.0, "exit"),  # (100 - 82) / 100 = 18%: exit
        (60.0, "exit"),  # 40%: exit
        (130.0, None),  # in profit
    ],
)
def test_stops_from_entry(price: float, outcome: str | None) -> None:
    positions = {"SPY": _position(entry=100.0, price=price)}
    decision = assess_risk(_inputs(PEAK, positions=positions), _state(), CONFIG)
    assert ("SPY" in decision.halve) == (outcome == "halve")
    assert ("SPY" in decision.forced_exits) == (outcome == "exit")
    if outcome == "halve":
        assert f"{1 - price / 100:.1%} below its entry 100.00" in decision.halve["SPY"]
        assert "SPY" in decision.allowed_symbols
    if outcome == "exit":
        assert ">= exit stop 18%" in decision.forced_exits["SPY"]
        assert "SPY" not in decision.allowed_symbols


def test_a_position_is_halved_once() -> None:
    positions = {"SPY": _position(entry=100.0, price=87.0)}  # 13% loss
    day1 = assess_risk(_inputs(PEAK, positions=positions), _state(), CONFIG)
    assert "SPY" in day1.halve and day1.state.halved == {"SPY": 100.0}
    day2 = assess_risk(
        _inputs(PEAK, positions=positions, as_of=DAY + timedelta(1)), day1.state, CONFIG
    )
    assert day2.halve == {} and any(e.kind == "stop_held" for e in day2.decisions)
    # Closed, then a new position at another entry: the memory is gone.
    day3 = assess_risk(_inputs(PEAK, as_of=DAY + timedelta(2)), day2.state, CONFIG)
    assert day3.state.halved == {}
    # A halving decided while the kill switch is on is not remembered (not executed).
    killed = assess_risk(_inputs(PEAK, positions=positions, stale_data=True), _state(), CONFIG)
    assert "SPY" in killed.halve and killed.state.halved == {}


# --- correlation --------------------------------------------------------------------------


def _orthonormal(n: int = 60, k: int = 3) -> np.ndarray:
    """``k`` zero-mean, orthonormal columns: exact correlations by construction."""
    rng = np.random.default_rng(42)
    raw = rng.normal(size=(n, k))
    raw -= raw.mean(axis=0)
    q, _ = np.linalg.qr(raw)
    return q * 0.01


def test_identical_series_raise_l2_and_cap_every_pair() -> None:
    base = _orthonormal()[:, 0]
    returns = pd.DataFrame({"SPY": base, "QQQ": base, "GLD": base})
    positions = {s: _position() for s in returns}
    decision = assess_risk(_inputs(PEAK, returns=returns, positions=positions), _state(), CONFIG)
    assert decision.drawdown == 0
    assert decision.level == RiskLevel.L2  # every pair rho = 1 > 0.8
    assert decision.pair_caps == [("GLD", "QQQ", 0.4), ("GLD", "SPY", 0.4), ("QQQ", "SPY", 0.4)]
    assert "CAP_CORRELATED_PAIRS" in decision.actions
    assert any("raised to L2 by the correlation monitor" in e.reason for e in decision.decisions)


def test_one_correlated_pair_gets_a_cap_without_raising_the_level() -> None:
    e = _orthonormal()
    # rho(SPY, QQQ) = 0.9 exactly; GLD orthogonal to both: average (0.9 + 0 + 0) / 3 = 0.3
    returns = pd.DataFrame(
        {"SPY": e[:, 0], "QQQ": 0.9 * e[:, 0] + math.sqrt(1 - 0.81) * e[:, 1], "GLD": e[:, 2]}
    )
    report = correlation_report(returns, ["SPY", "QQQ", "GLD"], CONFIG)
    assert report.average == pytest.approx(0.3)
    assert report.capped_pairs == (("QQQ", "SPY", 0.4),)
    assert report.level_floor == RiskLevel.L0
    # Only held or candidate assets are monitored: GLD alone with SPY has no cap.
    decision = assess_risk(
        _inputs(PEAK, returns=returns, positions={"SPY": _position()}, signals=[_buy("QQQ")]),
        _state(),
        CONFIG,
    )
    assert decision.pair_caps == [("QQQ", "SPY", 0.4)]
    assert decision.correlation_average == pytest.approx(0.9)


def test_average_above_half_raises_l1() -> None:
    e = _orthonormal()
    # rho(A, B) = rho(A, C) = 0.75, rho(B, C) = 0.75^2 = 0.5625: average 0.6875 > 0.5,
    # not every pair > 0.8 -> L1; the two pairs above 0.7 are capped.
    s = math.sqrt(1 - 0.75**2)
    returns = pd.DataFrame(
        {"A": e[:, 0], "B": 0.75 * e[:, 0] + s * e[:, 1], "C": 0.75 * e[:, 0] + s * e[:, 2]}
    )
    report = correlation_report(returns, ["A", "B", "C"], CONFIG)
    assert report.average == pytest.approx((0.75 + 0.75 + 0.5625) / 3)
    assert report.level_floor == RiskLevel.L1
    assert {(a, b) for a, b, _ in report.capped_pairs} == {("A", "B"), ("A", "C")}


def test_correlation_needs_two_assets_and_enough_rows() -> None:
    base = _orthonormal()[:, 0]
    one = correlation_report(pd.DataFrame({"SPY": base}), ["SPY"], CONFIG)
    assert one.level_floor == RiskLevel.L0 and one.average is None
    # 29 rows < max(10, 60 // 2) = 30 overlapping rows: no correlation at all.
    short = pd.DataFrame({"SPY": base[:29], "QQQ": base[:29]})
    assert correlation_report(short, ["SPY", "QQQ"], CONFIG).pairs == ()
    # Only the last 60 rows count: an old identical stretch is forgotten.
    e = _orthonormal(120, 2)
    frame = pd.DataFrame({"SPY": e[:, 0], "QQQ": np.concatenate([e[:60, 0], e[60:, 1]])})
    recent = correlation_report(frame, ["SPY", "QQQ"], CONFIG)
    expected = float(np.corrcoef(e[60:, 0], e[60:, 1])[0, 1])
    assert recent.pairs[0][2] == pytest.approx(expected)


# --- kill switch --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        # 1 - 96,500 / 100,000 = 3.5% > 3%
        ({"previous_nav": 100_000.0}, "daily loss 3.50%"),
        ({"stale_data": True}, "stale"),
        ({"broker_reachable": False}, "broker is unreachable"),
        ({"errors_today": 5}, "5 errors today >= burst limit 5"),
    ],
)
def test_automatic_kill_switch_triggers(changes: dict[str, object], phrase: str) -> None:
    decision = assess_risk(_inputs(96_500, **changes), _state(), CONFIG)
    assert decision.kill_switch and not decision.orders_allowed and not decision.buy_allowed
    assert phrase in (decision.kill_reason or "")
    assert "KILL_SWITCH" in decision.actions
    assert decision.may_buy("SPY", 1.0)[0] is False
    # The same day rerun with the condition gone keeps it; the next day clears it.
    rerun = assess_risk(_inputs(96_500), decision.state, CONFIG)
    assert rerun.kill_switch and phrase in (rerun.kill_reason or "")
    nxt = assess_risk(_inputs(96_500, as_of=DAY + timedelta(1)), decision.state, CONFIG)
    assert not nxt.kill_switch and nxt.orders_allowed and nxt.buy_allowed
    assert any(e.kind == "kill_switch" and "cleared" in e.reason for e in nxt.decisions)


def test_kill_switch_thresholds_are_strict() -> None:
    # 1 - 97,000 / 100,000 = 3% exactly: not above 3%; 4 errors < 5
    decision = assess_risk(
        _inputs(97_000, previous_nav=100_000.0, errors_today=4), _state(), CONFIG
    )
    assert not decision.kill_switch and decision.buy_allowed


def test_manual_kill_switch_holds_until_turned_off() -> None:
    state = set_kill_switch(_state(), True, "operator: broker maintenance")
    for offset in range(3):
        decision = assess_risk(_inputs(PEAK, as_of=DAY + timedelta(offset)), state, CONFIG)
        assert decision.kill_switch and "manual: operator: broker maintenance" in (
            decision.kill_reason or ""
        )
        state = decision.state
    state = set_kill_switch(state, False, "done")
    decision = assess_risk(_inputs(PEAK, as_of=DAY + timedelta(3)), state, CONFIG)
    assert not decision.kill_switch and decision.buy_allowed
    with pytest.raises(ValueError, match="needs a reason"):
        set_kill_switch(state, True, " ")


# --- re-entry -----------------------------------------------------------------------------


def test_volatility_and_ramp_arithmetic() -> None:
    # 20 returns alternating +-1%: sample std = 0.01 * sqrt(20 / 19); x sqrt(252)
    sigma = annualised_volatility(_calm_returns(20, 0.01))
    assert sigma == pytest.approx(0.01 * math.sqrt(20 / 19) * math.sqrt(252))
    assert annualised_volatility(_calm_returns(19)) is None
    start = date(2024, 1, 1)
    fractions = [ramp_fraction(start, start + timedelta(days=d), CONFIG) for d in (0, 6, 7, 14, 21)]
    assert fractions == [0.25, 0.25, 0.5, 0.75, 1.0]


def test_waiting_counts_consecutive_low_vol_days_once_per_day() -> None:
    state = _state(reentry_phase="waiting", ramp_fraction=0.0)
    calm, wild = _calm_returns(), _calm_returns(daily=0.02)  # ~1.6% and ~32% annualised
    sequence = [calm, calm, wild, calm, calm, calm, calm]
    counts = []
    for offset, returns in enumerate(sequence):
        day = DAY + timedelta(offset)
        decision = assess_risk(_inputs(PEAK, as_of=day, portfolio_returns=returns), state, CONFIG)
        rerun = assess_risk(_inputs(PEAK, as_of=day, portfolio_returns=returns), state, CONFIG)
        rerun2 = assess_risk(
            _inputs(PEAK, as_of=day, portfolio_returns=returns), decision.state, CONFIG
        )
        assert rerun.state == decision.state
        assert rerun2.state.low_vol_days == decision.state.low_vol_days  # no double count
        counts.append(decision.state.low_vol_days)
        state = decision.state
    assert counts == [1, 2, 0, 1, 2, 3, 4]
    assert state.reentry_phase == "waiting"
    fifth = assess_risk(
        _inputs(PEAK, as_of=DAY + timedelta(7), portfolio_returns=calm), state, CONFIG
    )
    assert fifth.reentry_phase == "ramping" and fifth.exposure_scale == 0.25
    assert fifth.buy_allowed and fifth.state.ramp_started == DAY + timedelta(7)
    # Too few returns: not a low-volatility day.
    short = assess_risk(
        _inputs(PEAK, as_of=DAY + timedelta(7), portfolio_returns=_calm_returns(5)), state, CONFIG
    )
    assert short.state.low_vol_days == 0


# --- state persistence and status ---------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    positions = {"SPY": _position(entry=100.0, price=87.0)}
    state = set_kill_switch(_state(), True, "why not")
    decision = assess_risk(_inputs(84_000, positions=positions, stale_data=True), state, CONFIG)
    state = set_kill_switch(decision.state, False, "ok")
    for candidate in (RiskState(), decision.state, state, reset_after_confirmation(state, DAY)):
        text = json.dumps(candidate.to_dict())
        assert RiskState.from_dict(json.loads(text)) == candidate
    json.dumps(decision.to_dict())  # the whole decision is JSON-able too
    with pytest.raises(ValueError, match="unknown key"):
        RiskState.from_dict({"peak": 1})
    with pytest.raises(ValueError, match="L0..L4"):
        RiskState.from_dict({"level": "L9"})


@given(
    st.builds(
        RiskState,
        peak_nav=st.one_of(st.none(), st.floats(1, 1e9)),
        level=st.sampled_from(list(RiskLevel)),
        halted=st.booleans(),
        halted_since=st.one_of(st.none(), st.dates()),
        reentry_phase=st.sampled_from([None, "waiting", "ramping"]),
        low_vol_days=st.integers(0, 100),
        ramp_fraction=st.floats(0, 1),
        ramp_started=st.one_of(st.none(), st.dates()),
        kill_switch=st.booleans(),
        kill_reason=st.one_of(st.none(), st.text()),
        manual_kill=st.booleans(),
        last_date=st.one_of(st.none(), st.dates()),
        halved=st.dictionaries(st.text(min_size=1), st.floats(0.01, 1e6)),
    )
)
def test_any_state_round_trips(state: RiskState) -> None:
    assert RiskState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_risk_status() -> None:
    status = risk_status(_state(level=RiskLevel.L2), 91_500, CONFIG)
    assert status["level"] == "L2" and status["drawdown_level"] == "L2"
    assert status["drawdown"] == pytest.approx(0.085)
    assert status["next_level"] == "L3" and status["distance_to_next"] == pytest.approx(0.035)
    assert status["kill_switch"] is False and status["halted"] is False
    halted = risk_status(_state(halted=True, level=RiskLevel.L4), 120_000, CONFIG)
    assert halted["distance_to_next"] is None and halted["reset_command"]
    assert halted["peak_nav"] == 120_000
    json.dumps(status)


def test_dates_must_not_go_backwards() -> None:
    with pytest.raises(ValueError, match="before the risk state's last assessed date"):
        assess_risk(_inputs(PEAK, as_of=DAY - timedelta(days=5)), _state(), CONFIG)
    with pytest.raises(ValueError, match="positive"):
        assess_risk(_inputs(0.0), _state(), CONFIG)


# --- real data: the 2008 drawdown ---------------------------------------------------------


def _day(state: RiskState, nav: float, offset: int, **changes: object):
    """Assess ``DAY + offset`` from ``state`` (calm portfolio returns unless overridden)."""
    changes.setdefault("portfolio_returns", _calm_returns())
    return assess_risk(_inputs(nav, as_of=DAY + timedelta(days=offset), **changes), state, CONFIG)


def test_sold_out_at_a_sell_only_level_keeps_the_true_peak_and_recovers_through_a_ramp() -> None:
    # Day 0: 1 - 91,000 / 100,000 = 9% -> L2, sell-only, everything sold.  The peak is not
    # rebased (the loss is real) and calm sessions are counted.
    state = _state()
    first = _day(state, 91_000, 0, positions={"SPY": _position()})
    assert first.level == RiskLevel.L2 and first.peak_nav == PEAK
    assert not first.buy_allowed and "sell-only" in (first.buy_block_reason or "")
    assert first.state.low_vol_days == 1 and first.reentry_phase is None
    state = first.state
    # Days 1..8: flat in cash, calm: still L2 with the true 9% drawdown, still sell-only.
    for offset in range(1, 9):
        decision = _day(state, 91_000, offset)
        assert decision.level == RiskLevel.L2 and decision.drawdown == pytest.approx(0.09)
        assert decision.peak_nav == PEAK and not decision.buy_allowed
        assert not any(e.kind == "rebase" for e in decision.decisions)
        state = decision.state
    assert state.low_vol_days == 9
    # Day 9: the 10th calm session: buying resumes through the recovery ramp, exposure
    # capped at 0.25 (ramp) x 0.75 (L2) = 0.1875; the level and drawdown stay true.
    ramp = _day(state, 91_000, 9, signals=[_buy("GLD"), _buy("BTC-USD")])
    assert ramp.level == RiskLevel.L2 and ramp.drawdown == pytest.approx(0.09)
    assert ramp.reentry_phase == "ramping" and ramp.state.ramp_origin == "recovery"
    assert ramp.buy_allowed and ramp.exposure_scale == pytest.approx(0.1875)
    assert "RECOVERY_RAMP" in ramp.actions and "SELL_ONLY" not in ramp.actions
    assert ramp.may_buy("GLD", 0.9)[0] and not ramp.may_buy("BTC-USD", 0.9)[0]  # no crypto
    recovery = [e for e in ramp.decisions if e.kind == "recovery_start"]
    assert recovery and "10 consecutive calm sessions" in recovery[0].reason
    # A week later: 50% x 0.75 = 0.375.
    later = _day(ramp.state, 91_500, 16)
    assert later.level == RiskLevel.L2 and later.exposure_scale == pytest.approx(0.375)


def _wild_returns() -> np.ndarray:
    # +-5% a day: sigma = 0.05 x sqrt(252) ~ 79% a year, far above the calm target
    return np.array([0.05, -0.05] * 10)


def test_a_recovery_measures_calm_on_what_it_may_buy() -> None:
    # At L2 the target portfolio holds crypto (wild) beside calm ETFs; the recovery ramp
    # buys no crypto, so its calm test reads the non-crypto part: calm sessions count.
    state = _state(level=RiskLevel.L2)
    calm = _day(
        state, 91_000, 0, portfolio_returns=_wild_returns(), recovery_returns=_calm_returns()
    )
    assert calm.state.low_vol_days == 1
    # without a separate recovery series the whole portfolio is measured: not calm
    wild = _day(state, 91_000, 0, portfolio_returns=_wild_returns())
    assert wild.state.low_vol_days == 0
    # after an L4 reset the ramp may buy crypto again: the whole portfolio is measured
    waiting = _state(reentry_phase="waiting")
    reset = _day(
        waiting, 99_000, 0, portfolio_returns=_wild_returns(), recovery_returns=_calm_returns()
    )
    assert reset.state.low_vol_days == 0


def test_the_pipeline_leaves_crypto_out_of_the_recovery_calm(make_settings: Any) -> None:
    from tiller.pipeline.decide import assess
    from tiller.risk.window import ReturnWindow

    settings = make_settings(universe="SPY,BTC-USD")
    n = 60
    returns = ReturnWindow(
        np.column_stack([np.tile([0.001, -0.001], n // 2), np.tile([0.08, -0.08], n // 2)]),
        ("SPY", "BTC-USD"),
    )
    decision = assess(
        DAY,
        91_000,
        91_000,
        {},
        returns,
        {"SPY": 0.5, "BTC-USD": 0.5},
        [],
        _state(level=RiskLevel.L2),
        settings,
    )
    # SPY alone: sigma = 0.001 x sqrt(252) x 1.026 (ddof 1) ~ 1.6%: calm
    assert decision.state.low_vol_days == 1


def test_l3_relaxes_to_non_crypto_while_recovering() -> None:
    # 1 - 87,000 / 100,000 = 13% -> L3, safe havens only, sell-only.
    stuck = _day(_state(level=RiskLevel.L3, low_vol_days=9), 87_000, 0)
    assert stuck.level == RiskLevel.L3 and stuck.reentry_phase == "ramping"
    # 10th calm session -> recovery: 0.25 x 0.5 = 0.125, SPY may be bought, BTC not.
    assert stuck.exposure_scale == pytest.approx(0.125)
    assert stuck.may_buy("SPY", 0.9)[0] and not stuck.may_buy("BTC-USD", 0.9)[0]
    assert "SAFE_HAVENS_ONLY" not in stuck.actions and "MANUAL_REVIEW" in stuck.actions


def test_a_rising_level_ends_the_recovery_ramp() -> None:
    ramping = _state(
        level=RiskLevel.L2,
        reentry_phase="ramping",
        ramp_origin="recovery",
        ramp_fraction=0.5,
        ramp_started=DAY - timedelta(days=8),
    )
    # 1 - 87,500 / 100,000 = 12.5% -> L3: sell-only again, calm counted anew.
    deeper = _day(ramping, 87_500, 0)
    assert deeper.level == RiskLevel.L3 and deeper.reentry_phase is None
    assert not deeper.buy_allowed and deeper.exposure_scale == 0.5
    assert any(
        e.kind == "recovery_end" and "rose from L2 to L3" in e.reason for e in deeper.decisions
    )
    # From 12.5% down to 15.5% of the true peak: L4 halts, nothing rebased.
    halt = _day(deeper.state, 84_500, 1)
    assert halt.level == RiskLevel.L4 and halt.halted and halt.peak_nav == PEAK


def test_levels_step_down_with_hysteresis() -> None:
    # At L2 (8.5%): recovering to 7.5% keeps L2 (7.5 + 1 = 8.5 >= 8); 6.9% steps down to L1
    # (6.9 + 1 = 7.9 < 8); 3.9% steps down to L0 (3.9 + 1 = 4.9 < 5).
    l2 = _day(_state(), 91_500, 0)
    assert l2.level == RiskLevel.L2
    held = _day(l2.state, 92_500, 1)
    assert held.level == RiskLevel.L2 and held.drawdown == pytest.approx(0.075)
    assert "held at L2 until the drawdown is below 7.00%" in held.decisions[0].reason
    l1 = _day(held.state, 93_100, 2)
    assert l1.level == RiskLevel.L1
    still = _day(l1.state, 95_500, 3)  # 4.5% + 1 = 5.5% >= 5%: still L1
    assert still.level == RiskLevel.L1
    l0 = _day(still.state, 96_100, 4)
    assert l0.level == RiskLevel.L0
    # On the way up there is no delay: 8% is L2 at once.
    assert _day(l0.state, 92_000, 5).level == RiskLevel.L2


def test_the_only_rebase_is_the_confirmed_l4_reset_recorded_with_its_numbers() -> None:
    halted = _state(level=RiskLevel.L4, halted=True, halted_since=DAY - timedelta(days=3))
    reset = reset_after_confirmation(halted, DAY - timedelta(days=1))
    assert reset.peak_nav is None and reset.rebased_from == PEAK
    after = _day(reset, 84_000, 0)
    rebase = [e for e in after.decisions if e.kind == "rebase"]
    assert len(rebase) == 1
    assert "rebased from 100,000.00 to 84,000.00" in rebase[0].reason
    assert after.peak_nav == 84_000 and after.level == RiskLevel.L0
    assert after.state.rebased_from is None
    assert not any(e.kind == "rebase" for e in _day(after.state, 84_000, 1).decisions)


navs_and_resets = st.lists(
    st.tuples(st.floats(-0.06, 0.06), st.booleans(), st.booleans()), min_size=5, max_size=60
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=navs_and_resets, calm=st.booleans())
def test_the_level_is_never_below_what_the_true_drawdown_calls_for(
    path: list[tuple[float, bool, bool]], calm: bool
) -> None:
    """Any NAV path, held or flat, calm or not, with operator resets whenever halted:
    the level is never below ``ladder(1 - nav / high-water mark)``, where the
    high-water mark is the highest NAV since the start or the last confirmed reset."""
    state, nav, high = RiskState(), PEAK, 0.0  # the first assessed NAV is the first peak
    returns = _calm_returns() if calm else _calm_returns(daily=0.02)
    for offset, (move, held, confirm) in enumerate(path):
        nav = max(1.0, nav * (1 + move))
        high = max(high, nav)
        positions = {"SPY": _position()} if held else {}
        decision = _day(state, nav, offset, positions=positions, portfolio_returns=returns)
        true_drawdown = 1 - nav / high
        assert decision.drawdown == pytest.approx(true_drawdown, abs=1e-12)
        assert decision.peak_nav == pytest.approx(high)
        assert decision.level >= drawdown_level(true_drawdown, CONFIG)
        if true_drawdown >= 0.15 - 1e-9:
            assert decision.halted and decision.exposure_scale == 0
        if decision.level >= RiskLevel.L2 and decision.reentry_phase != "ramping":
            assert not decision.buy_allowed
        state = decision.state
        if state.halted and confirm:
            state = reset_after_confirmation(state, DAY + timedelta(days=offset))
            high = 0.0  # the next assessed NAV is the new high-water mark


def test_2008_drawdown_climbs_the_ladder_halts_and_reenters() -> None:
    bars = CsvProvider(MARKET).fetch(
        SeriesRequest("SPY", SeriesKind.BAR, date(2007, 10, 1), date(2010, 12, 31))
    )
    close = pd.Series(bars["close"].to_numpy(), index=[d.date() for d in bars["date"]])
    returns = close.pct_change()
    days = list(close.index)
    reset_day = date(2009, 6, 1)  # the person confirms on this session, after its run

    # Independently: the first session after the reset ending 5 consecutive sessions of
    # std(last 20 SPY returns) * sqrt(252) < 12%.
    sigma = returns.rolling(20).std() * math.sqrt(252)
    run, ramp_day = 0, None
    for day in days:
        if day <= reset_day:
            continue
        run = run + 1 if sigma[day] < CONFIG.target_volatility else 0
        if run == CONFIG.reentry_low_vol_days:
            ramp_day = day
            break
    assert ramp_day == date(2009, 12, 29)  # the independent computation, pinned

    state, nav, previous = RiskState(), 100_000.0, None
    invested = 1.0  # share of NAV in SPY going into the next session
    first_seen: dict[RiskLevel, date] = {}
    halt_day = None
    ramp_log: list[tuple[date, float, float, RiskLevel]] = []
    for i, day in enumerate(days):
        if i:
            nav *= 1 + invested * returns[day]
        decision = assess_risk(
            RiskInputs(
                as_of=day,
                nav=nav,
                previous_nav=previous,
                portfolio_returns=returns.iloc[max(0, i - 24) : i + 1],
                positions={"SPY": _position()} if invested > 0 else {},
                asset_classes={"SPY": "equity"},
            ),
            state,
            CONFIG,
        )
        previous = nav
        if halt_day is None and decision.level not in first_seen:
            first_seen[decision.level] = day
        if halt_day is None and decision.halted:
            halt_day = day
        if halt_day is not None and day <= reset_day:
            # Halted: zero exposure and no buying, whatever the NAV does, until the reset.
            assert decision.halted and decision.level == RiskLevel.L4
            assert decision.exposure_scale == 0 and not decision.buy_allowed
        elif reset_day < day < ramp_day:
            assert decision.reentry_phase == "waiting" and decision.exposure_scale == 0
        elif day >= ramp_day:
            fraction = decision.ramp_fraction
            ramp_log.append((day, fraction, decision.exposure_scale, decision.level))
            if decision.reentry_phase is None:
                break
        state = decision.state
        if day == reset_day:
            state = reset_after_confirmation(state, day)  # liquidated: in cash from here
        # Fully invested (no risk reduction) until the reset; then follow the ramp.
        invested = 1.0 if state.reset_on is None else decision.exposure_scale
        if day == reset_day:
            invested = 0.0

    # NAV = 100,000 x close / 154.30 (2007-10-01); peak close 156.48 (2007-10-09) ->
    # peak NAV 101,412.83; drawdown = 1 - close / 156.48.
    assert first_seen == {
        RiskLevel.L0: date(2007, 10, 1),
        RiskLevel.L1: date(2007, 11, 7),  # 1 - 95,858.72 / 101,412.83 = 5.48% >= 5%
        RiskLevel.L2: date(2007, 11, 12),  # 1 - 93,130.26 / 101,412.83 = 8.17% >= 8%
        RiskLevel.L3: date(2008, 1, 16),  # 1 - 88,775.11 / 101,412.83 = 12.46% >= 12%
        RiskLevel.L4: date(2008, 1, 18),  # 1 - 85,586.52 / 101,412.83 = 15.61% >= 15%
    }
    assert list(first_seen) == [
        RiskLevel.L0,
        RiskLevel.L1,
        RiskLevel.L2,
        RiskLevel.L3,
        RiskLevel.L4,
    ]
    assert halt_day == date(2008, 1, 18)
    assert ramp_log[0][0] == ramp_day and ramp_log[0][1] == 0.25
    # 25% for the first 7 calendar days, then 50%, 75%, and 100% (done) from day 21.
    for day, fraction, exposure, level in ramp_log:
        weeks = (day - ramp_day).days // 7
        assert fraction == min(1.0, 0.25 * (weeks + 1))
        scale = {RiskLevel.L0: 1.0, RiskLevel.L1: 1.0, RiskLevel.L2: 0.75}[level]
        assert exposure == pytest.approx(scale * fraction)
    assert [f for f in dict.fromkeys(f for _, f, _, _ in ramp_log)] == [0.25, 0.5, 0.75, 1.0]
    # 2009-12-29 + 7 = 2010-01-05 (50%), + 14 = 01-12 (75%), + 21 = 01-19 (100%, done).
    starts = {f: d for d, f, _, _ in reversed(ramp_log)}
    assert starts == {
        0.25: date(2009, 12, 29),
        0.5: date(2010, 1, 5),
        0.75: date(2010, 1, 12),
        1.0: date(2010, 1, 19),
    }
    assert ramp_log[-1][0] == date(2010, 1, 19)
