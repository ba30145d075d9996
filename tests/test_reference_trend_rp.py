"""The independent TREND-RP implementation (:mod:`tests.reference_trend_rp`) reproduces
the published figures of ``shared/reference/TREND-RP.md``, and its building blocks (cap
water-filling, ERC solve, inverse-volatility fallback) agree with hand-worked examples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.reference_trend_rp import (
    cap_weights,
    erc_weights,
    load_etf14,
    load_scale150,
    risk_weights,
    run,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Published figures; the tolerances of the rounded ones are half a unit of the last digit.
PUBLISHED = {
    "etf14": {
        "load": load_etf14,
        "cap": 0.30,
        "final_nav": 232_771,
        "cagr": 0.0510,
        "vol": 0.0932,
        "sharpe": 0.581,
        "max_drawdown": -0.2485,
        "rebalances": 193,
        "turnover": 4.40,
        "erc": 191,
        "inverse_vol": 0,
    },
    "scale150": {
        "load": load_scale150,
        "cap": 0.05,
        "final_nav": 489_063,
        "cagr": 0.0872,
        "vol": 0.1467,
        "sharpe": 0.644,
        "max_drawdown": -0.4051,
        "rebalances": 218,
        "turnover": 4.78,
        "erc": 43,
        "inverse_vol": 175,
    },
}


@pytest.fixture(scope="module", params=sorted(PUBLISHED))
def task(request: pytest.FixtureRequest) -> tuple[dict, dict]:
    if not DATA.is_dir():
        pytest.skip(f"shared reference data not found at {DATA}")
    published = PUBLISHED[request.param]
    result = run(published["load"](DATA), cap=published["cap"])
    return published, result.metrics()


def test_agreement_figures(task: tuple[dict, dict]) -> None:
    """The figures the reference requires to agree: NAV, drawdown, trade days."""
    published, got = task
    assert got["final_nav"] == pytest.approx(published["final_nav"], rel=1e-4)
    assert got["max_drawdown"] == pytest.approx(published["max_drawdown"], abs=1e-4)
    assert got["rebalances"] == published["rebalances"]
    assert got["erc"] == published["erc"]
    assert got["inverse_vol"] == published["inverse_vol"]


def test_rounded_figures(task: tuple[dict, dict]) -> None:
    published, got = task
    assert got["cagr"] == pytest.approx(published["cagr"], abs=5e-5)
    assert got["vol"] == pytest.approx(published["vol"], abs=5e-5)
    assert got["sharpe"] == pytest.approx(published["sharpe"], abs=5e-4)
    assert got["turnover"] == pytest.approx(published["turnover"], abs=5e-3)


def test_cap_water_filling() -> None:
    # w = (0.4, 0.3, 0.2, 0.1), cap 0.30, L = 0.95; n c = 1.2 > L, so water-fill:
    #   k = 0.95:              k w = (0.380, 0.285, 0.190, 0.095) -> cap asset 1
    #   k = (0.95-0.30)/0.6:   k w = (-, 0.325, 0.2167, 0.1083)   -> cap asset 2
    #   k = (0.95-0.60)/0.3:   k w = (-, -, 0.2333, 0.1167)       -> nothing above cap
    # so f = (0.30, 0.30, 0.35 x 2/3, 0.35 x 1/3), summing to 0.95.
    got = cap_weights(np.array([0.4, 0.3, 0.2, 0.1]), cap=0.30, level=0.95)
    np.testing.assert_allclose(got, [0.30, 0.30, 0.35 * 2 / 3, 0.35 / 3], rtol=1e-12)
    assert got.sum() == pytest.approx(0.95)


def test_cap_when_too_few_assets() -> None:
    # n c = 3 x 0.30 = 0.90 <= 0.95: every asset gets the cap and 10% stays in cash.
    got = cap_weights(np.array([0.7, 0.2, 0.1]), cap=0.30, level=0.95)
    np.testing.assert_allclose(got, [0.30, 0.30, 0.30])


def test_erc_diagonal_covariance() -> None:
    # Uncorrelated assets: risk contribution w_i^2 s_i^2 is equal when w_i ~ 1/s_i.
    # s = (0.2, 0.1) -> 1/s = (5, 10) -> w = (1/3, 2/3).
    got = erc_weights(np.diag([0.04, 0.01]))
    np.testing.assert_allclose(got, [1 / 3, 2 / 3], rtol=1e-10)


def test_erc_correlated_contributions_equal() -> None:
    cov = np.array([[0.04, 0.006, 0.0], [0.006, 0.09, -0.01], [0.0, -0.01, 0.0225]])
    w = erc_weights(cov)
    assert w is not None
    contributions = w * (cov @ w)
    np.testing.assert_allclose(contributions, contributions.mean(), rtol=1e-10)
    assert w.sum() == pytest.approx(1.0)
    assert (w > 0).all()


def test_risk_weights_methods() -> None:
    rng = np.random.default_rng(7)
    returns = rng.normal(0.0, [0.01, 0.02, 0.03], size=(60, 3))
    _, method = risk_weights(returns)
    assert method == "erc"

    # Two identical series make C singular: inverse volatility, w_i ~ 1 / s_i.
    twin = np.column_stack([returns[:, 0], returns[:, 0], returns[:, 1]])
    weights, method = risk_weights(twin)
    assert method == "inverse_vol"
    inverse = 1 / twin.std(axis=0, ddof=1)
    np.testing.assert_allclose(weights, inverse / inverse.sum())

    weights, method = risk_weights(returns[:, :1])
    assert (weights.tolist(), method) == ([1.0], "erc")
