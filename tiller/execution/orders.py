"""Orders from target weights: lot rounding, client order ids, pre-trade checks (SPEC stage 8).

Everything here is pure: no broker call, no database, no Prefect.  Quantities are in
shares (ETFs) or coins (crypto), prices and money in USD, weights in fractions of NAV
(``0.30`` = 30%).

Lots
----
A quantity is a whole number of *lots*, rounded **towards zero** (a buy never
overshoots its target, a sell never sells more than asked):

* ETFs: 1 share, or :data:`ETF_FRACTIONAL_LOT` (0.0001 share) when
  ``ExecutionConfig.fractional`` is true;
* crypto: ``ExecutionConfig.crypto_lot`` (0.0001 BTC by default).

Client order ids
----------------
``{strategy}-{YYYYMMDD}-{symbol}-{side}-{attempt}``, e.g.
``tiller-rp-20240301-BTC-USD-buy-1``: the same day, symbol, side and attempt always
give the same id, so a rerun can ask the broker whether the order already exists
instead of sending it twice (see :func:`client_order_id`).

Planning (:func:`plan_orders`)
------------------------------
1. **Target quantity** of each asset: ``raw_i = w_i * nav / price_i``; the change
   ``Δ_i = round_qty(raw_i - current_i)`` (towards zero, so sub-lot differences
   produce no order and no churn).  A target weight of 0 sells the whole position,
   whatever its lot.  Risk overrides the targets: a symbol in
   ``decision.forced_exits`` is sold entirely, one in ``decision.halve`` keeps at most
   ``round_qty(current / 2)`` (so at least half is sold).
2. **Order**: sells first, by symbol, so that their proceeds fund the buys; then
   buys, largest estimated notional first (ties by symbol), so that when money runs
   short the largest intended positions are funded first.
3. **Pre-trade checks**; each failure is a :class:`Rejection` whose reason quotes the
   numbers:

   * ``paper_only`` false: everything is rejected, ``"live trading is not allowed"``;
   * kill switch on / ``orders_allowed`` false: everything is rejected (forced exits
     too: the kill switch stops *every* new order);
   * no usable price (missing, NaN, <= 0): the asset cannot be sized and is rejected,
     except a full close (target 0 or forced exit), which needs no price;
   * buys only: ``decision.may_buy`` (sell-only levels, halted, assets that may not be
     held, no new crypto at L1);
   * buys only, **position limit**: ``(current + q) * price / nav <= max_weight``; a
     buy above it is cut to the largest lot multiple that fits (rejected if none);
   * buys only, **cash, buying power and exposure**: buys are funded in order from
     ``min(cash, buying_power) + Σ sell_notional * (1 - a)``, each buy costing
     ``q * price * (1 + a)`` with the cost allowance ``a`` = :data:`COST_ALLOWANCE`
     (0.5%, above the configured 0.10% commission + 0.05-0.15% slippage + 5 bps base
     slippage).  So after the orders fill at the given prices (within the allowance)
     cash stays >= 0: no leverage, and the long value stays <= NAV.  A buy that does not
     fit is cut, or rejected when nothing fits.
   * a *new* position whose target is under one lot (e.g. 0.00005 BTC) is recorded as a
     rejection, ``"rounds to zero at lot size"``; other sub-lot differences (an
     unchanged holding a fraction of a share off its target) are silent.

   A buy that is *cut* appears twice: the part sent in ``orders``, the part cut in
   ``rejected``.

These checks are the last line of defence: sizing policy (caps, cash buffer, pair
caps, turnover) belongs to the optimiser upstream.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Protocol

from tiller.execution.broker import OrderRequest, OrderSide
from tiller.portfolio.optimize import CASH

if TYPE_CHECKING:
    from tiller.risk.engine import RiskDecision
    from tiller.settings import ExecutionConfig

MAX_CLIENT_ORDER_ID: Final = 48
"""Longest client order id produced (Alpaca accepts 128; short ids read better in logs)."""

ETF_FRACTIONAL_LOT: Final = 0.0001
"""ETF lot (shares) when ``ExecutionConfig.fractional`` is true."""

COST_ALLOWANCE: Final = 0.005
"""Fraction of notional reserved for commission and slippage when funding buys (0.5%)."""

LOT_TOLERANCE: Final = 1e-9
"""A quantity within this many lots (plus a few float spacings of the lot count) below a lot
boundary counts as on it: float noise, e.g. ``0.3471 / 0.0001 = 3470.9999999999995``."""

CRYPTO: Final = "crypto"
LIQUIDATION_TAG: Final = "stop"
"""Appended to the strategy tag of emergency-stop orders (``tiller-rp-stop-...``) so that
their ids never collide with the day's rebalance orders."""

