"""Stage 7 portfolio construction: risk parity, constraints, trading limits.

Hand-worked examples carry their arithmetic in comments; hypothesis checks the
invariants of :mod:`tiller.portfolio.optimize` over random return matrices and random
current weights.  Examples that call the solver are few (each solve costs ~0.1 s, and
the first one imports riskfolio-lib, several seconds).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiller.portfolio.optimize import (
    CASH,
    MIN_CORRELATION_EIGENVALUE,
    apply_trading_limits,
    constrain_weights,
    newton_risk_parity,
    optimize_weights,
    risk_contributions,
)
from tiller.settings import OptimizeConfig

DEFAULT = OptimizeConfig()  # 5% cash, 2% / $100 minimum change, 30% turnover, 5 trades
LOOSE = OptimizeConfig(min_weight_change=0, min_trade_value=0, max_turnover=2, max_trades=100)
NAV = 100_000.0
TOL = 1e-9
SOLVER = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST = settings(max_examples=200, deadline=None)


def orthogonal_returns(vols: list[float], rows: int = 252, seed: int = 0) -> pd.DataFrame:
    """Returns with exactly the given daily vols (ddof=1) and zero sample correlation."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(rows, len(vols)))
    raw -= raw.mean(axis=0)
    basis, _ = np.linalg.qr(raw)  # orthonormal columns, each still mean zero
    data = basis * math.sqrt(rows - 1) * np.asarray(vols)
    columns = [f"A{i}" for i in range(len(vols))]
    return pd.DataFrame(data, columns=columns, index=pd.bdate_range("2024-01-01", periods=rows))


def random_returns(seed: int, n: int, rows: int, duplicate: bool = False) -> pd.DataFrame:
    """Correlated returns: a market factor plus noise, vols between ~0.3% and ~3% a day."""
    rng = np.random.default_rng(seed)
    market = rng.normal(0, 0.01, size=(rows, 1))
    beta = rng.uniform(0, 1.5, size=n)
    noise = rng.normal(0, 1, size=(rows, n)) * rng.uniform(0.003, 0.02, size=n)
    data = market * beta + noise
    if duplicate and n >= 2:
        data[:, 1] = data[:, 0]  # two identical series: singular covariance
    columns = [f"S{i}" for i in range(n)]
    return pd.DataFrame(data, columns=columns, index=pd.bdate_range("2020-01-01", periods=rows))


def changed(final: dict[str, float], current: dict[str, float]) -> list[str]:
    return [s for s in final if s != CASH and abs(final[s] - current.get(s, 0.0)) > 1e-12]


# --- step 1: raw weights -------------------------------------------------------------


def test_two_uncorrelated_assets_take_inverse_vol_risk_parity() -> None:
    # Uncorrelated: RC_i ∝ w_i² σ_i², equal when w_A σ_A = w_B σ_B, so
    # w_A / w_B = σ_B / σ_A = 2% / 1% = 2  ->  raw (2/3, 1/3).
    # Investable 1 - 0.05 = 0.95  ->  (0.95 * 2/3, 0.95 / 3) = (0.6333, 0.3167), cash 0.05.
    returns = orthogonal_returns([0.01, 0.02])
    result = optimize_weights(returns, {}, NAV, {"A0": 1, "A1": 1}, LOOSE)
    assert result.method == "risk_parity"
    assert result.raw_weights["A0"] == pytest.approx(2 / 3, rel=1e-4)
    assert result.raw_weights["A1"] == pytest.approx(1 / 3, rel=1e-4)
    assert result.weights["A0"] == pytest.approx(0.95 * 2 / 3, rel=1e-4)
    assert result.weights["A1"] == pytest.approx(0.95 / 3, rel=1e-4)
    assert result.weights[CASH] == pytest.approx(0.05, abs=1e-12)
    assert result.risk_contributions["A0"] == pytest.approx(0.5, rel=1e-3)
    assert result.turnover == pytest.approx(0.95)
    assert result.condition_number == pytest.approx(1.0)


