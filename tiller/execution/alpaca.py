"""Alpaca *paper* trading as a :class:`~tiller.execution.broker.Broker` via alpaca-py.

Safety first: the broker refuses, before any network call, a base URL that is
not Alpaca's paper host ``https://paper-api.alpaca.markets`` (a loopback URL,
``127.0.0.1``/``localhost``, is allowed for the local fakes) and blank keys.
The live endpoint ``api.alpaca.markets`` is never used.

What Alpaca does, and how it maps onto the broker interface:

* Orders are market orders only; crypto pairs go out with ``time_in_force=gtc``
  (Alpaca rejects ``day`` for crypto), stocks/ETFs with the request's time in
  force (``day`` by default).  A ``day`` market order sent while the market is
  closed is *accepted* and queued for the next open (no error), so
  :meth:`AlpacaPaperBroker.submit` returns it with status ``accepted``; the
  fill is observed later through :meth:`~AlpacaPaperBroker.get_order`.
* Symbols: Tiller's ``BTC-USD`` is ``BTC/USD`` in orders and ``BTCUSD`` in
  positions; ``BRK-B`` is ``BRK.B``.  Both are mapped back to Tiller's form.
* Quantities and prices arrive as JSON strings (``"10"``, ``"451.23"``) and are
  converted to floats.
* Errors become :class:`~tiller.execution.broker.BrokerError`:

  ============================================  ==============================
  Alpaca answer                                 kind
  ============================================  ==============================
  401, 403 without code 40310000                ``AUTH``
  403 40310000 "insufficient buying power",     ``INSUFFICIENT_BUYING_POWER``
  "insufficient balance for USD" (crypto)
  403 40310000 anything else (qty not           ``REJECTED``
  available, wash trade...)
  422 40010001 "client_order_id must be         ``DUPLICATE``
  unique"
  422 'asset "X" not found' / "is not           ``UNKNOWN_SYMBOL``
  tradable" / "not active"
  404                                           ``NOT_FOUND``
  other 400/422                                 ``REJECTED``
  429                                           ``RATE_LIMIT``
  5xx                                           ``SERVER``
  no answer within ``timeout``                  ``TIMEOUT``
  connection refused/reset, DNS                 ``NETWORK``
  ============================================  ==============================

  Code 40010001 is not specific to duplicates (Alpaca also uses it for
  "qty must be > 0"), so the message decides.  Keys never appear in messages.

SDK behaviour this module relies on or works around (alpaca-py 0.44.0):

* ``RESTClient`` sends requests without a timeout; the client's session is
  swapped for one that applies ``timeout``.
* ``RESTClient`` retries only 429/504, ``DEFAULT_RETRY_ATTEMPTS = 3`` times
  with 3 s sleeps, and a ``retry_attempts=0`` constructor argument silently
  means "default".  Its retry is switched off (``_retry = 0``): this adapter
  makes one attempt per call and maps the error; the one retry layer is
  :class:`~tiller.execution.retry.RetryingBroker` (bounded, with backoff), which
  also reads back an order whose retried submission Alpaca refuses as a duplicate.
* ``get_order_by_id`` raises ``ValueError`` for an id that is not a UUID
  before any request; that is reported as ``NOT_FOUND``.
* Every HTTP error surfaces as ``APIError`` whose text is the raw body
  (``APIError.code``/``message`` raise on a non-JSON body), so the body is
  decoded defensively.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar
from uuid import UUID

import requests

from tiller.execution.broker import (
    BrokerAccount,
    BrokerError,
    BrokerErrorKind,
    BrokerOrder,
    BrokerPosition,
    OrderRequest,
    OrderSide,
    OrderStatus,
)

PAPER_URL = "https://paper-api.alpaca.markets"
PAPER_HOST = "paper-api.alpaca.markets"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

#: Quote currencies that make a Tiller ``BASE-QUOTE`` symbol an Alpaca crypto pair.
CRYPTO_QUOTES = ("USDT", "USDC", "USD")  # longest first: BTCUSDT is BTC/USDT
_CRYPTO_RE = re.compile(r"^([A-Z0-9]{2,10})-(USDT|USDC|USD)$")

CODE_DUPLICATE_OR_INVALID = 40010001
CODE_FORBIDDEN = 40310000

_T = TypeVar("_T")

# Alpaca's order statuses beyond the ones Tiller names, mapped onto Tiller's.
_OPEN_STATUSES = {
    "pending_cancel",
    "pending_replace",
    "pending_review",
    "accepted_for_bidding",
    "stopped",
    "suspended",
    "calculated",
    "held",
    "done_for_day",
}


class _TimeoutSession(requests.Session):
    """A ``requests.Session`` applying a default timeout (alpaca-py passes none)."""

    def __init__(self, timeout: float):
        super().__init__()
        self.default_timeout = timeout

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send the request with ``timeout`` defaulted to :attr:`default_timeout` seconds."""
        if len(args) < 7 and kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