LIVE_TRADING: Final = "live trading is not allowed"


class AssetRules(Protocol):
    """What planning needs of an asset: :class:`tiller.settings.AssetSpec` satisfies it."""

    @property
    def asset_class(self) -> str: ...

    @property
    def max_weight(self) -> float: ...


@dataclass(frozen=True)
class Rejection:
    """A wanted order (or part of one) that is not sent, and why.

    Attributes
    ----------
    symbol:
        The asset.
    side:
        The side it would have had; None when even the direction is unknown (no price
        or no asset rules for an asset with a non-zero target).
    qty:
        Quantity (shares / coins) not sent: the whole order, the part cut by a limit,
        the unrounded target for ``"rounds to zero at lot size"``, 0.0 when unknown.
    reason:
        Human-readable, with the numbers.
    """

    symbol: str
    side: OrderSide | None
    qty: float
    reason: str


@dataclass(frozen=True)
class OrderPlan:
    """The orders to send for one ``as_of`` and what was rejected.

    Attributes
    ----------
    orders:
        Sells (by symbol) then buys (largest notional first), quantities in lots.
    rejected:
        Every rejected or cut order (see :class:`Rejection`).
    notes:
        ``{client_order_id: why}`` for each order (rebalance target, forced exit, halve).
    sell_proceeds:
        Estimated proceeds of the sells, ``Σ q * price * (1 - a)`` (USD; sells without a
        price count 0).
    buy_cost:
        Estimated cost of the buys, ``Σ q * price * (1 + a)`` (USD).
    budget:
        ``min(cash, buying_power) + sell_proceeds`` (USD), the most the buys may cost.
    """

    orders: list[OrderRequest]
    rejected: list[Rejection] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    sell_proceeds: float = 0.0
    buy_cost: float = 0.0
    budget: float = 0.0


@dataclass
class _Intent:
    symbol: str
    side: OrderSide
    qty: float
    price: float | None
    note: str
    asset_class: str | None