def test_three_uncorrelated_assets_and_l2_exposure() -> None:
    # w ∝ 1/σ = (1/1, 1/2, 1/4) = (4, 2, 1)/7 of the invested amount.
    # L2 exposure 0.75: investable 0.95 * 0.75 = 0.7125 -> (0.4071, 0.2036, 0.1018).
    returns = orthogonal_returns([0.01, 0.02, 0.04], seed=1)
    caps = {"A0": 1, "A1": 1, "A2": 1}
    result = optimize_weights(returns, {}, NAV, caps, LOOSE, exposure=0.75)
    assert result.method == "risk_parity"
    expected = {"A0": 4 / 7 * 0.7125, "A1": 2 / 7 * 0.7125, "A2": 1 / 7 * 0.7125}
    for symbol, weight in expected.items():
        assert result.weights[symbol] == pytest.approx(weight, rel=1e-4)
    assert result.weights[CASH] == pytest.approx(1 - 0.7125, abs=1e-9)


def test_identical_series_fall_back_to_inverse_volatility() -> None:
    # A1 is a copy of A0: the correlation matrix has an eigenvalue ~0 (singular).
    # Inverse vol with σ = (1%, 1%, 2%): w ∝ (1, 1, 0.5) -> (0.4, 0.4, 0.2).
    returns = orthogonal_returns([0.01, 0.02], seed=2)
    returns = pd.DataFrame(
        {"A0": returns["A0"], "A1": returns["A0"], "A2": returns["A1"]}, index=returns.index
    )
    caps = dict.fromkeys(returns.columns, 1.0)
    result = optimize_weights(returns, {}, NAV, caps, LOOSE)
    assert result.method == "inverse_volatility"
    assert "near-singular" in result.reason and "eigenvalue" in result.reason
    assert result.condition_number is not None and result.condition_number > 1 / (
        MIN_CORRELATION_EIGENVALUE
    )
    assert result.raw_weights == pytest.approx({"A0": 0.4, "A1": 0.4, "A2": 0.2}, rel=1e-9)
    assert result.weights["A2"] == pytest.approx(0.95 * 0.2)


def test_fewer_rows_than_assets_is_singular() -> None:
    returns = random_returns(seed=5, n=30, rows=25)
    result = optimize_weights(returns, {}, NAV, dict.fromkeys(returns.columns, 1.0), LOOSE)
    assert result.method == "inverse_volatility"
    assert "only 25 complete rows for 30 assets" in result.reason
    assert result.condition_number == math.inf


def test_zero_volatility_falls_back_to_previous_target_mix() -> None:
    # A1 never moves: covariance singular AND 1/σ undefined -> previous target's mix.
    # Previous target (0.3, 0.1) over the allowed assets -> mix (0.75, 0.25) -> x0.95.
    returns = orthogonal_returns([0.01, 0.02], seed=3)
    returns["A1"] = 0.0
    caps = {"A0": 1, "A1": 1}
    previous = {"A0": 0.3, "A1": 0.1, "GONE": 0.5, CASH: 0.1}
    result = optimize_weights(returns, {}, NAV, caps, LOOSE, previous_target=previous)
    assert result.method == "previous"
    assert "zero volatility for A1" in result.reason
    assert result.raw_weights == pytest.approx({"A0": 0.75, "A1": 0.25})
    assert result.weights["A0"] == pytest.approx(0.7125)
    # Without a previous target the current weights are used; none held -> cash.
    result = optimize_weights(returns, {}, NAV, caps, LOOSE)
    assert result.method == "cash"
    assert result.weights[CASH] == pytest.approx(1.0)