_URL_RE = re.compile(
    r"(?P<scheme>[a-z]+)://(?P<host>\[[0-9a-f:]+\]|[a-z0-9.\-]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/v2)?/?"
)


def check_paper_url(url: str) -> str:
    """The one base URL the SDK will use, if ``url`` is Alpaca paper or a loopback test server.

    The URL is parsed once, by a strict pattern over a small alphabet, and rebuilt from
    its parts; the rebuilt string is what :class:`AlpacaPaperBroker` hands to alpaca-py,
    so what this function approves is exactly what the HTTP stack connects to.

    Accepted (case-insensitive scheme and host, an optional trailing ``/`` or ``/v2``)::

        https://paper-api.alpaca.markets           -> https://paper-api.alpaca.markets
        http(s)://127.0.0.1[:port]                 -> the same, for the local fakes
        http(s)://localhost[:port], http(s)://[::1][:port]

    Refused, before any network call: the live host ``api.alpaca.markets`` and any other
    host or IP, user info (``user@``), backslashes, whitespace or control characters,
    percent-escapes, non-ASCII, query strings and fragments, other paths, other schemes,
    a port on the paper host, ports outside 1..65535, and trailing dots
    (``localhost.``).

    Raises
    ------
    BrokerError
        ``CONFIG``, naming the problem and ``TILLER_ALPACA_URL``.
    """
    raw = url if isinstance(url, str) else ""
    fix = "fix TILLER_ALPACA_URL / execution.alpaca_url"
    allowed = f"only the paper endpoint {PAPER_URL} (or a 127.0.0.1/localhost test server)"

    def refuse(why: str) -> BrokerError:
        return BrokerError(
            AlpacaPaperBroker.name,
            BrokerErrorKind.CONFIG,
            f"refusing Alpaca base URL {raw!r}: {why}; {allowed} is allowed; {fix}",
        )

    if not raw:
        raise refuse("it is empty")
    if not raw.isascii() or any(c.isspace() or not c.isprintable() for c in raw):
        raise refuse("it contains whitespace, control or non-ASCII characters")
    for bad, what in (("\\", "a backslash"), ("@", "user info ('@')"), ("%", "a %-escape")):
        if bad in raw:
            raise refuse(f"it contains {what}")
    match = _URL_RE.fullmatch(raw.lower())
    if match is None:
        raise refuse("it is not scheme://host[:port] with an optional /v2 path")
    scheme, host, port = match.group("scheme"), match.group("host"), match.group("port")
    if host == "api.alpaca.markets" or host.endswith(".api.alpaca.markets"):
        raise BrokerError(
            AlpacaPaperBroker.name,
            BrokerErrorKind.CONFIG,
            f"refusing the live trading endpoint {scheme}://{host}: Tiller only trades "
            f"Alpaca paper ({PAPER_URL}); {fix}",
        )
    if scheme not in ("http", "https"):
        raise refuse(f"scheme {scheme!r} is not http or https")
    if port is not None and not 1 <= int(port) <= 65535:
        raise refuse(f"port {port} is not in 1..65535")
    if host == PAPER_HOST:
        if scheme != "https" or port is not None:
            raise refuse("the paper endpoint is https on its default port only")
        return PAPER_URL
    if host in LOOPBACK_HOSTS or host == "[::1]":
        return f"{scheme}://{host}" + (f":{int(port)}" if port is not None else "")
    raise refuse(f"host {host!r} is neither {PAPER_HOST} nor a loopback test server")