def client_order_id(
    as_of: date, symbol: str, side: OrderSide, strategy: str, attempt: int = 1
) -> str:
    """The deterministic client order id of one order.

    Format ``{strategy}-{YYYYMMDD}-{symbol}-{side}-{attempt}``, e.g.
    ``client_order_id(date(2024, 3, 1), "BTC-USD", OrderSide.BUY, "tiller-rp")`` =
    ``"tiller-rp-20240301-BTC-USD-buy-1"`` (32 characters).

    Sanitising: the strategy is lower-cased and every run of characters outside
    ``[a-z0-9-]`` becomes ``-``; in the symbol every character outside
    ``[A-Za-z0-9.-]`` becomes ``_`` (``BTC-USD`` and ``BRK.B`` are kept as they are).
    An id longer than :data:`MAX_CLIENT_ORDER_ID` (48) characters is cut to 39 and
    suffixed with ``-`` and the first 8 hex digits of the SHA-256 of the full id, so it
    stays unique and deterministic.  The default tag (<= 20 characters) with a universe
    symbol (<= 15) needs at most 52 characters before the cut, so the cut is rare.

    Parameters
    ----------
    as_of:
        The trading date the order belongs to.
    symbol:
        Tiller's symbol, e.g. ``SPY``, ``BTC-USD``.
    side:
        Buy or sell.
    strategy:
        The strategy tag (``ExecutionConfig.strategy_tag``).
    attempt:
        1 for the first order; a deliberate resubmission after a terminal failure
        (rejected, cancelled, expired) uses the next number.

    Raises
    ------
    ValueError
        ``attempt < 1``, or an empty strategy or symbol.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    tag = re.sub(r"[^a-z0-9-]+", "-", strategy.lower()).strip("-")
    if not tag:
        raise ValueError(f"strategy tag {strategy!r} has no usable character ([a-z0-9-])")
    if not symbol:
        raise ValueError("symbol must not be empty")
    sym = re.sub(r"[^A-Za-z0-9.\-]", "_", symbol)
    cid = f"{tag}-{as_of:%Y%m%d}-{sym}-{OrderSide(side).value}-{attempt}"
    if len(cid) > MAX_CLIENT_ORDER_ID:
        digest = hashlib.sha256(cid.encode()).hexdigest()[:8]
        cid = f"{cid[: MAX_CLIENT_ORDER_ID - 9]}-{digest}"
    return cid


def lot_size(asset_class: str, config: ExecutionConfig) -> float:
    """The lot (shares / coins) of an asset class: see the module docstring."""
    if asset_class == CRYPTO:
        return config.crypto_lot
    return ETF_FRACTIONAL_LOT if config.fractional else 1.0


def _decimals(lot: float) -> int:
    exponent = Decimal(repr(lot)).normalize().as_tuple().exponent
    return min(12, max(0, -exponent)) if isinstance(exponent, int) else 12


def round_qty(qty: float, asset_class: str, config: ExecutionConfig) -> float:
    """Round a quantity towards zero to a whole number of lots.

    ``round_qty(q) = sign(q) * floor(n + 1e-9 + 8 n ε) * lot`` with ``n = |q| / lot``
    and ``ε`` the float epsilon, then rounded to the lot's decimals to drop float noise
    (``0.3471000000000004`` -> ``0.3471``).  The tolerance (:data:`LOT_TOLERANCE` plus a
    few float spacings of ``n``) keeps a quantity that is a lot multiple up to float noise
    on that multiple; hence ``|round_qty(q)| <= |q| + (1e-9 + 8 n ε) * lot``.

    Examples
    --------
    161.73 shares of an ETF -> 161.0; -3.9 -> -3.0; 0.347123 BTC -> 0.3471;
    with ``fractional``: 161.73456 -> 161.7345.

    Parameters
    ----------
    qty:
        Quantity in shares / coins (negative for a sell).
    asset_class:
        ``AssetSpec.asset_class``; ``"crypto"`` uses ``config.crypto_lot``.
    config:
        ``fractional`` and ``crypto_lot``.

    Raises
    ------
    ValueError
        ``qty`` not finite.
    """
    if not math.isfinite(qty):
        raise ValueError(f"quantity must be finite, got {qty!r}")
    lot = lot_size(asset_class, config)
    count = abs(qty) / lot
    lots = math.floor(count + LOT_TOLERANCE + 8 * count * sys.float_info.epsilon)
    rounded = round(lots * lot, _decimals(lot))
    if rounded == 0:
        return 0.0
    return math.copysign(rounded, qty)


def time_in_force(asset_class: str | None) -> str:
    """``"gtc"`` for crypto (trades around the clock), ``"day"`` for everything else."""
    return "gtc" if asset_class == CRYPTO else "day"


def _usable_price(value: float | None) -> float | None:
    if value is None:
        return None
    price = float(value)
    return price if math.isfinite(price) and price > 0 else None


def _qty(q: float) -> str:
    return f"{q:,.10f}".rstrip("0").rstrip(".")


def _check_inputs(
    targets: Mapping[str, float],
    positions: Mapping[str, float],
    nav: float,
    cash: float,
    buying_power: float,
    cost_allowance: float,
) -> None:
    if not (math.isfinite(nav) and nav > 0):
        raise ValueError(f"nav must be a positive amount (USD), got {nav!r}")
    for name, value in (("cash", cash), ("buying_power", buying_power)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if not 0 <= cost_allowance < 1:
        raise ValueError(f"cost_allowance must lie in [0, 1), got {cost_allowance}")
    for symbol, weight in targets.items():
        if symbol != CASH and not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"target weight of {symbol} must be finite and >= 0, got {weight!r}")
    for symbol, qty in positions.items():
        if not (math.isfinite(qty) and qty >= 0):
            raise ValueError(
                f"position of {symbol} must be finite and >= 0 (no shorts), got {qty!r}"
            )


def plan_orders(
    as_of: date,
    targets: Mapping[str, float],
    positions: Mapping[str, float],
    prices: Mapping[str, float],
    *,
    nav: float,
    cash: float,
    buying_power: float,
    decision: RiskDecision | None,
    assets: Mapping[str, AssetRules],
    config: ExecutionConfig,
    strategy: str | None = None,
    paper_only: bool = True,
    cost_allowance: float = COST_ALLOWANCE,
) -> OrderPlan:
    """Turn target weights into orders that pass the pre-trade checks (module docstring).

    Worked example: NAV $100,000, nothing held, GLD 30% at $185.50 ->
    ``30,000 / 185.50 = 161.73`` -> buy 161 shares; BTC-USD 15% at $43,210.55 ->
    ``15,000 / 43,210.55 = 0.347138`` -> buy 0.3471 BTC.

    Parameters
    ----------
    as_of:
        The trading date (goes into every client order id).
    targets:
        Target weights (fractions of ``nav``, >= 0); a ``"CASH"`` key is ignored, a
        missing held symbol counts as 0 (sell it all).
    positions:
        Current quantities (shares / coins, >= 0: no shorts).
    prices:
        Last price (USD) per symbol, used to size the orders and estimate notional.
    nav:
        Net asset value (USD, > 0) the weights are fractions of.
    cash:
        Settled cash (USD).
    buying_power:
        The broker's buying power (USD).
    decision:
        Today's risk decision; None applies no risk rule (no kill switch, every buy
        allowed, no forced exit).
    assets:
        Asset class and max weight per symbol (``settings.assets``).  An asset with a
        non-zero target but no entry is rejected; a full close needs no entry.
    config:
        Lots (``fractional``, ``crypto_lot``) and the default strategy tag.
    strategy:
        Strategy tag for the client order ids (default ``config.strategy_tag``).
    paper_only:
        True when the venue is a paper one (the simulated broker, Alpaca's paper
        endpoint).  False rejects every order: ``"live trading is not allowed"``.
    cost_allowance:
        Fraction of notional reserved for costs when funding buys (default 0.5%).

    Returns
    -------
    OrderPlan
        Orders (sells first), rejections and the estimated money flows.

    Raises
    ------
    ValueError
        ``nav <= 0``, a negative or non-finite weight or position, a non-finite cash or
        buying power.
    """
    _check_inputs(targets, positions, nav, cash, buying_power, cost_allowance)
    tag = strategy or config.strategy_tag
    held = {s: float(q) for s, q in positions.items() if q > 0}
    weights = {s: float(w) for s, w in targets.items() if s != CASH}
    forced = dict(decision.forced_exits) if decision is not None else {}
    halve = dict(decision.halve) if decision is not None else {}

    sells: list[_Intent] = []
    buys: list[_Intent] = []
    rejected: list[Rejection] = []
    for symbol in sorted(set(weights) | set(held)):
        current = held.get(symbol, 0.0)
        weight = weights.get(symbol, 0.0)
        spec = assets.get(symbol)
        asset_class = spec.asset_class if spec is not None else None
        price = _usable_price(prices.get(symbol))
        if current > 0 and symbol in forced:
            note = f"forced exit: {forced[symbol]}"
            sells.append(_Intent(symbol, OrderSide.SELL, current, price, note, asset_class))
            continue
        if weight == 0:
            if current > 0:
                note = f"target 0% of NAV: close {_qty(current)} {symbol}"
                sells.append(_Intent(symbol, OrderSide.SELL, current, price, note, asset_class))
            continue
        if spec is None:
            rejected.append(
                Rejection(
                    symbol,
                    None,
                    0.0,
                    f"{symbol} has target {weight:.2%} but is not in the universe table "
                    "(no asset class or max weight)",
                )
            )
            continue
        lot = lot_size(spec.asset_class, config)
        keep: float | None = None
        if current > 0 and symbol in halve:
            keep = round_qty(current / 2, spec.asset_class, config)
        if price is None:
            if keep is not None:
                note = f"halve: {halve[symbol]} (keep {_qty(keep)} of {_qty(current)})"
                sells.append(
                    _Intent(symbol, OrderSide.SELL, current - keep, None, note, asset_class)
                )
            else:
                rejected.append(
                    Rejection(
                        symbol,
                        None,
                        0.0,
                        f"no usable price for {symbol} (got {prices.get(symbol)!r}): its "
                        f"target {weight:.2%} of NAV cannot be sized",
                    )
                )
            continue
        raw_target = weight * nav / price
        note = (
            f"target {weight:.2%} of NAV ${nav:,.2f} at ${price:,.2f} = {raw_target:,.6f}; "
            f"held {_qty(current)}"
        )
        if keep is not None and raw_target > keep:
            raw_target = keep
            note = f"halve: {halve[symbol]} (keep {_qty(keep)} of {_qty(current)})"
        delta = round_qty(raw_target - current, spec.asset_class, config)
        if delta < 0:
            qty = min(-delta, current)
            sells.append(_Intent(symbol, OrderSide.SELL, qty, price, note, asset_class))
        elif delta > 0:
            buys.append(_Intent(symbol, OrderSide.BUY, delta, price, note, asset_class))
        elif current == 0 and raw_target > 0:
            rejected.append(
                Rejection(
                    symbol,
                    OrderSide.BUY,
                    raw_target,
                    f"rounds to zero at lot size: target {weight:.2%} of NAV ${nav:,.2f} at "
                    f"${price:,.2f} = {_qty(raw_target)} {symbol}, under one lot "
                    f"({_qty(lot)})",
                )
            )
    buys.sort(key=lambda i: (-(i.qty * (i.price or 0.0)), i.symbol))

    gate = _gate(decision, paper_only)
    if gate is not None:
        rejected.extend(Rejection(i.symbol, i.side, i.qty, gate) for i in sells + buys)
        return OrderPlan(orders=[], rejected=rejected)

    orders: list[OrderRequest] = []
    notes: dict[str, str] = {}

    def emit(intent: _Intent, qty: float) -> None:
        cid = client_order_id(as_of, intent.symbol, intent.side, tag)
        tif = time_in_force(intent.asset_class)
        orders.append(OrderRequest(cid, intent.symbol, intent.side, qty, as_of, tif))
        notes[cid] = intent.note

    proceeds = 0.0
    for intent in sells:
        emit(intent, intent.qty)
        if intent.price is not None:
            proceeds += intent.qty * intent.price * (1 - cost_allowance)

    binding = "cash" if cash <= buying_power else "buying power"
    budget = min(cash, buying_power) + proceeds
    remaining = budget
    spent = 0.0
    for intent in buys:
        symbol, price, qty = intent.symbol, intent.price, intent.qty
        assert price is not None and intent.asset_class is not None  # buys are priced
        spec = assets[symbol]
        if decision is not None:
            ok, why = decision.may_buy(symbol, 1.0)
            if not ok:
                rejected.append(Rejection(symbol, OrderSide.BUY, qty, f"risk: {why}"))
                continue
        current = held.get(symbol, 0.0)
        room = spec.max_weight * nav / price - current
        if qty > room + LOT_TOLERANCE * lot_size(intent.asset_class, config):
            fit = max(0.0, round_qty(max(room, 0.0), intent.asset_class, config))
            after = (current + qty) * price / nav
            reason = (
                f"position limit: {symbol} would be {after:.2%} of NAV ({_qty(current + qty)} "
                f"x ${price:,.2f} / ${nav:,.2f}) > max {spec.max_weight:.2%}"
            )
            if fit <= 0:
                rejected.append(Rejection(symbol, OrderSide.BUY, qty, reason))
                continue
            rejected.append(
                Rejection(symbol, OrderSide.BUY, _lots(qty - fit), f"{reason}; cut to {_qty(fit)}")
            )
            qty = fit
        unit = price * (1 + cost_allowance)
        if qty * unit > remaining + 1e-9:
            fit = round_qty(max(remaining, 0.0) / unit, intent.asset_class, config)
            fit = max(0.0, fit)
            lot = lot_size(intent.asset_class, config)
            while fit > 0 and fit * unit > remaining + 1e-9:  # float noise on the boundary
                fit = max(0.0, round_qty(fit - lot, intent.asset_class, config))
            reason = (
                f"{binding}: buying {_qty(qty)} {symbol} x ${price:,.2f} "
                f"(+{cost_allowance:.2%} costs) = ${qty * unit:,.2f} exceeds the "
                f"${max(remaining, 0.0):,.2f} left of ${budget:,.2f} "
                f"(min(cash ${cash:,.2f}, buying power ${buying_power:,.2f}) + sell "
                f"proceeds ${proceeds:,.2f})"
            )
            if fit <= 0:
                rejected.append(Rejection(symbol, OrderSide.BUY, qty, reason))
                continue
            rejected.append(
                Rejection(symbol, OrderSide.BUY, _lots(qty - fit), f"{reason}; cut to {_qty(fit)}")
            )
            qty = fit
        remaining -= qty * unit
        spent += qty * unit
        emit(intent, qty)

    return OrderPlan(
        orders=orders,
        rejected=rejected,
        notes=notes,
        sell_proceeds=proceeds,
        buy_cost=spent,
        budget=budget,
    )


def _lots(q: float) -> float:
    return round(q, 10)


def _gate(decision: RiskDecision | None, paper_only: bool) -> str | None:
    """The reason every order is rejected today, or None."""
    if not paper_only:
        return LIVE_TRADING
    if decision is None:
        return None
    if decision.kill_switch:
        return f"kill switch on ({decision.kill_reason or 'no reason given'}): no new orders"
    if not decision.orders_allowed:
        return f"orders not allowed at {decision.level.name} ({decision.buy_block_reason})"
    return None


def liquidation_orders(
    as_of: date,
    positions: Mapping[str, float],
    strategy: str,
    *,
    asset_classes: Mapping[str, str] | None = None,
    attempt: int = 1,
) -> list[OrderRequest]:
    """Sell every position entirely: the L4 emergency stop.

    One market sell of the whole quantity per held symbol (qty > 0), by symbol, no
    rounding (a full close needs none).  Ids use the strategy tag suffixed with
    ``-stop`` (:data:`LIQUIDATION_TAG`), e.g. ``tiller-rp-stop-20240301-SPY-sell-1``,
    so that a liquidation on a day that already rebalanced never reuses (and is never
    mistaken for) a rebalance order.  No check applies: the emergency stop is meant to
    go through even when buying is blocked.

    Parameters
    ----------
    as_of:
        The trading date.
    positions:
        ``{symbol: qty}`` held (shares / coins); zero and negative entries are skipped.
    strategy:
        The strategy tag (``ExecutionConfig.strategy_tag``).
    asset_classes:
        ``{symbol: asset_class}``, for the time in force (``gtc`` for crypto, else ``day``).
    attempt:
        Client order id attempt number (next one for a resubmission).
    """
    classes = asset_classes or {}
    tag = f"{strategy}-{LIQUIDATION_TAG}"
    return [
        OrderRequest(
            client_order_id(as_of, symbol, OrderSide.SELL, tag, attempt),
            symbol,
            OrderSide.SELL,
            float(qty),
            as_of,
            time_in_force(classes.get(symbol)),
        )
        for symbol, qty in sorted(positions.items())
        if math.isfinite(qty) and qty > 0
    ]