def test_solver_failure_falls_back_to_inverse_volatility(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import riskfolio

    riskfolio_config = LOOSE.model_copy(update={"solver": "riskfolio"})

    returns = orthogonal_returns([0.01, 0.04], seed=4)
    caps = {"A0": 1, "A1": 1}
    monkeypatch.setattr(riskfolio.Portfolio, "rp_optimization", lambda self, **kw: None)
    result = optimize_weights(returns, {}, NAV, caps, riskfolio_config)
    assert result.method == "inverse_volatility"
    assert "no solution" in result.reason
    # w ∝ (1/1%, 1/4%) = (4, 1)/5.
    assert result.raw_weights == pytest.approx({"A0": 0.8, "A1": 0.2})

    def nan_weights(self: object, **kw: object) -> pd.DataFrame:
        return pd.DataFrame({"weights": [np.nan, np.nan]}, index=["A0", "A1"])

    monkeypatch.setattr(riskfolio.Portfolio, "rp_optimization", nan_weights)
    result = optimize_weights(returns, {}, NAV, caps, riskfolio_config)
    assert result.method == "inverse_volatility" and "non-finite" in result.reason

    def boom(self: object, **kw: object) -> None:
        raise ValueError("solver exploded")

    monkeypatch.setattr(riskfolio.Portfolio, "rp_optimization", boom)
    result = optimize_weights(returns, {}, NAV, caps, riskfolio_config)
    assert result.method == "inverse_volatility" and "solver exploded" in result.reason


def test_empty_allowed_set_is_all_cash() -> None:
    empty = pd.DataFrame(index=pd.bdate_range("2024-01-01", periods=30))
    result = optimize_weights(empty, {}, NAV, {}, DEFAULT)
    assert result.method == "cash"
    assert result.weights == {CASH: 1.0}
    assert result.risk_contributions == {} and result.turnover == 0.0
    # Holdings of assets no longer allowed are sold, within the day's turnover limit.
    result = optimize_weights(empty, {"SPY": 0.2, "GLD": 0.1}, NAV, {}, DEFAULT)
    assert result.weights == {"SPY": 0.0, "GLD": 0.0, CASH: 1.0}
    assert result.turnover == pytest.approx(0.3)


def test_single_asset_and_missing_rows() -> None:
    returns = orthogonal_returns([0.01, 0.02], rows=60)
    returns.iloc[:10, 1] = np.nan  # rows with a gap are dropped, 50 remain
    single = returns[["A0"]]
    result = optimize_weights(single, {}, NAV, {"A0": 0.4}, LOOSE)
    assert result.method == "risk_parity" and result.raw_weights == {"A0": 1.0}
    assert result.weights["A0"] == pytest.approx(0.4)  # capped, 0.55 cash
    result = optimize_weights(returns, {}, NAV, {"A0": 1, "A1": 1}, LOOSE)
    assert "50 rows" in result.reason


def test_defaults_from_config_files() -> None:
    from tiller.settings import load_settings

    settings_ = load_settings()
    symbols = [s for s in settings_.symbols if s in settings_.assets][:4]
    returns = random_returns(seed=11, n=len(symbols), rows=300)
    returns.columns = symbols
    caps = {s: settings_.assets[s].max_weight for s in symbols}
    result = optimize_weights(returns, {}, NAV, caps, settings_.optimize)
    # From all cash the 30% turnover limit binds.
    assert result.turnover == pytest.approx(settings_.optimize.max_turnover)
    assert result.weights[CASH] == pytest.approx(0.7)


def test_bad_inputs_are_refused() -> None:
    returns = orthogonal_returns([0.01, 0.02], rows=30)
    caps = {"A0": 1, "A1": 1}
    with pytest.raises(ValueError, match="current weight"):
        optimize_weights(returns, {"A0": -0.1}, NAV, caps, DEFAULT)
    with pytest.raises(ValueError, match="nav"):
        optimize_weights(returns, {}, 0.0, caps, DEFAULT)
    with pytest.raises(ValueError, match="exposure"):
        optimize_weights(returns, {}, NAV, caps, DEFAULT, exposure=1.5)
    with pytest.raises(ValueError, match="max weight"):
        optimize_weights(returns, {}, NAV, {"A0": 1}, DEFAULT)
    with pytest.raises(ValueError, match="pair cap"):
        optimize_weights(returns, {}, NAV, caps, DEFAULT, pair_caps=[("A0", "A0", 0.3)])


# --- step 2: constraints ---------------------------------------------------------------


def test_caps_redistribute_pro_rata_in_rounds() -> None:
    # Raw (0.5, 0.3, 0.2) x 0.95 = (0.475, 0.285, 0.19).
    # Round 1: A capped at 0.30, excess 0.175 to B and C pro rata 0.285 : 0.19 = 0.6 : 0.4
    #   -> B 0.285 + 0.105 = 0.39, C 0.19 + 0.07 = 0.26.
    # Round 2: B capped at 0.35, excess 0.04 to C -> C 0.30.  Sum 0.95: nothing to cash.
    raw = {"A": 0.5, "B": 0.3, "C": 0.2}
    weights = constrain_weights(raw, {"A": 0.30, "B": 0.35, "C": 1.0}, DEFAULT)
    assert weights == pytest.approx({"A": 0.30, "B": 0.35, "C": 0.30})


def test_everyone_capped_leaves_the_rest_in_cash() -> None:
    # (0.475, 0.475) capped at 0.3 each: 0.6 invested, 0.4 cash.
    weights = constrain_weights({"A": 0.5, "B": 0.5}, {"A": 0.3, "B": 0.3}, DEFAULT)
    assert weights == pytest.approx({"A": 0.3, "B": 0.3})


def test_pair_cap_scales_both_down_excess_to_cash() -> None:
    # (0.4, 0.4, 0.2) x 0.95 = (0.38, 0.38, 0.19); pair A+B = 0.76 > 0.40:
    # both x 0.40 / 0.76 -> 0.2 each; C unchanged; cash 1 - 0.59 = 0.41.
    raw = {"A": 0.4, "B": 0.4, "C": 0.2}
    weights = constrain_weights(raw, {}, DEFAULT, pair_caps=[("A", "B", 0.40)])
    assert weights == pytest.approx({"A": 0.2, "B": 0.2, "C": 0.19})


def test_leverage_and_exposure_set_the_investable_amount() -> None:
    # min(1 - 0.10, 0.8) * 0.5 = 0.4.
    config = OptimizeConfig(cash_buffer=0.10, max_gross_leverage=0.8)
    weights = constrain_weights({"A": 0.25, "B": 0.75}, {}, config, exposure=0.5)
    assert weights == pytest.approx({"A": 0.1, "B": 0.3})


# --- step 3: trading limits ------------------------------------------------------------


def test_small_changes_are_skipped() -> None:
    # A: +1% < 2% -> skipped; B: -10% trades; C: +3% at NAV $2,000 is $60 < $100 -> skipped.
    target = {"A": 0.31, "B": 0.20, "C": 0.03}
    current = {"A": 0.30, "B": 0.30}
    out = apply_trading_limits(target, current, NAV, DEFAULT, dict.fromkeys(target, 1.0))
    assert out.weights == pytest.approx({"A": 0.30, "B": 0.20, "C": 0.03})
    assert out.skipped == [("A", "under 2% change")]
    out = apply_trading_limits(target, current, 2_000, DEFAULT, dict.fromkeys(target, 1.0))
    assert ("C", "under $100") in out.skipped and ("A", "under 2% change") in out.skipped


def test_turnover_scales_changes_and_drops_those_it_makes_too_small() -> None:
    # From cash to (0.6, 0.3, 0.05): Σ|Δ| = 0.95 > 0.30, s = 0.30 / 0.95 = 0.3158;
    # C would move 0.05 * 0.3158 = 0.0158 < 2% -> dropped ("turnover");
    # again without C: s = 0.30 / 0.90 = 1/3 -> A 0.2, B 0.1; turnover exactly 0.30.
    target = {"A": 0.6, "B": 0.3, "C": 0.05}
    out = apply_trading_limits(target, {}, NAV, DEFAULT, dict.fromkeys(target, 1.0))
    assert out.weights == pytest.approx({"A": 0.2, "B": 0.1, "C": 0.0})
    assert out.skipped == [("C", "turnover")]
    assert out.turnover == pytest.approx(0.30)


def test_max_trades_keeps_the_largest_changes() -> None:
    # Seven buys of 1%..7% with max 5 trades: the 1% and 2% ones wait ("max trades").
    config = OptimizeConfig(max_turnover=2, min_weight_change=0.005)
    target = {f"S{i}": i / 100 for i in range(1, 8)}
    out = apply_trading_limits(target, {}, NAV, config, dict.fromkeys(target, 1.0))
    assert sorted(out.skipped) == [("S1", "max trades"), ("S2", "max trades")]
    assert out.weights["S7"] == pytest.approx(0.07) and out.weights["S1"] == 0.0
    assert out.turnover == pytest.approx(0.03 + 0.04 + 0.05 + 0.06 + 0.07)


def test_a_sell_back_to_the_cap_is_not_skipped_as_small() -> None:
    # A drifted to 51% over its 50% cap: the -1% sell is under 2% but restores the cap,
    # so it trades ($1,000 >= $100).  Z is no longer allowed (cap 0): its 0.5% ($500)
    # is sold; Y's 0.05% ($50) is dust under $100 and stays.
    current = {"A": 0.51, "Z": 0.005, "Y": 0.0005}
    out = apply_trading_limits({"A": 0.50}, current, NAV, DEFAULT, {"A": 0.5})
    assert out.weights == pytest.approx({"A": 0.50, "Z": 0.0, "Y": 0.0005})
    assert out.skipped == [("Y", "under $100")]


def test_a_skipped_sell_cuts_the_buy_it_would_have_funded() -> None:
    # Current A 0.50 + B 0.45 = 0.95 (full).  Target A 0.485 (Δ -1.5%: skipped),
    # B 0.43 (Δ -2%: trades), C 0.035 (Δ +3.5%).  0.50 + 0.43 + 0.035 = 0.965 > 0.95:
    # the buy of C is cut by the 0.015 excess -> C 0.02 (still >= 2%), sum 0.95.
    target = {"A": 0.485, "B": 0.43, "C": 0.035}
    caps = dict.fromkeys(target, 1.0)
    out = apply_trading_limits(target, {"A": 0.5, "B": 0.45}, NAV, DEFAULT, caps)
    assert out.weights == pytest.approx({"A": 0.5, "B": 0.43, "C": 0.02})
    assert out.skipped == [("A", "under 2% change")]
    assert math.fsum(out.weights.values()) == pytest.approx(0.95)


def test_risk_contributions_formula() -> None:
    # Σ = diag(1, 4), w = (2, 1): Σw = (2, 4), wᵀΣw = 4 + 4 = 8 -> RC = (4/8, 4/8).
    cov = pd.DataFrame([[1.0, 0.0], [0.0, 4.0]], index=["a", "b"], columns=["a", "b"])
    assert risk_contributions({"a": 2.0, "b": 1.0}, cov) == pytest.approx({"a": 0.5, "b": 0.5})
    assert risk_contributions({"a": 0.0, "b": 0.0}, cov) == {"a": 0.0, "b": 0.0}


# --- properties ------------------------------------------------------------------------

weights_list = st.lists(st.one_of(st.just(0.0), st.floats(0.01, 1)), min_size=1, max_size=8)


def scaled(values: list[float], total: float) -> list[float]:
    s = math.fsum(values)
    return [v / s * total for v in values] if s > 0 else [0.0 for _ in values]


@SOLVER
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 8),
    rows=st.integers(30, 120),
    duplicate=st.booleans(),
    current_raw=weights_list,
    invested=st.floats(0, 0.95),
    caps=st.lists(st.floats(0.05, 1), min_size=8, max_size=8),
    exposure=st.sampled_from([1.0, 0.75, 0.5, 0.25]),
    pair=st.booleans(),
    nav=st.floats(1_000, 1e7),
)
def test_invariants_of_the_whole_pipeline(
    seed: int,
    n: int,
    rows: int,
    duplicate: bool,
    current_raw: list[float],
    invested: float,
    caps: list[float],
    exposure: float,
    pair: bool,
    nav: float,
) -> None:
    returns = random_returns(seed, n, rows, duplicate)
    symbols = list(returns.columns)
    max_weights = dict(zip(symbols, caps, strict=False))
    # Current: some allowed assets and one that is no longer allowed, summing to <= 95%.
    held = [*symbols, "OLD"][: len(current_raw)]
    current = dict(zip(held, scaled(current_raw, invested), strict=False))
    pairs = [(symbols[0], symbols[1], 0.3)] if pair and n >= 2 else []
    config = DEFAULT
    result = optimize_weights(
        returns, current, nav, max_weights, config, exposure=exposure, pair_caps=pairs
    )
    final = {s: w for s, w in result.weights.items() if s != CASH}
    assert all(w >= 0 for w in final.values())
    assert math.fsum(final.values()) <= 1 - config.cash_buffer + TOL
    assert result.weights[CASH] == pytest.approx(1 - math.fsum(final.values()))
    for s, w in final.items():  # caps hold unless the current weight was already above
        assert w <= max(max_weights.get(s, 0.0), current.get(s, 0.0)) + TOL
    for s, w in result.target_weights.items():  # targets always respect the caps
        assert w <= max_weights[s] + TOL
    for a, b, cap in pairs:
        assert final[a] + final[b] <= max(cap, current.get(a, 0) + current.get(b, 0)) + TOL
    assert result.turnover <= config.max_turnover + TOL
    assert result.turnover == pytest.approx(
        math.fsum(abs(w - current.get(s, 0.0)) for s, w in final.items())
    )
    assert len(changed(result.weights, current)) <= config.max_trades
    assert result.method in ("risk_parity", "inverse_volatility", "previous", "cash")
    if duplicate and n >= 2:
        assert result.method == "inverse_volatility" and "near-singular" in result.reason
    contributions = result.risk_contributions
    if any(final.get(s, 0) > 0 for s in symbols):
        assert math.fsum(contributions.values()) == pytest.approx(1.0)


