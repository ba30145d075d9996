"""Portfolio accounting: fills into cash, positions and P&L; NAV snapshots; reconciliation.

Pure functions on immutable values (no broker, no database).  Money is in USD and is
booked **in whole cents**: each fill's notional ``qty * price`` and its commission are
rounded to the cent when booked (half a cent away from zero, on the float's shortest
decimal form: ``0.005`` -> ``0.01``), so that cash, fees, realized P&L and cost basis are
always whole cents and the accounting identities hold exactly, not just approximately.
Quantities are shares / coins.

Average-cost method
-------------------
A position keeps its quantity and its **cost basis** (USD, whole cents; the sum of the
notionals bought, less the basis released by sells).  ``avg_cost = cost_basis / qty``.

* buy ``q`` at ``p`` with commission ``c``: ``cash -= round(q p) + c``,
  ``cost_basis += round(q p)``, ``fees += c``.  The commission is *not* part of the
  cost basis: it is tracked in ``fees`` only.
* sell ``q`` of ``Q`` held at ``p``: ``cash += round(q p) - c``, the basis released
  is ``round(cost_basis * q / Q)`` (all of it when closing), ``realized_pnl +=
  round(q p) - released`` (``≈ (p - avg_cost) * q``), ``fees += c``.  Selling more
  than held raises :class:`ValueError`: no short positions.

Invariants
----------
Each fill keeps ``cash + Σ cost_basis - realized_pnl + fees`` unchanged, so from a
:meth:`Portfolio.initial` start, in whole cents:

1. ``nav = cash + Σ_i value_i`` with ``value_i = round(qty_i * price_i)``;
2. ``nav = initial_capital + realized_pnl + unrealized_pnl - fees`` with
   ``unrealized_pnl = Σ_i (value_i - cost_basis_i)``.

:func:`check_invariants` verifies both on a :class:`NavSnapshot`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

from tiller.execution.broker import BrokerPosition, OrderSide

QTY_TOLERANCE: Final = 1e-9
"""Shares / coins: a sell within this of the held quantity closes the position; one more
than this above it is an oversell."""


def _cents(amount: float) -> int:
    """USD -> whole cents, half a cent away from zero, on the shortest decimal form of the
    float (``0.005`` -> 1 cent, ``14,998.381905`` -> 1,499,838 cents).

    Fast path: ``amount * 100`` rounded to the nearest integer, which is the same answer
    unless the value sits within rounding error of a half cent; those go through
    :class:`~decimal.Decimal` on the float's shortest form.
    """
    x = float(amount) * 100.0
    size = abs(x)
    fraction = size - math.floor(size)
    if abs(fraction - 0.5) > 1e-6 + size * 1e-13:
        whole = math.floor(size + 0.5)
        return whole if x >= 0 else -whole
    return _exact_cents(amount)


def _exact_cents(amount: float) -> int:
    """:func:`_cents` by the decimal form (the reference the fast path agrees with)."""
    return int(Decimal(repr(float(amount))).scaleb(2).to_integral_value(ROUND_HALF_UP))


def _usd(cents: int) -> float:
    return cents / 100


def _clean_qty(qty: float) -> float:
    return round(qty, 10)


@dataclass(frozen=True)
class Fill:
    """One execution (or the filled part of an order).

    Attributes
    ----------
    client_order_id:
        The order it belongs to.
    symbol:
        Tiller's symbol.
    side:
        Buy or sell.
    qty:
        Quantity filled (shares / coins, > 0).
    price:
        Average fill price (USD, > 0).
    commission:
        Commission charged (USD, >= 0).
    filled_at:
        When it filled.
    """

    client_order_id: str
    symbol: str
    side: OrderSide
    qty: float
    price: float
    commission: float
    filled_at: datetime

    def __post_init__(self) -> None:
        if not (math.isfinite(self.qty) and self.qty > 0):
            raise ValueError(f"fill {self.client_order_id}: qty must be > 0, got {self.qty!r}")
        if not (math.isfinite(self.price) and self.price > 0):
            raise ValueError(f"fill {self.client_order_id}: price must be > 0, got {self.price!r}")
        if not (math.isfinite(self.commission) and self.commission >= 0):
            raise ValueError(
                f"fill {self.client_order_id}: commission must be >= 0, got {self.commission!r}"
            )


@dataclass(frozen=True)
class PositionState:
    """A held position under the average-cost method.

    Attributes
    ----------
    symbol:
        Tiller's symbol.
    qty:
        Quantity held (shares / coins, > 0).
    cost_basis:
        Total cost (USD, whole cents) of the quantity held, commissions excluded.
    opened:
        The date of the fill that opened the position (from none held); adding to it or
        selling part of it keeps the date.  None when unknown (a position taken over from
        the broker, or a book saved before the date was kept).
    """

    symbol: str
    qty: float
    cost_basis: float
    opened: date | None = None

    @property
    def avg_cost(self) -> float:
        """Average cost per share / coin (USD): ``cost_basis / qty``."""
        return self.cost_basis / self.qty if self.qty else 0.0

    @classmethod
    def from_avg_cost(cls, symbol: str, qty: float, avg_cost: float) -> PositionState:
        """A position from a quantity and an average price (e.g. a broker's):
        ``cost_basis = round(qty * avg_cost)`` to the cent."""
        return cls(symbol, qty, _usd(_cents(qty * avg_cost)))


@dataclass(frozen=True)
class Portfolio:
    """Cash, positions and running totals (USD, whole cents).

    Attributes
    ----------
    cash:
        Cash (USD).
    positions:
        Held positions by symbol (quantity > 0 only).
    realized_pnl:
        Sum over sells of ``proceeds - cost basis released`` (USD), commissions excluded.
    fees:
        Sum of commissions paid (USD).
    peak_nav:
        Highest NAV seen (USD); :func:`snapshot` reports the updated peak,
        :func:`update_peak` carries it back into the portfolio.
    """

    cash: float
    positions: dict[str, PositionState] = field(default_factory=dict)
    realized_pnl: float = 0.0
    fees: float = 0.0
    peak_nav: float = 0.0

    @classmethod
    def initial(cls, capital: float) -> Portfolio:
        """All cash: ``cash = peak_nav = round(capital)`` to the cent."""
        cents = _usd(_cents(capital))
        return cls(cash=cents, peak_nav=cents)

    def quantities(self) -> dict[str, float]:
        """``{symbol: qty}`` of the held positions (for orders and reconciliation)."""
        return {s: p.qty for s, p in sorted(self.positions.items())}


def apply_fill(portfolio: Portfolio, fill: Fill) -> Portfolio:
    """The portfolio after one fill (average-cost method, module docstring).

    Worked example: buy 10 at $100 with $1 commission from $10,000 cash -> cash
    ``10,000 - 1,000 - 1 = 8,999``, basis $1,000 (avg $100), fees $1; sell 4 at $110
    with $0.44 -> cash ``8,999 + 440 - 0.44 = 9,438.56``, released basis
    ``1,000 * 4 / 10 = 400``, realized ``440 - 400 = 40``, fees $1.44, 6 left at avg $100.

    Raises
    ------
    ValueError
        A sell of more than is held (beyond :data:`QTY_TOLERANCE`): no short positions.
    """
    gross = _cents(fill.qty * fill.price)
    commission = _cents(fill.commission)
    cash = _cents(portfolio.cash)
    fees = _cents(portfolio.fees) + commission
    realized = _cents(portfolio.realized_pnl)
    positions = dict(portfolio.positions)
    held = positions.get(fill.symbol)
    held_qty = held.qty if held is not None else 0.0
    basis = _cents(held.cost_basis) if held is not None else 0

    if fill.side == OrderSide.BUY:
        cash -= gross + commission
        positions[fill.symbol] = PositionState(
            fill.symbol,
            _clean_qty(held_qty + fill.qty),
            _usd(basis + gross),
            held.opened if held is not None else fill.filled_at.date(),
        )
    else:
        if fill.qty > held_qty + QTY_TOLERANCE:
            raise ValueError(
                f"fill {fill.client_order_id}: cannot sell {fill.qty:g} {fill.symbol}, only "
                f"{held_qty:g} held (no short positions)"
            )
        if fill.qty >= held_qty - QTY_TOLERANCE:
            released = basis
            del positions[fill.symbol]
        else:
            released = _cents(_usd(basis) * fill.qty / held_qty)
            positions[fill.symbol] = PositionState(
                fill.symbol,
                _clean_qty(held_qty - fill.qty),
                _usd(basis - released),
                held.opened if held is not None else None,
            )
        cash += gross - commission
        realized += gross - released
    return replace(
        portfolio,
        cash=_usd(cash),
        positions=positions,
        realized_pnl=_usd(realized),
        fees=_usd(fees),
    )


def apply_dividend(portfolio: Portfolio, symbol: str, per_share: float) -> Portfolio:
    """The portfolio after a cash dividend of ``per_share`` USD on its ``symbol`` holding.

    ``cash += round(qty * per_share)`` and ``realized_pnl +=`` the same amount, so both
    invariants of the module docstring still hold.  Worked example: 150 SPY, $1.5725 a
    share -> ``150 * 1.5725 = 235.875`` -> $235.88 to cash and realized P&L.  Nothing
    happens when the symbol is not held.
    """
    held = portfolio.positions.get(symbol)
    if held is None or not (math.isfinite(per_share) and per_share > 0):
        return portfolio
    amount = _cents(held.qty * per_share)
    return replace(
        portfolio,
        cash=_usd(_cents(portfolio.cash) + amount),
        realized_pnl=_usd(_cents(portfolio.realized_pnl) + amount),
    )


def apply_fills(portfolio: Portfolio, fills: Iterable[Fill]) -> Portfolio:
    """:func:`apply_fill` over ``fills`` in order."""
    for fill in fills:
        portfolio = apply_fill(portfolio, fill)
    return portfolio


@dataclass(frozen=True)
class PositionMark:
    """One position marked to a price (USD, whole cents except ``price`` and ``avg_cost``).

    ``value = round(qty * price)``, ``unrealized = value - cost_basis``.
    """

    qty: float
    price: float
    value: float
    avg_cost: float
    unrealized: float


@dataclass(frozen=True)
class NavSnapshot:
    """The portfolio valued at ``as_of`` (USD, whole cents).

    Attributes
    ----------
    as_of:
        The date of the prices.
    cash:
        Cash.
    positions_value:
        ``Σ value_i``.
    nav:
        ``cash + positions_value``.
    peak_nav:
        ``max(portfolio.peak_nav, nav)``.
    drawdown:
        ``1 - nav / peak_nav`` (fraction, 0 at a new peak).
    realized_pnl, unrealized_pnl, fees:
        Running realized P&L, ``Σ (value_i - cost_basis_i)``, and commissions paid.
    positions:
        The marks by symbol.
    """

    as_of: date
    cash: float
    positions_value: float
    nav: float
    peak_nav: float
    drawdown: float
    realized_pnl: float
    unrealized_pnl: float
    fees: float
    positions: dict[str, PositionMark]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for the report and the database)."""
        return {
            "as_of": self.as_of.isoformat(),
            "cash": self.cash,
            "positions_value": self.positions_value,
            "nav": self.nav,
            "peak_nav": self.peak_nav,
            "drawdown": self.drawdown,
            "realized_pnl": self.realized_pnl,
            "unrealized_pnl": self.unrealized_pnl,
            "fees": self.fees,
            "positions": {
                s: {
                    "qty": m.qty,
                    "price": m.price,
                    "value": m.value,
                    "avg_cost": m.avg_cost,
                    "unrealized": m.unrealized,
                }
                for s, m in self.positions.items()
            },
        }


def snapshot(portfolio: Portfolio, prices: Mapping[str, float], as_of: date) -> NavSnapshot:
    """Value ``portfolio`` at ``prices`` (USD, whole cents; formulas in :class:`NavSnapshot`).

    Raises
    ------
    ValueError
        A held symbol has no usable price (missing, NaN, <= 0).
    """
    marks: dict[str, PositionMark] = {}
    value_total = 0
    unrealized_total = 0
    for symbol, pos in sorted(portfolio.positions.items()):
        price = prices.get(symbol)
        if price is None or not (math.isfinite(price) and price > 0):
            raise ValueError(f"no usable price for held {symbol} on {as_of} (got {price!r})")
        value = _cents(pos.qty * price)
        unrealized = value - _cents(pos.cost_basis)
        marks[symbol] = PositionMark(
            pos.qty, float(price), _usd(value), pos.avg_cost, _usd(unrealized)
        )
        value_total += value
        unrealized_total += unrealized
    cash = _cents(portfolio.cash)
    nav = cash + value_total
    peak = max(_cents(portfolio.peak_nav), nav)
    return NavSnapshot(
        as_of=as_of,
        cash=_usd(cash),
        positions_value=_usd(value_total),
        nav=_usd(nav),
        peak_nav=_usd(peak),
        drawdown=1 - nav / peak if peak > 0 else 0.0,
        realized_pnl=_usd(_cents(portfolio.realized_pnl)),
        unrealized_pnl=_usd(unrealized_total),
        fees=_usd(_cents(portfolio.fees)),
        positions=marks,
    )


def update_peak(portfolio: Portfolio, snap: NavSnapshot) -> Portfolio:
    """``portfolio`` with ``peak_nav`` raised to the snapshot's peak."""
    return replace(portfolio, peak_nav=max(portfolio.peak_nav, snap.peak_nav))


def check_invariants(snap: NavSnapshot, initial_capital: float) -> None:
    """Check the two accounting identities to the cent (module docstring).

    1. ``cash + Σ value_i == positions_value + cash == nav``;
    2. ``nav == initial_capital + realized_pnl + unrealized_pnl - fees`` and
       ``unrealized_pnl == Σ unrealized_i``.

    Identity 2 holds for a portfolio that started as :meth:`Portfolio.initial` with
    ``initial_capital`` and changed only through :func:`apply_fill`.

    Raises
    ------
    ValueError
        An identity is off by a cent or more, with the numbers.
    """
    cash = _cents(snap.cash)
    values = sum(_cents(m.value) for m in snap.positions.values())
    nav = _cents(snap.nav)
    if values != _cents(snap.positions_value):
        raise ValueError(
            f"positions_value ${snap.positions_value:,.2f} != sum of position values "
            f"${_usd(values):,.2f}"
        )
    if cash + values != nav:
        raise ValueError(
            f"cash ${snap.cash:,.2f} + positions ${_usd(values):,.2f} = "
            f"${_usd(cash + values):,.2f} != NAV ${snap.nav:,.2f}"
        )
    unrealized = sum(_cents(m.unrealized) for m in snap.positions.values())
    if unrealized != _cents(snap.unrealized_pnl):
        raise ValueError(
            f"unrealized_pnl ${snap.unrealized_pnl:,.2f} != sum over positions "
            f"${_usd(unrealized):,.2f}"
        )
    expected = (
        _cents(initial_capital)
        + _cents(snap.realized_pnl)
        + _cents(snap.unrealized_pnl)
        - _cents(snap.fees)
    )
    if expected != nav:
        raise ValueError(
            f"NAV ${snap.nav:,.2f} != initial ${initial_capital:,.2f} + realized "
            f"${snap.realized_pnl:,.2f} + unrealized ${snap.unrealized_pnl:,.2f} - fees "
            f"${snap.fees:,.2f} = ${_usd(expected):,.2f} (off by ${_usd(nav - expected):,.2f})"
        )


@dataclass(frozen=True)
class Discrepancy:
    """A symbol whose quantity differs between the local book and the broker."""

    symbol: str
    local_qty: float
    broker_qty: float

    @property
    def difference(self) -> float:
        """``broker_qty - local_qty`` (shares / coins)."""
        return self.broker_qty - self.local_qty


def reconcile(
    local: Mapping[str, float],
    broker: Sequence[BrokerPosition],
    tolerance: float = 1e-9,
) -> list[Discrepancy]:
    """Compare local quantities with the broker's positions.

    A symbol missing on one side counts as 0 there; the broker's rows for one symbol
    are summed.  Returns one :class:`Discrepancy` per symbol with
    ``|broker_qty - local_qty| > tolerance`` (shares / coins), by symbol; empty when
    the books agree.
    """
    remote: dict[str, float] = {}
    for pos in broker:
        remote[pos.symbol] = remote.get(pos.symbol, 0.0) + pos.qty
    out: list[Discrepancy] = []
    for symbol in sorted(set(local) | set(remote)):
        mine = float(local.get(symbol, 0.0))
        theirs = remote.get(symbol, 0.0)
        if abs(theirs - mine) > tolerance:
            out.append(Discrepancy(symbol, mine, theirs))
    return out


@dataclass(frozen=True)
class Alignment:
    """The book after :func:`align_to_broker`, and what differed."""

    book: Portfolio
    discrepancies: list[Discrepancy]
    cash: tuple[float, float] | None  # (book cash, broker cash) when they differed
    deferred: tuple[str, ...]  # symbols not compared: an order on them is still open


def align_to_broker(
    book: Portfolio,
    broker_positions: Sequence[BrokerPosition],
    broker_cash: float,
    open_symbols: Iterable[str] = (),
    cash_tolerance: float = 0.05,
) -> Alignment:
    """Resolve the book to the broker's positions and cash (the broker is the truth).

    Symbols with an order still open are not compared (``deferred``): a fill landing
    between reading the order and reading the positions would otherwise be booked twice,
    once here and once when the order's fill is read; for the same reason cash is only
    compared when no order is open.  A differing position takes the broker's quantity
    and average price (``cost_basis = round(qty * avg)``); a differing cash the broker's.
    Every adjustment goes to realized P&L (``Δcash + Σ Δcost_basis``, USD), so
    ``NAV = initial + realized + unrealized - fees`` still holds.

    Worked example: the book holds 10 SPY at a $4,000 basis and $6,000 cash; the broker
    reports 12 SPY at $401 and $5,198: SPY's basis becomes 12 x 401 = $4,812 (+812), cash
    $5,198 (-802), realized P&L += 812 - 802 = +$10.
    """
    skip = set(open_symbols)
    comparable = [p for p in broker_positions if p.symbol not in skip]
    local = {s: q for s, q in book.quantities().items() if s not in skip}
    found = reconcile(local, comparable)
    by_symbol = {p.symbol: p for p in comparable}
    positions = dict(book.positions)
    adjustment = 0
    for d in found:
        before = positions.get(d.symbol)
        if d.broker_qty:
            after = PositionState.from_avg_cost(
                d.symbol, d.broker_qty, by_symbol[d.symbol].avg_entry_price
            )
            if before is not None:
                after = replace(after, opened=before.opened)
            positions[d.symbol] = after
        else:
            positions.pop(d.symbol, None)
            after = None
        adjustment += _cents(after.cost_basis if after else 0.0) - _cents(
            before.cost_basis if before else 0.0
        )
    cash = _cents(book.cash)
    cash_diff: tuple[float, float] | None = None
    if not skip and abs(book.cash - broker_cash) > cash_tolerance:
        cash_diff = (book.cash, broker_cash)
        adjustment += _cents(broker_cash) - cash
        cash = _cents(broker_cash)
    aligned = replace(
        book,
        cash=_usd(cash),
        positions=positions,
        realized_pnl=_usd(_cents(book.realized_pnl) + adjustment),
    )
    return Alignment(aligned, found, cash_diff, tuple(sorted(skip)))


def book_to_dict(book: Portfolio) -> dict[str, Any]:
    """The book as JSON-able data (what the store keeps between runs)."""
    return {
        "cash": book.cash,
        "realized_pnl": book.realized_pnl,
        "fees": book.fees,
        "peak_nav": book.peak_nav,
        "positions": {
            s: {"qty": p.qty, "cost_basis": p.cost_basis}
            | ({"opened": p.opened.isoformat()} if p.opened else {})
            for s, p in book.positions.items()
        },
    }


def book_from_dict(data: Mapping[str, Any]) -> Portfolio:
    """Inverse of :func:`book_to_dict`."""
    return Portfolio(
        cash=float(data["cash"]),
        positions={
            s: PositionState(
                s,
                float(p["qty"]),
                float(p["cost_basis"]),
                date.fromisoformat(p["opened"]) if p.get("opened") else None,
            )
            for s, p in data["positions"].items()
        },
        realized_pnl=float(data["realized_pnl"]),
        fees=float(data["fees"]),
        peak_nav=float(data["peak_nav"]),
    )
