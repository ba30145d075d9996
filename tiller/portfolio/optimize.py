"""Risk-parity target weights under the portfolio constraints and daily trading limits.

All weights are fractions of NAV (``0.25`` = 25%); ``CASH`` is ``1 - sum(asset weights)``.
Returns are daily simple returns (``0.01`` = +1%).

Pipeline of :func:`optimize_weights`
------------------------------------
**Step 1 - raw weights** (fractions of the invested amount, summing to 1) over the
allowed assets (the columns of ``returns``), estimated from the last
``lookback`` rows with no missing value ("complete rows"):

1. *risk parity*, equal risk budget ``b_i = 1/N``: the long-only ``w`` with
   ``sum(w) = 1`` and equal risk contributions ``RC_i = w_i (Σw)_i / (wᵀΣw) = 1/N``,
   ``Σ`` the sample covariance (ddof=1), by ``optimize.solver``: ``newton``
   (:func:`newton_risk_parity`, the default) or ``riskfolio`` (riskfolio-lib
   ``rp_optimization(model="Classic", rm="MV")``); the two agree within 5e-5.
   The solution is accepted only when it is finite, non-negative and its risk
   contributions are within ``RISK_PARITY_TOLERANCE`` (relative) of ``1/N``.
2. *inverse volatility*, ``w_i = (1/σ_i) / Σ_j (1/σ_j)`` with ``σ_i`` the sample
   standard deviation of asset ``i``'s daily returns, when the covariance is singular
   or near-singular (no more complete rows than assets, or, by
   ``optimize.singular_matrix``, the smallest eigenvalue of the correlation matrix, or
   the smallest over the largest eigenvalue of the covariance matrix, below
   ``optimize.singular_tolerance``: e.g. two identical series) or when the solver fails
   (raises, returns None or NaN, or an inaccurate point; riskfolio-lib issues #29, #68,
   #88);
3. *previous*: the mix of ``previous_target`` (else ``current``) over the allowed
   assets, renormalised to sum to 1, when inverse volatility is undefined too (an asset
   with zero volatility, fewer than two complete rows);
4. *cash*: no allowed asset, or the previous weights hold none of them.

**Step 2 - constraints on the target**, in this order (each step only lowers weights,
except the cap redistribution, which never lifts a weight above its cap):

1. scale to the investable fraction ``I = min(1 - cash_buffer, max_gross_leverage) *
   exposure`` (e.g. ``0.95`` at L0, ``0.95 * 0.75 = 0.7125`` at L2), times the
   volatility-target scale when ``vol_target`` is set (:func:`volatility_scale`);
2. per-asset caps ``w_i <= max_weight_i``: the excess of capped assets is handed to the
   uncapped ones pro rata to their weights, repeated until no weight is above its cap;
   when every asset with weight is capped the rest stays in cash;
3. pair caps ``w_a + w_b <= cap``: both scaled by ``cap / (w_a + w_b)``, the excess to
   cash (one pass suffices because scaling down never breaks a satisfied pair);
4. long only ``w_i >= 0`` and ``sum(w) <= 1 - cash_buffer`` (guards against rounding).

Long-only weights summing to at most ``1 - cash_buffer`` have gross leverage below
1, so a ``max_gross_leverage`` above 1 is never used here.

**Step 2b - no-trade bands** (:func:`apply_bands`, off by default): a holding within its
band around the target keeps its weight; outside, it trades to the target or to the
band's edge.

**Step 3 - trading limits** on the changes ``Δ_i = target_i - current_i`` (see
:func:`apply_trading_limits`): skip changes under ``min_weight_change`` or under
``min_trade_value`` dollars (the asset keeps its current weight); keep at most
``max_trades`` changes, the largest ``|Δ|`` first; scale the kept changes by one factor
``s = min(1, max_turnover / Σ|Δ|)``, and drop those that the scaling takes under the
size rules, repeating until stable; finally cut buys that would break the cash
buffer or a pair cap because a sell was skipped.

What wins: caps and the cash buffer are enforced on the *target*; trading limits
apply to *changes*.  Turnover and the number of trades are hard limits, and a buy
never breaks a cap, a pair cap or the cash buffer.  A sell never makes a
constraint worse, and a sell that brings an asset back towards its cap (an asset
above its ``max_weight``, or held but no longer allowed: cap 0) is never skipped for
being under ``min_weight_change`` (it still needs ``min_trade_value``, so dust is not
traded).  So after step 3, for every asset and every constraint,
``final <= max(limit, current)``: a weight can stay above a cap only when the current
weight already was, and it never moves further up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import pandas as pd

from tiller.risk.window import ReturnWindow

if TYPE_CHECKING:
    from tiller.settings import OptimizeConfig

CASH: Final = "CASH"
"""Key of the cash weight in :attr:`OptimizationResult.weights`."""

Method = Literal["risk_parity", "inverse_volatility", "previous", "cash", "fixed", "hold"]

MIN_CORRELATION_EIGENVALUE: Final = 1e-8
"""Default ``optimize.singular_tolerance``: the smallest eigenvalue of the correlation
matrix below which the covariance counts as (near-)singular and inverse volatility is used
instead of the solver.  Two identical series give ~1e-16; a correlation of 0.9999 between
two assets gives ~1e-4."""

MIN_VOLATILITY: Final = 1e-12
"""A daily return standard deviation at or below this counts as zero volatility."""

RISK_PARITY_TOLERANCE: Final = 1e-2
"""Largest accepted ``max_i |N * RC_i - 1|`` of a solver result (the solver reaches ~1e-4)."""

_EPS: Final = 1e-12


@dataclass(frozen=True)
class OptimizationResult:
    """The day's target weights and how they were reached.

    Attributes
    ----------
    weights:
        Final weights (fractions of NAV) after constraints and trading limits, for every
        allowed asset and every asset in ``current``, plus ``"CASH"`` =
        ``1 - sum(asset weights)``.  Orders should move ``current`` to these.
    raw_weights:
        Step-1 weights over the allowed assets (fractions of the invested amount, summing
        to 1; empty for ``method == "cash"``), before any constraint.
    target_weights:
        Step-2 weights (fractions of NAV) over the allowed assets: after the constraints,
        before the trading limits.  The ``previous_target`` of the next call.
    method:
        ``"risk_parity"``, ``"inverse_volatility"``, ``"previous"`` or ``"cash"``.
    reason:
        Why that method (the fallback's cause, with the numbers).
    risk_contributions:
        Share of the portfolio variance of each allowed asset under the final weights,
        ``RC_i = w_i (Σw)_i / (wᵀΣw)`` with ``Σ`` the sample covariance of the lookback
        window; they sum to 1 (all 0 when the portfolio has no variance).  Held assets
        outside ``returns`` (no data) are left out.
    skipped:
        ``(symbol, why)`` for every change not made: ``"under 2% change"``,
        ``"under $100"`` (the configured thresholds), ``"max trades"``, ``"turnover"``
        (the turnover scaling took it under a size rule), ``"cash buffer"`` or
        ``"pair cap"`` (a buy cut because a sell was skipped).
    turnover:
        ``sum_i |final_i - current_i|`` (fraction of NAV, one-way).
    condition_number:
        Condition number ``λ_max / λ_min`` of the correlation matrix of the lookback
        window (``inf`` when singular, e.g. no more complete rows than assets), None when
        not computed (fewer than two assets, zero volatility, fewer than two rows).
    """

    weights: dict[str, float]
    raw_weights: dict[str, float]
    target_weights: dict[str, float]
    method: Method
    reason: str
    risk_contributions: dict[str, float]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    turnover: float = 0.0
    condition_number: float | None = None


@dataclass(frozen=True)
class TradeOutcome:
    """Result of :func:`apply_trading_limits`.

    Attributes
    ----------
    weights:
        Final asset weights (fractions of NAV; no ``CASH`` key).
    skipped:
        ``(symbol, why)`` for each change not made.
    turnover:
        ``sum_i |weights_i - current_i|``.
    """

    weights: dict[str, float]
    skipped: list[tuple[str, str]]
    turnover: float


@dataclass(frozen=True)
class _Raw:
    weights: dict[str, float]
    method: Method
    reason: str
    condition_number: float | None = None


def optimize_weights(
    returns: ReturnWindow | pd.DataFrame,
    current: Mapping[str, float],
    nav: float,
    max_weights: Mapping[str, float],
    config: OptimizeConfig,
    exposure: float = 1.0,
    pair_caps: Sequence[tuple[str, str, float]] = (),
    previous_target: Mapping[str, float] | None = None,
    fixed: Mapping[str, float] | None = None,
) -> OptimizationResult:
    """Risk-parity (or fixed) target weights, constrained and filtered for today's trading.

    Parameters
    ----------
    returns:
        Daily simple returns (fraction per day), index = dates in order, one column per
        asset the signals and the risk level allow (already filtered by the caller).
        The last ``config.lookback`` rows are used; rows with a missing or infinite
        value are dropped.  No columns: everything goes to cash.
    current:
        Current weights (fractions of NAV, >= 0) of held assets; a ``"CASH"`` key is
        ignored.  Held assets missing from ``returns`` get target 0 (sell).
    nav:
        Net asset value in dollars (> 0), to apply ``min_trade_value``.
    max_weights:
        Per-asset cap (fraction of NAV, in [0, 1]) for every column of ``returns``
        (``load_settings().assets[sym].max_weight``).
    config:
        ``load_settings().optimize``.
    exposure:
        Fraction in [0, 1] of the investable amount to use (risk level: 0.75 at L2,
        0.5 at L3, the re-entry fraction after L4).
    pair_caps:
        ``(a, b, cap)``: combined weight ``w_a + w_b <= cap`` (fraction of NAV), e.g.
        the correlation monitor's ``capped_pairs``.
    previous_target:
        The last target (``target_weights`` of the previous call), for the ``previous``
        fallback; ``current`` is used when None.
    fixed:
        Relative weights (> 0) of a fixed-weight portfolio (``optimize.method: fixed``):
        step 1 then takes ``fixed_i / sum_j fixed_j`` over the columns of ``returns``
        instead of solving risk parity (method ``"fixed"``); steps 2 and 3 are unchanged.
        E.g. ``{SPY: 0.6, TLT: 0.4}`` with a 1% cash buffer targets 59.4% / 39.6%.

    Returns
    -------
    OptimizationResult

    Raises
    ------
    ValueError
        On a negative or non-finite current weight, ``nav <= 0``, ``exposure`` outside
        [0, 1], a column without a ``max_weights`` entry, or a malformed pair cap.

    Notes
    -----
    See the module docstring for the three steps and which limit wins.
    ``investable = min(1 - cash_buffer, max_gross_leverage) * exposure``.
    """
    if not (math.isfinite(nav) and nav > 0):
        raise ValueError(f"nav must be a positive dollar amount, got {nav!r}")
    if not (math.isfinite(exposure) and 0 <= exposure <= 1):
        raise ValueError(f"exposure must lie in [0, 1], got {exposure!r}")
    if isinstance(returns, pd.DataFrame):
        returns = ReturnWindow.from_frame(returns)
    symbols = [str(c) for c in returns.columns]
    if len(set(symbols)) != len(symbols) or CASH in symbols:
        raise ValueError(f"returns columns must be unique asset symbols, got {symbols}")
    missing = [s for s in symbols if s not in max_weights]
    if missing:
        raise ValueError(f"no max weight given for {missing}")
    held = _clean_current(current)
    caps = {s: float(max_weights[s]) for s in symbols}
    bad_caps = {s: c for s, c in caps.items() if not 0 <= c <= 1}
    if bad_caps:
        raise ValueError(f"max weights must lie in [0, 1], got {bad_caps}")

    window = _window(returns, config.lookback)
    if fixed is not None:
        raw = _fixed_weights(symbols, fixed)
    else:
        raw = _raw_weights(
            window,
            previous_target if previous_target is not None else held,
            "previous target" if previous_target is not None else "current weights",
            config,
        )
    scale = volatility_scale(raw.weights, window, held, config, exposure)
    target = constrain_weights(raw.weights, caps, config, exposure * scale, pair_caps)
    banded = apply_bands(target, held, config)
    trades = apply_trading_limits(banded, held, nav, config, caps, pair_caps)

    final = trades.weights
    contributions = risk_contributions({s: final.get(s, 0.0) for s in symbols}, window.cov, symbols)
    weights = dict(final)
    weights[CASH] = 1.0 - math.fsum(final.values())
    return OptimizationResult(
        weights=weights,
        raw_weights=raw.weights,
        target_weights=target,
        method=raw.method,
        reason=raw.reason,
        risk_contributions=contributions,
        skipped=trades.skipped,
        turnover=trades.turnover,
        condition_number=raw.condition_number,
    )


def volatility_scale(
    raw: Mapping[str, float],
    window: _Window,
    held: Mapping[str, float],
    config: OptimizeConfig,
    exposure: float = 1.0,
) -> float:
    """Step 1b, volatility targeting (``optimize.vol_target``; 1.0 when off).

    ``sigma = sqrt(w' C w x 252)`` is the annualised volatility of the raw weights ``w``
    over the window's sample covariance ``C``; the scale is ``min(1, vol_target / sigma)``
    of the investable fraction ``I`` (times ``exposure``).  When the invested share this
    gives is within ``vol_target_band`` of the current one (the sum of ``held``), the
    current share is kept (as a scale, capped at 1), so a small change in the estimate
    does not trade.  Worked example: I = 0.95, vol_target 0.10, sigma 0.125 -> scale 0.8,
    invested 0.76; currently 0.78 invested with band 0.05 -> |0.76 - 0.78| <= 0.05, keep
    0.78: scale 0.78 / 0.95 = 0.8211.
    """
    if config.vol_target is None or not raw or len(window) < 2:
        return 1.0
    columns = list(window.columns)
    weights = np.array([raw.get(s, 0.0) for s in columns])
    sigma = math.sqrt(max(float(weights @ window.cov @ weights), 0.0) * 252)
    scale = 1.0 if sigma <= _EPS else min(1.0, config.vol_target / sigma)
    investable = min(1.0 - config.cash_buffer, config.max_gross_leverage) * exposure
    current = math.fsum(held.values())
    if investable > _EPS and abs(investable * scale - current) <= config.vol_target_band:
        return min(1.0, current / investable)
    return scale


def apply_bands(
    target: Mapping[str, float], held: Mapping[str, float], config: OptimizeConfig
) -> dict[str, float]:
    """Step 2b, no-trade bands (``optimize.band_absolute``, ``band_relative``,
    ``band_trade_to``; unchanged when both bands are 0).

    For each asset with target ``t > 0`` and current weight ``c``: the band is
    ``b = max(band_absolute, band_relative x t)``; ``|t - c| <= b`` keeps ``c`` (no
    trade); otherwise the asset trades to ``t`` (``target``) or to the nearer edge
    ``t + b`` / ``t - b`` (``edge``).  An exit (``t = 0``) is never banded.  Worked
    example: band_absolute 0.02, t = 0.25: c = 0.24 stays at 0.24; c = 0.20 trades to
    0.25 (``target``) or to 0.23 (``edge``).  Caps and the cash buffer are enforced on
    the result by step 3 (a buy that would break them is cut).
    """
    if config.band_absolute <= 0 and config.band_relative <= 0:
        return dict(target)
    out = dict(target)
    for symbol, t in target.items():
        c = held.get(symbol, 0.0)
        if t <= 0:
            continue
        band = max(config.band_absolute, config.band_relative * t)
        if abs(t - c) <= band:
            out[symbol] = c
        elif config.band_trade_to == "edge":
            out[symbol] = t + band if c > t else t - band
    return out


def constrain_weights(
    raw: Mapping[str, float],
    max_weights: Mapping[str, float],
    config: OptimizeConfig,
    exposure: float = 1.0,
    pair_caps: Sequence[tuple[str, str, float]] = (),
) -> dict[str, float]:
    """Step 2: size raw weights to NAV fractions under the portfolio constraints.

    Parameters
    ----------
    raw:
        Weights summing to 1 (or 0: all cash) over the allowed assets.
    max_weights:
        Cap per asset (fraction of NAV); an asset without an entry is capped at 1.
    config, exposure, pair_caps:
        As in :func:`optimize_weights`.

    Returns
    -------
    dict
        Target weights (fractions of NAV), same keys as ``raw``, with
        ``w_i >= 0``, ``w_i <= max_weight_i``, ``w_a + w_b <= cap`` for each pair and
        ``sum(w) <= 1 - cash_buffer``.

    Notes
    -----
    Order: (1) ``w = raw * I`` with ``I = min(1 - cash_buffer, max_gross_leverage) *
    exposure``; (2) per-asset caps, the excess ``Σ_capped (w_i - cap_i)`` handed to the
    uncapped assets pro rata to their weights, iterated (at most once per asset); if
    every weighted asset is capped, the excess stays in cash; (3) pair caps, scaling
    ``w_a, w_b`` by ``cap / (w_a + w_b)``, excess to cash; (4) clip at 0 and rescale if
    ``sum(w)`` exceeds ``1 - cash_buffer`` by rounding.

    Example: raw (2/3, 1/3), ``I = 0.95``: (0.6333, 0.3167); with cap 0.5 on the first,
    0.1333 moves to the second: (0.5, 0.45).
    """
    _check_pairs(pair_caps)
    names = list(raw)
    ceiling = 1.0 - config.cash_buffer
    investable = min(ceiling, config.max_gross_leverage) * exposure
    w = np.array([max(float(raw[s]), 0.0) for s in names], dtype=float)
    total = w.sum()
    if not names or total <= _EPS:
        return {s: 0.0 for s in names}
    w = w / total * investable
    cap = np.array([float(max_weights.get(s, 1.0)) for s in names], dtype=float)
    capped = np.zeros(len(names), dtype=bool)
    for _ in range(len(names) + 1):
        over = w > cap + _EPS
        if not over.any():
            break
        excess = float((w[over] - cap[over]).sum())
        w[over] = cap[over]
        capped |= over
        free = ~capped & (w > _EPS)
        room = float(w[free].sum())
        if room <= _EPS:
            break  # everyone with weight is capped: the excess stays in cash
        w[free] += excess * w[free] / room
    w = np.minimum(w, cap)
    index = {s: i for i, s in enumerate(names)}
    for a, b, pair_cap in pair_caps:
        members = [index[s] for s in (a, b) if s in index]  # an absent partner weighs 0
        combined = float(w[members].sum())
        if combined > pair_cap:
            w[members] *= pair_cap / combined
    w = np.clip(w, 0.0, None)
    if w.sum() > ceiling:
        w *= ceiling / w.sum()
    return {s: float(v) for s, v in zip(names, w, strict=True)}


def apply_trading_limits(
    target: Mapping[str, float],
    current: Mapping[str, float],
    nav: float,
    config: OptimizeConfig,
    max_weights: Mapping[str, float],
    pair_caps: Sequence[tuple[str, str, float]] = (),
) -> TradeOutcome:
    """Step 3: the changes from ``current`` to ``target`` that may be traded today.

    Parameters
    ----------
    target:
        Step-2 weights (fractions of NAV); held assets missing here have target 0.
    current:
        Current weights (fractions of NAV, >= 0; no ``CASH`` key).
    nav:
        NAV in dollars, for ``min_trade_value``.
    config:
        ``min_weight_change``, ``min_trade_value``, ``max_turnover``, ``max_trades``,
        ``cash_buffer``.
    max_weights:
        Caps of the allowed assets; a held asset without an entry (not allowed) has cap 0.
    pair_caps:
        ``(a, b, cap)`` combined-weight caps.

    Returns
    -------
    TradeOutcome

    Notes
    -----
    With ``Δ_i = target_i - current_i`` and a size floor per change
    ``m_i = max(min_weight_change, min_trade_value / nav)``, or
    ``m_i = min_trade_value / nav`` for a *restoring* sell (``Δ_i < 0`` and
    ``current_i > cap_i``):

    1. skip every ``|Δ_i| < m_i`` (``"under 2% change"`` / ``"under $100"``);
    2. rank the rest by ``|Δ_i|`` (largest first), keep the top ``max_trades`` (set
       ``K``), ``s = min(1, max_turnover / Σ_K |Δ_i|)``; drop from the candidates each
       ``i`` in ``K`` with ``s |Δ_i| < m_i`` (``"turnover"``) and repeat until none is
       dropped (terminates: the candidates only shrink); the candidates left outside
       ``K`` are ``"max trades"``;
    3. ``final_i = current_i + s Δ_i`` on ``K``, ``current_i`` elsewhere;
    4. if ``sum(final) > 1 - cash_buffer`` or a pair sum ``> cap`` while the group
       contains buys, the group's buys are cut pro rata by the excess, and cut buys
       under their floor are dropped (``"cash buffer"`` / ``"pair cap"``); this only
       lowers weights, so earlier limits still hold.

    Guarantees: ``final >= 0``; ``Σ|final - current| <= max_turnover``; at most
    ``max_trades`` weights change; each made change is at least its floor ``m_i``;
    ``final_i <= max(cap_i, current_i)``; ``sum(final) <= max(1 - cash_buffer,
    sum(current))`` and, for each pair, ``final_a + final_b <= max(cap, current_a +
    current_b)`` - a limit can stay broken only when the current weights already break
    it, and never gets worse.
    """
    if not (math.isfinite(nav) and nav > 0):
        raise ValueError(f"nav must be a positive dollar amount, got {nav!r}")
    _check_pairs(pair_caps)
    held = _clean_current(current)
    names = list(dict.fromkeys([*target, *held]))
    tgt = {s: max(float(target.get(s, 0.0)), 0.0) for s in names}
    cur = {s: held.get(s, 0.0) for s in names}
    delta = {s: tgt[s] - cur[s] for s in names}
    cap = {s: float(max_weights.get(s, 0.0)) for s in names}
    trade_floor = config.min_trade_value / nav
    restoring = {s for s in names if delta[s] < 0 and cur[s] > cap[s] + _EPS}
    floor = {
        s: trade_floor if s in restoring else max(config.min_weight_change, trade_floor)
        for s in names
    }

    under_weight = f"under {_number(config.min_weight_change * 100)}% change"
    under_value = f"under ${_number(config.min_trade_value)}"
    skipped: list[tuple[str, str]] = []
    candidates: list[str] = []
    for s in names:
        size = abs(delta[s])
        if size <= _EPS:
            continue
        if size < floor[s] - _EPS:
            too_small = s not in restoring and size < config.min_weight_change - _EPS
            skipped.append((s, under_weight if too_small else under_value))
        else:
            candidates.append(s)
    order = {s: i for i, s in enumerate(names)}
    candidates.sort(key=lambda s: (-abs(delta[s]), order[s]))

    while True:
        kept = candidates[: config.max_trades]
        gross = math.fsum(abs(delta[s]) for s in kept)
        # within rounding of the limit counts as within it (no 1e-17 residues)
        scale = 1.0 if gross <= config.max_turnover + _EPS else config.max_turnover / gross
        dropped = [s for s in kept if scale * abs(delta[s]) < floor[s] - _EPS]
        if not dropped:
            break
        skipped.extend((s, "turnover") for s in dropped)
        candidates = [s for s in candidates if s not in dropped]
    skipped.extend((s, "max trades") for s in candidates[config.max_trades :])

    final = dict(cur)
    for s in kept:
        final[s] = tgt[s] if scale >= 1.0 else cur[s] + scale * delta[s]
    _fund_buys(final, cur, floor, config, pair_caps, skipped)
    turnover = math.fsum(abs(final[s] - cur[s]) for s in names)
    return TradeOutcome(weights=final, skipped=skipped, turnover=turnover)


def risk_contributions(
    weights: Mapping[str, float],
    cov: pd.DataFrame | np.ndarray,
    symbols: Sequence[str] | None = None,
) -> dict[str, float]:
    """Each asset's share of the portfolio variance.

    Parameters
    ----------
    weights:
        Weights (any scale) of the assets to include; each must be a row/column of
        ``cov``.
    cov:
        Covariance matrix of daily returns: a frame, or an array whose rows and columns
        are ``symbols``.
    symbols:
        The order of an array ``cov``'s rows and columns.

    Returns
    -------
    dict
        ``RC_i = w_i (Σw)_i / (wᵀΣw)``, summing to 1; all 0 when ``wᵀΣw`` is not
        positive or not finite (e.g. all cash).
    """
    names = list(weights)
    if not names:
        return {}
    w = np.array([float(weights[s]) for s in names], dtype=float)
    if isinstance(cov, pd.DataFrame):
        sigma = cov.loc[names, names].to_numpy(dtype=float)
    else:
        index = {s: i for i, s in enumerate(symbols or [])}
        rows = [index[s] for s in names]
        sigma = np.asarray(cov)[np.ix_(rows, rows)]
    marginal = sigma @ w
    variance = float(w @ marginal)
    if not (math.isfinite(variance) and variance > 0):
        return {s: 0.0 for s in names}
    shares = w * marginal / variance
    return {s: float(v) for s, v in zip(names, shares, strict=True)}


# --- step 1 -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Window:
    """The complete rows of the lookback window and their sample statistics."""

    values: np.ndarray  # (rows, assets), no missing value
    symbols: list[str]

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def columns(self) -> list[str]:
        return self.symbols

    @cached_property
    def cov(self) -> np.ndarray:
        """Sample covariance (ddof = 1); NaN with fewer than two rows."""
        n = len(self.symbols)
        if len(self) < 2:
            return np.full((n, n), np.nan)
        return np.atleast_2d(np.cov(self.values, rowvar=False, ddof=1))

    @cached_property
    def std(self) -> np.ndarray:
        return np.std(self.values, axis=0, ddof=1)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.values, columns=self.symbols)


def _window(returns: ReturnWindow, lookback: int) -> _Window:
    """The last ``lookback`` rows, as floats, without rows holding a missing value."""
    values = np.asarray(returns.values[-lookback:], dtype=float)
    complete = np.isfinite(values).all(axis=1) if values.size else np.ones(len(values), bool)
    return _Window(values[complete], [str(c) for c in returns.columns])


def _raw_weights(
    window: _Window, previous: Mapping[str, float], source: str, config: OptimizeConfig
) -> _Raw:
    """Step 1: risk parity, else inverse volatility, else previous weights, else cash."""
    symbols = list(window.columns)
    n, rows = len(symbols), len(window)
    if n == 0:
        return _Raw({}, "cash", "no asset allowed: 100% cash")
    if rows < 2:
        why = f"only {rows} complete row(s) of returns: no volatility estimate"
        return _previous(symbols, previous, source, why)
    vol = window.std
    flat = [s for s, v in zip(symbols, vol, strict=True) if not (v > MIN_VOLATILITY)]
    if flat:
        why = (
            f"zero volatility for {', '.join(flat)} over {rows} rows: covariance singular "
            "and inverse volatility undefined"
        )
        return _previous(symbols, previous, source, why)
    if n == 1:
        return _Raw({symbols[0]: 1.0}, "risk_parity", "single allowed asset", None)

    if rows <= n:  # T rows give a sample covariance of rank <= T - 1 < N: singular
        why = f"covariance singular: only {rows} complete rows for {n} assets (rank <= {rows - 1})"
        return _inverse_volatility(symbols, vol, why, math.inf)
    by_covariance = config.singular_matrix == "covariance"
    matrix = window.cov if by_covariance else np.corrcoef(window.values, rowvar=False)
    eig = np.linalg.eigvalsh(matrix)
    smallest, largest = float(eig[0]), float(eig[-1])
    condition = largest / smallest if smallest > 0 else math.inf
    measure = smallest / largest if by_covariance else smallest
    if not measure >= config.singular_tolerance:
        what = (
            "smallest / largest eigenvalue of the covariance matrix"
            if by_covariance
            else "smallest eigenvalue of the correlation matrix"
        )
        why = (
            f"covariance near-singular: {what} {measure:.3g} < "
            f"{config.singular_tolerance:g} (condition number {condition:.3g})"
        )
        return _inverse_volatility(symbols, vol, why, condition)
    try:
        weights = _solve_risk_parity(window, config.solver)
    except _SolveError as exc:
        return _inverse_volatility(symbols, vol, f"risk-parity solve failed: {exc}", condition)
    return _Raw(
        dict(zip(symbols, weights.tolist(), strict=True)),
        "risk_parity",
        f"equal risk budget over {n} assets, {rows} rows (condition number {condition:.3g})",
        condition,
    )


def _fixed_weights(symbols: list[str], fixed: Mapping[str, float]) -> _Raw:
    """Step 1 of a fixed-weight portfolio: the configured mix renormalised over ``symbols``."""
    chosen = {s: float(fixed[s]) for s in symbols if fixed.get(s, 0.0) > 0}
    total = math.fsum(chosen.values())
    if not chosen or total <= _EPS:
        return _Raw({}, "cash", "no asset of the fixed mix is allowed: 100% cash")
    weights = {s: w / total for s, w in chosen.items()}
    mix = ", ".join(f"{s} {w:.1%}" for s, w in weights.items())
    return _Raw(weights, "fixed", f"fixed mix over {len(weights)} assets: {mix}")


class _SolveError(Exception):
    """The solver gave no usable risk-parity point."""


def _riskfolio_risk_parity(window: pd.DataFrame) -> np.ndarray:
    """riskfolio-lib's risk parity: ``rp_optimization(model="Classic", rm="MV")``."""
    import riskfolio as rp  # ~7-15 s import: only when a solve is needed

    try:
        portfolio = rp.Portfolio(returns=window)
        portfolio.assets_stats(method_mu="hist", method_cov="hist")
        result = portfolio.rp_optimization(model="Classic", rm="MV", rf=0, b=None, hist=True)
    except Exception as exc:  # the solver stack raises many types
        raise _SolveError(f"{type(exc).__name__}: {exc}") from exc
    if result is None:
        raise _SolveError("riskfolio found no solution")
    return np.asarray(result["weights"].reindex(window.columns).to_numpy(dtype=float))


def newton_risk_parity(cov: np.ndarray, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """Equal-risk-contribution weights by Newton's method (Spinu 2013).

    Minimises the strictly convex ``f(y) = ½ yᵀΣy - (1/N) Σ_i ln y_i`` over ``y > 0``;
    at its minimum ``y_i (Σy)_i = 1/N`` for every ``i``, so ``w = y / Σ_j y_j`` has equal
    risk contributions ``RC_i = w_i (Σw)_i / (wᵀΣw) = 1/N`` -- the same unique point
    riskfolio-lib's ``rp_optimization(rm="MV")`` solves for.  Newton steps
    ``Δ = -(Σ + diag(1/(N y²)))⁻¹ (Σy - 1/(N y))`` with backtracking so ``y`` stays
    positive and ``f`` decreases.  ``Σ`` is scaled by its mean variance first (weights
    do not depend on the scale).

    Example: two uncorrelated assets with daily vol 1% and 2%: ``w = (2/3, 1/3)``, each
    contributing half the variance.

    Raises
    ------
    ArithmeticError
        No convergence to ``max |N RC_i - 1| <= tol`` in ``max_iter`` steps.
    """
    n = cov.shape[0]
    sigma = cov / float(np.mean(np.diag(cov)))
    b = np.full(n, 1.0 / n)
    y = 1.0 / np.sqrt(np.diag(sigma))
    y *= math.sqrt(1.0 / float(y @ sigma @ y))  # start on the right scale: yᵀΣy = 1

    def objective(v: np.ndarray) -> float:
        return 0.5 * float(v @ sigma @ v) - float(b @ np.log(v))

    for _ in range(max_iter):
        marginal = sigma @ y
        gradient = marginal - b / y
        contributions = y * marginal
        if float(np.max(np.abs(contributions * n - 1.0))) <= tol:
            return y / y.sum()
        hessian = sigma + np.diag(b / y**2)
        step = -np.linalg.solve(hessian, gradient)
        decrement = -float(gradient @ step)  # Newton decrement squared
        t, current = 1.0, objective(y)
        # stay positive; while far from the optimum also decrease f enough (Armijo) --
        # near it f's changes are below float resolution and full steps converge
        while np.any(y + t * step <= 0) or (
            decrement > 1e-10 and objective(y + t * step) > current - 1e-4 * t * decrement
        ):
            t *= 0.5
            if t < 1e-12:
                raise ArithmeticError("line search failed")
        y = y + t * step
    raise ArithmeticError(f"no convergence in {max_iter} Newton steps")


def _solve_risk_parity(window: _Window, solver: str = "riskfolio") -> np.ndarray:
    """Equal-risk-contribution weights (equal budget, standard deviation), checked.

    ``solver="riskfolio"``: riskfolio-lib ``rp_optimization`` (a cvxpy conic solve);
    ``solver="newton"``: :func:`newton_risk_parity` on the same sample covariance (the
    same unique point, ~1000x faster; a test checks both agree).

    Raises
    ------
    _SolveError
        When the solver raises, finds no solution, or returns weights that are not
        finite, negative, or whose risk contributions are off ``1/N`` by more than
        ``RISK_PARITY_TOLERANCE`` (relative).
    """
    n = len(window.symbols)
    if solver == "newton":
        try:
            w = newton_risk_parity(window.cov)
        except (ArithmeticError, np.linalg.LinAlgError) as exc:
            raise _SolveError(f"Newton risk parity: {exc}") from exc
    else:
        w = _riskfolio_risk_parity(window.frame())
    if not np.isfinite(w).all():
        raise _SolveError(f"{solver} returned non-finite weights")
    if (w < -1e-6).any() or w.sum() <= 0:
        raise _SolveError(f"{solver} returned negative weights")
    w = np.clip(w, 0.0, None)
    w = w / w.sum()
    sigma = window.cov
    marginal = sigma @ w
    shares = w * marginal / float(w @ marginal)
    deviation = float(np.max(np.abs(shares * n - 1.0)))
    if not deviation <= RISK_PARITY_TOLERANCE:
        raise _SolveError(
            f"inaccurate solution: risk contributions off 1/{n} by up to {deviation:.3g} "
            f"(relative) > {RISK_PARITY_TOLERANCE:g}"
        )
    return w


def _inverse_volatility(
    symbols: list[str], vol: np.ndarray, why: str, condition: float | None
) -> _Raw:
    inverse = 1.0 / vol
    weights = inverse / inverse.sum()
    return _Raw(
        dict(zip(symbols, weights.tolist(), strict=True)),
        "inverse_volatility",
        f"{why}; inverse volatility instead",
        condition,
    )


def _previous(symbols: list[str], previous: Mapping[str, float], source: str, why: str) -> _Raw:
    mix = {s: max(float(previous.get(s, 0.0)), 0.0) for s in symbols}
    mix = {s: (v if math.isfinite(v) else 0.0) for s, v in mix.items()}
    total = math.fsum(mix.values())
    if total <= _EPS:
        return _Raw({}, "cash", f"{why}; the {source} hold none of the allowed assets: cash")
    return _Raw(
        {s: v / total for s, v in mix.items()},
        "previous",
        f"{why}; keeping the mix of the {source}",
    )


# --- helpers ------------------------------------------------------------------------


def _clean_current(current: Mapping[str, float]) -> dict[str, float]:
    held: dict[str, float] = {}
    for symbol, value in current.items():
        if symbol == CASH:
            continue
        weight = float(value)
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"current weight of {symbol} must be finite and >= 0, got {value!r}")
        held[str(symbol)] = weight
    return held


def _check_pairs(pair_caps: Sequence[tuple[str, str, float]]) -> None:
    for a, b, cap in pair_caps:
        if a == b or not (math.isfinite(cap) and cap >= 0):
            raise ValueError(f"bad pair cap {(a, b, cap)!r}: two assets and a cap >= 0")


def _fund_buys(
    final: dict[str, float],
    cur: dict[str, float],
    floor: Mapping[str, float],
    config: OptimizeConfig,
    pair_caps: Sequence[tuple[str, str, float]],
    skipped: list[tuple[str, str]],
) -> None:
    """Cut buys (in place) that break the cash buffer or a pair cap (step 3.4)."""
    limits: list[tuple[list[str], float, str]] = [
        (list(final), 1.0 - config.cash_buffer, "cash buffer")
    ]
    limits += [([s for s in (a, b) if s in final], cap, "pair cap") for a, b, cap in pair_caps]
    for members, limit, label in limits:
        excess = math.fsum(final[s] for s in members) - limit
        buys = [s for s in members if final[s] > cur[s]]
        bought = math.fsum(final[s] - cur[s] for s in buys)
        if excess <= 1e-12 or bought <= 0:
            continue  # satisfied, or broken by the current weights alone (not worse)
        keep = max(0.0, 1.0 - excess / bought)
        for s in buys:
            change = keep * (final[s] - cur[s])
            if change <= _EPS or change < floor[s] - _EPS:
                final[s] = cur[s]
                skipped.append((s, label))
            else:
                final[s] = cur[s] + change


def _number(value: float) -> str:
    """``2.0`` -> ``"2"``, ``2.5`` -> ``"2.5"``, ``1000`` -> ``"1,000"``."""
    return f"{value:,.2f}".rstrip("0").rstrip(".")