@SOLVER
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 10), rows=st.integers(40, 252))
def test_equal_risk_contributions_when_nothing_binds(seed: int, n: int, rows: int) -> None:
    returns = random_returns(seed, n, rows)
    result = optimize_weights(returns, {}, NAV, dict.fromkeys(returns.columns, 1.0), LOOSE)
    assert result.method == "risk_parity", result.reason
    assert result.skipped == []
    assert result.weights[CASH] == pytest.approx(LOOSE.cash_buffer)
    for share in result.risk_contributions.values():
        assert share * n == pytest.approx(1.0, rel=1e-3)


@FAST
@given(
    target_raw=weights_list,
    current_raw=weights_list,
    current_total=st.floats(0, 1.2),  # may already break the cash buffer
    caps=st.lists(st.floats(0, 1), min_size=8, max_size=8),
    pair=st.booleans(),
    nav=st.floats(500, 1e7),
    min_change=st.sampled_from([0.0, 0.01, 0.02, 0.05]),
    min_value=st.sampled_from([0.0, 100.0, 5_000.0]),
    max_turnover=st.floats(0.01, 1.5),
    max_trades=st.integers(1, 8),
)
def test_trading_limits_always_hold(
    target_raw: list[float],
    current_raw: list[float],
    current_total: float,
    caps: list[float],
    pair: bool,
    nav: float,
    min_change: float,
    min_value: float,
    max_turnover: float,
    max_trades: int,
) -> None:
    config = OptimizeConfig(
        min_weight_change=min_change,
        min_trade_value=min_value,
        max_turnover=max_turnover,
        max_trades=max_trades,
    )
    names = [f"S{i}" for i in range(8)]
    allowed = names[: len(target_raw)]
    max_weights = dict(zip(allowed, caps, strict=False))
    pairs = [("S0", "S1", 0.25)] if pair else []
    raw = dict(zip(allowed, scaled(target_raw, 1.0), strict=True))
    target = constrain_weights(raw, max_weights, config, pair_caps=pairs)
    current = dict(zip(names, scaled(current_raw, current_total), strict=False))
    out = apply_trading_limits(target, current, nav, config, max_weights, pairs)
    final = out.weights
    moves = {s: final[s] - current.get(s, 0.0) for s in final}
    assert all(w >= 0 for w in final.values())
    assert out.turnover <= max_turnover + TOL
    assert len([d for d in moves.values() if abs(d) > 1e-12]) <= max_trades
    assert math.fsum(final.values()) <= max(0.95, math.fsum(current.values())) + TOL
    for s, w in final.items():
        cap = max_weights.get(s, 0.0)
        assert w <= max(cap, current.get(s, 0.0)) + TOL
        d = moves[s]
        if abs(d) > 1e-12:  # every change made clears its size floor
            restoring = d < 0 and current.get(s, 0.0) > cap
            floor = max(0.0 if restoring else min_change, min_value / nav)
            assert abs(d) >= floor - 1e-9
            # and moves towards the target, never past it
            assert min(current.get(s, 0.0), target.get(s, 0.0)) - TOL <= w
            assert w <= max(current.get(s, 0.0), target.get(s, 0.0)) + TOL
    for a, b, cap in pairs:
        before = current.get(a, 0.0) + current.get(b, 0.0)
        assert final.get(a, 0.0) + final.get(b, 0.0) <= max(cap, before) + TOL
    skipped = {s for s, _ in out.skipped}
    assert all(abs(moves.get(s, 0.0)) <= 1e-12 for s in skipped)