def to_alpaca_symbol(symbol: str) -> str:
    """Alpaca's symbol for an order: ``BTC-USD`` -> ``BTC/USD``, ``BRK-B`` -> ``BRK.B``."""
    match = _CRYPTO_RE.match(symbol)
    if match:
        return f"{match.group(1)}/{match.group(2)}"
    return symbol.replace("-", ".")


def is_crypto(symbol: str) -> bool:
    """Whether a Tiller symbol is a crypto pair (``BTC-USD``)."""
    return _CRYPTO_RE.match(symbol) is not None


def from_alpaca_symbol(symbol: str, crypto: bool | None = None) -> str:
    """Tiller's symbol for an Alpaca one: ``BTC/USD`` or ``BTCUSD`` (crypto) -> ``BTC-USD``.

    ``crypto`` says whether the asset class is crypto (positions carry
    ``asset_class``); without it only the slash form is recognised as crypto.
    """
    if "/" in symbol:
        base, _, quote = symbol.partition("/")
        return f"{base}-{quote}"
    if crypto:
        for quote in CRYPTO_QUOTES:
            if symbol.endswith(quote) and len(symbol) > len(quote):
                return f"{symbol[: -len(quote)]}-{quote}"
        return symbol
    return symbol.replace(".", "-")


def _number(value: Any) -> float | None:
    """A float from Alpaca's string/number field, None when absent or blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return float(value)


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


class AlpacaPaperBroker:
    """Alpaca paper trading through alpaca-py's ``TradingClient``.

    Parameters
    ----------
    api_key, secret_key:
        Alpaca paper API key id and secret (headers ``APCA-API-KEY-ID`` /
        ``APCA-API-SECRET-KEY``; never echoed in errors or ``repr``).
    base_url:
        ``https://paper-api.alpaca.markets`` (default) or a loopback test
        server; anything else, notably the live ``https://api.alpaca.markets``,
        is refused with ``BrokerError(CONFIG)`` before any network call.
    timeout:
        Connect and read timeout per HTTP request, in seconds.

    One attempt per call: wrap it in :class:`~tiller.execution.retry.RetryingBroker` for
    bounded retries of transient failures.
    """

    name = "alpaca"
    fills_on_own_clock = True

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        base_url: str = PAPER_URL,
        timeout: float = 10.0,
    ):
        missing = [
            env
            for env, value in (("ALPACA_API_KEY", api_key), ("ALPACA_SECRET_KEY", secret_key))
            if not (value or "").strip()
        ]
        if missing:
            raise BrokerError(
                self.name,
                BrokerErrorKind.CONFIG,
                f"Alpaca paper trading needs an API key id and secret; missing: "
                f"{', '.join(missing)} (set them in the environment)",
            )
        self.base_url = check_paper_url(base_url)
        self.timeout = float(timeout)
        self._secrets = (api_key.strip(), secret_key.strip())

        from alpaca.trading.client import TradingClient

        self._client = TradingClient(
            self._secrets[0], self._secrets[1], paper=True, url_override=self.base_url
        )
        self._client._session = _TimeoutSession(self.timeout)
        self._client._retry = 0  # RetryingBroker retries; the SDK would sleep 3 s per 429/504

    @classmethod
    def check_settings(cls, settings: Any) -> tuple[str, str, str]:
        """The keys and the approved base URL from settings, checked without any network
        call or SDK import (the run checks this before its first stage).

        Raises
        ------
        BrokerError
            ``CONFIG``: a key is missing, or the URL is not Alpaca paper or loopback.
        """
        key = _secret(getattr(settings, "alpaca_api_key", None))
        secret = _secret(getattr(settings, "alpaca_secret_key", None))
        pairs = (("ALPACA_API_KEY", key), ("ALPACA_SECRET_KEY", secret))
        missing = [env for env, value in pairs if not value]
        if missing:
            raise BrokerError(
                cls.name,
                BrokerErrorKind.CONFIG,
                f"broker 'alpaca' needs {' and '.join(missing)} in the environment "
                "(paper-trading keys from https://app.alpaca.markets/paper/dashboard)",
            )
        execution = getattr(settings, "execution", None)
        url = str(
            getattr(settings, "alpaca_url", None)
            or getattr(execution, "alpaca_url", None)
            or PAPER_URL
        )
        return key, secret, check_paper_url(url)

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        *,
        timeout: float | None = None,
    ) -> AlpacaPaperBroker:
        """Build from :class:`~tiller.settings.Settings`.

        Keys come from ``ALPACA_API_KEY``/``ALPACA_SECRET_KEY`` (or
        ``APCA_API_KEY_ID``/``APCA_API_SECRET_KEY``), the URL from
        ``TILLER_ALPACA_URL`` or ``execution.alpaca_url``, the timeout from
        ``execution.broker_timeout_seconds`` unless given.
        """
        key, secret, url = cls.check_settings(settings)
        execution = getattr(settings, "execution", None)
        seconds = (
            timeout if timeout is not None else getattr(execution, "broker_timeout_seconds", 10.0)
        )
        return cls(key, secret, base_url=url, timeout=seconds)

    def advance(self, as_of: date) -> None:
        """Nothing to do: Alpaca fills orders on its own clock."""

    def __repr__(self) -> str:
        return f"AlpacaPaperBroker(base_url={self.base_url!r})"

    # ------------------------------------------------------------------ account

    def account(self) -> BrokerAccount:
        """Cash, buying power and equity in USD."""
        acct = self._call("read the account", self._client.get_account)

        def field(name: str) -> float:
            value = _number(getattr(acct, name, None))
            if value is None:
                raise self._bad_payload(f"account without {name}")
            return value

        return BrokerAccount(
            cash=field("cash"), buying_power=field("buying_power"), equity=field("equity")
        )

    def positions(self) -> list[BrokerPosition]:
        """Open positions with Tiller symbols (``BTCUSD`` -> ``BTC-USD``); shorts are negative."""
        rows: Any = self._call("list positions", self._client.get_all_positions)
        out: list[BrokerPosition] = []
        for row in rows:
            crypto = _enum_value(getattr(row, "asset_class", "")) == "crypto"
            qty = _number(row.qty) or 0.0
            if _enum_value(getattr(row, "side", "")) == "short" and qty > 0:
                qty = -qty
            out.append(
                BrokerPosition(
                    symbol=from_alpaca_symbol(row.symbol, crypto),
                    qty=qty,
                    avg_entry_price=_number(row.avg_entry_price) or 0.0,
                )
            )
        return out

    # ------------------------------------------------------------------- orders

    def submit(self, order: OrderRequest) -> BrokerOrder:
        """Send a market order; returns the *accepted* order (never a fill).

        Raises
        ------
        BrokerError
            ``DUPLICATE`` when Alpaca already has ``client_order_id`` (look it up
            with :meth:`get_order_by_client_id`), ``INSUFFICIENT_BUYING_POWER``,
            ``UNKNOWN_SYMBOL``, ``REJECTED``, or a transient kind after the retries.
        """
        from alpaca.trading.enums import OrderSide as SdkSide
        from alpaca.trading.enums import TimeInForce
        from alpaca.trading.requests import MarketOrderRequest

        if not order.qty > 0:
            raise BrokerError(
                self.name,
                BrokerErrorKind.REJECTED,
                f"order {order.client_order_id}: quantity must be positive (got {order.qty})",
            )
        crypto = is_crypto(order.symbol)
        tif = "gtc" if crypto else (order.time_in_force or "day").lower()
        try:
            request = MarketOrderRequest(
                symbol=to_alpaca_symbol(order.symbol),
                qty=round(float(order.qty), 9),
                side=SdkSide(order.side.value),
                time_in_force=TimeInForce(tif),
                client_order_id=order.client_order_id,
            )
        except ValueError as exc:
            raise BrokerError(
                self.name,
                BrokerErrorKind.REJECTED,
                f"order {order.client_order_id}: invalid order for Alpaca: {exc}",
            ) from None

        return self._order(
            self._call(
                f"submit order {order.client_order_id}", lambda: self._client.submit_order(request)
            )
        )

    def get_order(self, broker_id: str) -> BrokerOrder:
        """The order Alpaca knows as ``broker_id`` (``NOT_FOUND`` if none)."""
        self._require_uuid(broker_id)
        return self._order(
            self._call(f"read order {broker_id}", lambda: self._client.get_order_by_id(broker_id))
        )

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client order id, or None if Alpaca never saw it (HTTP 404)."""
        try:
            raw = self._call(
                f"read order {client_order_id}",
                lambda: self._client.get_order_by_client_id(client_order_id),
            )
        except BrokerError as exc:
            if exc.kind is BrokerErrorKind.NOT_FOUND:
                return None
            raise
        return self._order(raw)

    def open_orders(self) -> list[BrokerOrder]:
        """Orders not yet filled, canceled, expired or rejected (up to Alpaca's 500)."""
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        query = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500)
        rows: Any = self._call("list open orders", lambda: self._client.get_orders(query))
        return [self._order(row) for row in rows]

    def cancel_order(self, broker_id: str) -> None:
        """Ask Alpaca to cancel ``broker_id``; the outcome is read back with :meth:`get_order`.

        Canceling an order that is already canceled or expired is a no-op; one
        that already filled raises ``REJECTED`` (read it back: it filled).
        """
        self._require_uuid(broker_id)
        try:
            self._call(
                f"cancel order {broker_id}", lambda: self._client.cancel_order_by_id(broker_id)
            )
        except BrokerError as exc:
            if exc.kind is BrokerErrorKind.REJECTED and re.search(
                r'already in "?(canceled|expired)"? state', exc.detail
            ):
                return
            raise

    # ------------------------------------------------------------------ helpers

    def _require_uuid(self, broker_id: str) -> None:
        """Alpaca order ids are UUIDs (the SDK raises ValueError before any request)."""
        try:
            UUID(str(broker_id))
        except ValueError:
            raise BrokerError(
                self.name, BrokerErrorKind.NOT_FOUND, f"no Alpaca order {broker_id!r} (not a UUID)"
            ) from None

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` once and map any failure to a :class:`BrokerError`."""
        try:
            return fn()
        except Exception as exc:
            raise self._error(what, exc) from None

    def _order(self, raw: Any) -> BrokerOrder:
        """Convert an SDK ``Order`` into a :class:`BrokerOrder` with Tiller's symbol."""
        try:
            status_text = _enum_value(raw.status)
            filled_qty = _number(raw.filled_qty) or 0.0
            if status_text in _OPEN_STATUSES:
                status = OrderStatus.PARTIALLY_FILLED if filled_qty > 0 else OrderStatus.NEW
            elif status_text == "replaced":
                status = OrderStatus.CANCELED
            else:
                status = OrderStatus(status_text)
            crypto = _enum_value(getattr(raw, "asset_class", "")) == "crypto"
            symbol = from_alpaca_symbol(raw.symbol or "", crypto)
            return BrokerOrder(
                broker_id=str(raw.id),
                client_order_id=raw.client_order_id,
                symbol=symbol,
                side=OrderSide(_enum_value(raw.side)),
                qty=_number(raw.qty) or 0.0,
                filled_qty=filled_qty,
                filled_avg_price=_number(raw.filled_avg_price),
                status=status,
                submitted_at=raw.submitted_at,
                filled_at=raw.filled_at,
                commission=0.0,
                reject_reason=(
                    f"Alpaca rejected the order (status {status_text})"
                    if status is OrderStatus.REJECTED
                    else None
                ),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise self._bad_payload(
                f"unexpected order payload ({type(exc).__name__}: {exc})"
            ) from None

    def _bad_payload(self, text: str) -> BrokerError:
        return BrokerError(
            self.name, BrokerErrorKind.SERVER, f"malformed Alpaca answer: {self._clean(text)}"
        )

    def _clean(self, text: str) -> str:
        """``text`` with the key id and secret masked, shortened to 300 characters."""
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text[:300]

    def _error(self, what: str, exc: Exception) -> BrokerError:
        """Map an SDK/transport exception to a :class:`BrokerError` without secrets."""
        from alpaca.common.exceptions import APIError

        if isinstance(exc, BrokerError):
            return exc
        if isinstance(exc, APIError):
            status = exc.status_code
            code, message = _api_error_body(exc)
            detail = self._clean(message)
            kind = _kind_for(status, code, detail)
            shown = f"HTTP {status}" + (f" code {code}" if code is not None else "")
            return BrokerError(self.name, kind, f"{what}: {shown}: {detail}")
        if isinstance(exc, requests.Timeout):
            return BrokerError(
                self.name,
                BrokerErrorKind.TIMEOUT,
                f"{what}: no answer from Alpaca within {self.timeout:g} s",
            )
        if isinstance(exc, requests.ConnectionError):
            return BrokerError(
                self.name,
                BrokerErrorKind.NETWORK,
                f"{what}: cannot reach Alpaca at {self.base_url} ({type(exc).__name__})",
            )
        if isinstance(exc, (ValueError, KeyError, TypeError)):
            # pydantic's ValidationError and requests' JSONDecodeError are ValueErrors.
            return self._bad_payload(f"{what}: {type(exc).__name__}: {exc}")
        if isinstance(exc, requests.RequestException):
            return BrokerError(
                self.name,
                BrokerErrorKind.NETWORK,
                f"{what}: HTTP transport error ({type(exc).__name__}): {self._clean(str(exc))}",
            )
        return BrokerError(
            self.name,
            BrokerErrorKind.SERVER,
            f"{what}: unexpected {type(exc).__name__}: {self._clean(str(exc))}",
        )


def _secret(value: Any) -> str:
    """The plain text of a ``SecretStr``/str setting, '' when unset."""
    if value is None:
        return ""
    getter = getattr(value, "get_secret_value", None)
    text = getter() if callable(getter) else str(value)
    return text.strip()


def _api_error_body(exc: Any) -> tuple[int | None, str]:
    """``(code, message)`` of an Alpaca error body; the raw text when it is not JSON."""
    body = str(exc)
    try:
        decoded = json.loads(body)
    except ValueError:
        return None, body.strip() or "(empty body)"
    if not isinstance(decoded, dict):
        return None, body
    code = decoded.get("code")
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    return code, str(decoded.get("message", body))


def _kind_for(status: int | None, code: int | None, message: str) -> BrokerErrorKind:
    """The :class:`BrokerErrorKind` of an Alpaca HTTP error."""
    text = message.lower()
    if status == 429:
        return BrokerErrorKind.RATE_LIMIT
    if status is not None and status >= 500:
        return BrokerErrorKind.SERVER
    if status == 401:
        return BrokerErrorKind.AUTH
    if status == 403:
        if code != CODE_FORBIDDEN:
            return BrokerErrorKind.AUTH
        if "insufficient buying power" in text or re.search(
            r"insufficient balance for (usd|usdt|usdc)\b", text
        ):
            return BrokerErrorKind.INSUFFICIENT_BUYING_POWER
        return BrokerErrorKind.REJECTED
    if status == 404:
        return BrokerErrorKind.NOT_FOUND
    if re.search(r"client[ _]?order[ _]?id must be unique", text):
        return BrokerErrorKind.DUPLICATE
    if re.search(
        r"asset .*(not found|not tradable|is not active|inactive)|could not find|"
        r"asset not found",
        text,
    ):
        return BrokerErrorKind.UNKNOWN_SYMBOL
    if "market is closed" in text or "market hours" in text:
        return BrokerErrorKind.MARKET_CLOSED
    return BrokerErrorKind.REJECTED