@FAST
@given(
    raw_values=weights_list,
    caps=st.lists(st.floats(0, 1), min_size=8, max_size=8),
    exposure=st.floats(0, 1),
    cash_buffer=st.floats(0.05, 0.5),
    pair=st.booleans(),
)
def test_constraints_always_hold(
    raw_values: list[float], caps: list[float], exposure: float, cash_buffer: float, pair: bool
) -> None:
    config = OptimizeConfig(cash_buffer=cash_buffer)
    names = [f"S{i}" for i in range(len(raw_values))]
    raw = dict(zip(names, scaled(raw_values, 1.0), strict=True))
    max_weights = dict(zip(names, caps, strict=False))
    pairs = [("S0", "S1", 0.2)] if pair and len(names) >= 2 else []
    weights = constrain_weights(raw, max_weights, config, exposure, pairs)
    investable = (1 - cash_buffer) * exposure
    total = math.fsum(weights.values())
    assert total <= investable + TOL
    assert all(0 <= weights[s] <= max_weights[s] + TOL for s in names)
    for a, b, cap in pairs:
        assert weights[a] + weights[b] <= cap + TOL
    # Without pair caps nothing is lost to cash while some weighted asset has room.
    room = math.fsum(max_weights[s] for s in names if raw[s] > 0)
    if not pairs and raw and math.fsum(raw.values()) > 0:
        assert total == pytest.approx(min(investable, room), abs=1e-9)


# --- the Newton solver and the fixed mix ----------------------------------------------


NEWTON = OptimizeConfig(
    min_weight_change=0, min_trade_value=0, max_turnover=2, max_trades=100, solver="newton"
)


def test_newton_two_uncorrelated_assets_by_hand() -> None:
    # vols 1% and 2%, no correlation: equal risk needs w1 * 1% = w2 * 2% -> (2/3, 1/3)
    cov = np.diag([0.01**2, 0.02**2])
    assert newton_risk_parity(cov) == pytest.approx([2 / 3, 1 / 3], abs=1e-12)


@SOLVER
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 10), rows=st.integers(40, 252))
def test_newton_and_riskfolio_find_the_same_point(seed: int, n: int, rows: int) -> None:
    """Same weights within riskfolio's solver accuracy; Newton's contributions exact."""
    returns = random_returns(seed, n, rows)
    caps = dict.fromkeys(returns.columns, 1.0)
    newton = optimize_weights(returns, {}, NAV, caps, NEWTON)
    reference = optimize_weights(returns, {}, NAV, caps, LOOSE)
    assert newton.method == reference.method == "risk_parity"
    for symbol, weight in reference.raw_weights.items():
        assert newton.raw_weights[symbol] == pytest.approx(weight, abs=5e-5)
    for share in newton.risk_contributions.values():
        assert share * n == pytest.approx(1.0, abs=1e-9)


def test_newton_agrees_with_riskfolio_on_real_windows() -> None:
    """40 lookback windows of 2-14 real ETFs (2008-2023): max weight difference < 5e-5."""
    from datetime import date

    from tests.conftest import MARKET
    from tiller.backtest.data import load_market
    from tiller.portfolio.optimize import _riskfolio_risk_parity
    from tiller.portfolio.returns import price_matrix, session_returns
    from tiller.settings import load_settings

    settings = load_settings(
        data_sources=f"csv:{MARKET}",
        universe="GLD,SPY,QQQ,SLV,XLK,XLF,XLE,XLV,TLT,TIP,EFA,EEM,DBC,VNQ",
    )
    market = load_market(settings, date(2008, 1, 1), date(2023, 12, 31))
    returns = session_returns(price_matrix(market.bars), dict.fromkeys(settings.symbols, "XNYS"))
    rng = np.random.default_rng(0)
    for _ in range(40):
        end = int(rng.integers(300, len(returns)))
        columns = list(rng.choice(returns.columns, int(rng.integers(2, 15)), replace=False))
        window = returns.iloc[end - 252 : end][columns].dropna()
        newton = newton_risk_parity(window.cov().to_numpy())
        reference = _riskfolio_risk_parity(window)
        assert np.abs(newton - reference / reference.sum()).max() < 5e-5


def test_fixed_mix_is_renormalised_over_what_is_allowed() -> None:
    returns = orthogonal_returns([0.01, 0.02, 0.03])
    caps = {"A0": 1.0, "A1": 1.0, "A2": 1.0}
    mix = {"A0": 0.6, "A1": 0.4, "B9": 0.5}  # B9 is not allowed today (not in returns)
    result = optimize_weights(returns[["A0", "A1"]], {}, NAV, caps, LOOSE, fixed=mix)
    # 0.6 / (0.6 + 0.4) = 0.6 and 0.4 of the investable 95%: 0.57 and 0.38
    assert result.method == "fixed"
    assert result.raw_weights == pytest.approx({"A0": 0.6, "A1": 0.4})
    assert result.weights["A0"] == pytest.approx(0.57) and result.weights["A1"] == pytest.approx(
        0.38
    )
    # risk still scales it: L2 exposure 0.75 -> 0.4275 and 0.285
    cut = optimize_weights(returns[["A0", "A1"]], {}, NAV, caps, LOOSE, exposure=0.75, fixed=mix)
    assert cut.weights["A0"] == pytest.approx(0.4275)
    nothing = optimize_weights(returns[["A2"]], {}, NAV, caps, LOOSE, fixed=mix)
    assert nothing.method == "cash" and nothing.weights[CASH] == pytest.approx(1.0)
