"""Alerts (SPEC "Alerts"): levels routed to apprise channels, with cooldowns.

A :class:`Notifier` sends an :class:`Alert` to ``settings.notify_urls`` (every
level) plus ``settings.alerts.channels[level]`` through apprise, one channel at
a time, and records the outcome in ``alert_log`` in its own transaction:

* ``no_channel``          -- no URL is configured for the level;
* ``suppressed_cooldown`` -- an alert with the same key (trigger + subject) was
  *sent* within ``alerts.cooldown_seconds[level]`` (read from ``alert_log``, so a
  restart does not reset the cooldown; failed sends do not start a cooldown);
* ``sent``                -- every channel accepted the notification;
* ``failed``              -- at least one channel failed (``error`` says which
  and why, by position and service name).

:meth:`Notifier.send` never raises.  Channel URLs may hold tokens and passwords:
they are never logged nor stored, errors are scrubbed of them, and apprise's own
log records are scrubbed too (a filter on the ``apprise`` logger).

Each channel gets the body in the format it renders: an alert may carry an ``html`` body
(email: apprise sends it with a plain-text part made from it) and a ``markdown`` body
(Slack and other chat services); every other channel, and an alert without them, gets the
plain ``body`` (sent as text: email shows its line breaks).  :func:`check_channels` sends a
test message to every configured channel and says, per channel, whether it arrived
(``tiller notify test``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiller.channels import channel_label, instantiate
from tiller.channels import url_secrets as url_secrets  # re-exported
from tiller.store import alerts as alert_store
from tiller.store.alerts import ALERT_LOG as ALERT_LOG  # re-exported (tests read it)

if TYPE_CHECKING:
    from tiller.settings import Settings
    from tiller.store.repo import Store

log = logging.getLogger(__name__)

SENT = "sent"
SUPPRESSED = "suppressed_cooldown"
FAILED = "failed"
NO_CHANNEL = "no_channel"

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_MAX_ERROR = 2000


class AlertLevel(StrEnum):
    """Severity, mapped to channels and cooldowns in ``config/alerts.yaml``."""

    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    EMERGENCY = "EMERGENCY"


@dataclass(frozen=True)
class Alert:
    """One notification; ``key`` (trigger + subject) is what the cooldown compares."""

    level: AlertLevel
    trigger: str
    subject: str
    title: str
    body: str
    attachment: Path | None = None
    html: str | None = None
    """The body for channels that render HTML (email); ``body`` when None."""
    markdown: str | None = None
    """The body for channels that render markdown (Slack, ...); ``body`` when None."""

    @property
    def key(self) -> str:
        return f"{self.trigger}:{self.subject}"[:200]


@dataclass(frozen=True)
class AlertOutcome:
    """What :meth:`Notifier.send` did: ``status`` as recorded in ``alert_log``."""

    status: str
    key: str
    level: AlertLevel
    channels: int
    delivered: int = 0
    error: str | None = None
    log_id: int | None = None

    @property
    def sent(self) -> bool:
        return self.status == SENT


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------- secrets
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL and every known secret replaced by ``***``."""
    known = set(secrets)
    with _secrets_lock:
        known |= _secrets
    text = _URL.sub("<url>", text)
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class _ScrubFilter(logging.Filter):
    """Rewrite apprise log records so no channel URL or token reaches any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: drop its arguments rather than fail
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        return True


_APPRISE_FILTER = _ScrubFilter()
logging.getLogger("apprise").addFilter(_APPRISE_FILTER)


class _Collect(logging.Handler):
    """Collect apprise warnings and errors during one send (the error text of a channel)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# -------------------------------------------------------------------- notifier
class Notifier:
    """Send alerts through apprise with cooldowns; every outcome lands in ``alert_log``."""

    def __init__(
        self, settings: Settings, store: Store, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self._register(settings.notify_urls)
        for urls in settings.alerts.channels.values():
            self._register(urls)

    @staticmethod
    def _register(urls: Iterable[str]) -> None:
        with _secrets_lock:
            for url in urls:
                _secrets.update(url_secrets(url))

    def urls(self, level: AlertLevel) -> list[str]:
        """The channel URLs of ``level``: ``notify_urls`` then the level's own, deduplicated."""
        own = self.settings.alerts.channels.get(AlertLevel(level).value, [])
        return list(dict.fromkeys([*self.settings.notify_urls, *own]))

    def send(self, alert: Alert) -> AlertOutcome:
        """Send ``alert`` (or suppress it); never raises."""
        try:
            outcome = self._send(alert)
        except Exception as exc:  # last line of defence: alerts must not break a flow
            outcome = AlertOutcome(
                FAILED, alert.key, AlertLevel(alert.level), 0, error=self._error(exc)
            )
        outcome = self._record(alert, outcome)
        self._log(alert, outcome)
        return outcome

    # ---------------------------------------------------------------- internals
    def _send(self, alert: Alert) -> AlertOutcome:
        level = AlertLevel(alert.level)
        urls = self.urls(level)
        if not urls:
            return AlertOutcome(NO_CHANNEL, alert.key, level, 0)
        now = self._now()
        cooldown = float(self.settings.alerts.cooldown_seconds.get(level.value, 0))
        if cooldown > 0:
            last = self._last_sent(alert.key)
            if last is not None and now - last < timedelta(seconds=cooldown):
                return AlertOutcome(SUPPRESSED, alert.key, level, len(urls))
        errors: list[str] = []
        delivered = 0
        for position, url in enumerate(urls, start=1):
            problem = self._deliver(url, alert)
            if problem is None:
                delivered += 1
            else:
                errors.append(f"channel {position}/{len(urls)} {problem}")
        if not errors:
            return AlertOutcome(SENT, alert.key, level, len(urls), delivered)
        summary = f"{delivered} of {len(urls)} channel(s) delivered; " + "; ".join(errors)
        error = scrub(summary, url_secrets_all(urls))[:_MAX_ERROR]
        return AlertOutcome(FAILED, alert.key, level, len(urls), delivered, error)

    def _deliver(self, url: str, alert: Alert) -> str | None:
        """Send to one channel; ``None`` on success, else a description (may hold secrets:
        the caller scrubs it)."""
        return deliver(url, alert, self.settings.alerts.timeout_seconds)

    def _last_sent(self, key: str) -> datetime | None:
        return alert_store.last_alert_at(self.store, key, SENT)

    def _record(self, alert: Alert, outcome: AlertOutcome) -> AlertOutcome:
        values: dict[str, Any] = {
            "created_at": self._now(),
            "level": AlertLevel(alert.level).value,
            "trigger": alert.trigger[:40],
            "key": alert.key,
            "title": alert.title[:300],
            "body": alert.body,
            "status": outcome.status,
            "channels": outcome.channels,
            "error": outcome.error,
        }
        try:
            with self.store.transaction() as tx:
                log_id = alert_store.record_alert(self.store, tx, **values)
        except Exception as exc:
            log.error("could not record alert %s in alert_log: %s", alert.key, self._error(exc))
            return outcome
        return AlertOutcome(
            outcome.status,
            outcome.key,
            outcome.level,
            outcome.channels,
            outcome.delivered,
            outcome.error,
            log_id,
        )

    def _log(self, alert: Alert, outcome: AlertOutcome) -> None:
        if outcome.status == FAILED:
            log.warning(
                "alert %s [%s] failed on %d channel(s): %s",
                alert.key,
                outcome.level.value,
                outcome.channels - outcome.delivered,
                outcome.error,
            )
        elif outcome.status == NO_CHANNEL:
            log.info("alert %s [%s] not sent: no channel configured", alert.key, outcome.level)
        elif outcome.status == SUPPRESSED:
            log.info("alert %s [%s] suppressed by its cooldown", alert.key, outcome.level)
        else:
            log.info(
                "alert %s [%s] sent to %d channel(s)", alert.key, outcome.level, outcome.channels
            )

    def _error(self, exc: BaseException) -> str:
        urls = [*self.settings.notify_urls]
        for level_urls in self.settings.alerts.channels.values():
            urls.extend(level_urls)
        return scrub(f"{type(exc).__name__}: {exc}", url_secrets_all(urls))[:_MAX_ERROR]

    def _now(self) -> datetime:
        return _aware(self.clock())


def _body(plugin: Any, alert: Alert) -> tuple[str, str]:
    """The body and its apprise format for ``plugin``: HTML to a channel that renders HTML,
    markdown to one that renders markdown, else the plain text."""
    fmt = getattr(plugin, "notify_format", "text")
    fmt = str(getattr(fmt, "value", fmt))  # apprise's NotifyFormat enum or a plain string
    if fmt == "html" and alert.html:
        return alert.html, "html"
    if fmt == "markdown" and alert.markdown:
        return alert.markdown, "markdown"
    return alert.body, "text"


def deliver(url: str, alert: Alert, timeout: float) -> str | None:
    """Send ``alert`` to the one channel ``url``; ``None`` on success, else a description
    (it may quote secrets: callers scrub it)."""
    import apprise

    plugin, _ = instantiate(url)
    if plugin is None:
        return "(unknown service): not a valid apprise URL"
    name = str(getattr(plugin, "service_name", None) or type(plugin).__name__)
    plugin.socket_connect_timeout = timeout
    plugin.socket_read_timeout = timeout
    notifier = apprise.Apprise()
    notifier.add(plugin)
    attach: Any = None
    if alert.attachment is not None:
        if not Path(alert.attachment).is_file():
            return f"({name}): attachment {Path(alert.attachment).name} not found"
        attach = apprise.AppriseAttachment(str(alert.attachment))
    body, body_format = _body(plugin, alert)
    collect = _Collect()
    apprise_log = logging.getLogger("apprise")
    apprise_log.addHandler(collect)
    try:
        ok = notifier.notify(
            title=alert.title,
            body=body,
            body_format=body_format,
            notify_type=_NOTIFY_TYPE[AlertLevel(alert.level)],
            attach=attach,
        )
    except Exception as exc:
        return f"({name}): {type(exc).__name__}: {exc}"
    finally:
        apprise_log.removeHandler(collect)
    if ok:
        return None
    detail = " | ".join(dict.fromkeys(collect.messages)) or "rejected the notification"
    return f"({name}): {detail}"


@dataclass(frozen=True)
class ChannelCheck:
    """The outcome of a test message on one channel (``tiller notify test``).

    ``label`` is ``scheme://host[:port]`` (no user, password, path, query or token);
    ``levels`` the alert levels the channel receives; ``error`` is scrubbed."""

    position: int
    label: str
    service: str
    levels: tuple[str, ...]
    ok: bool
    error: str | None = None


def configured_channels(settings: Settings) -> list[tuple[str, tuple[str, ...]]]:
    """Every configured channel URL once, with the levels it receives: ``notify_urls``
    (every level) first, then ``alerts.channels`` in level order."""
    levels = [level.value for level in AlertLevel]
    served: dict[str, list[str]] = {url: list(levels) for url in settings.notify_urls}
    for level in levels:
        for url in settings.alerts.channels.get(level, []):  # type: ignore[call-overload]
            served.setdefault(url, [])
            if level not in served[url]:
                served[url].append(level)
    return [(url, tuple(sorted(lv, key=levels.index))) for url, lv in served.items()]


def check_channels(
    settings: Settings, clock: Callable[[], datetime] = utcnow, host: str | None = None
) -> list[ChannelCheck]:
    """Send one test message to every configured channel; the outcome of each, in order.

    No cooldown applies and nothing is recorded in ``alert_log``: a test is not an alert.
    """
    import socket

    channels = configured_channels(settings)
    urls = [url for url, _ in channels]
    secrets = url_secrets_all(urls)
    Notifier._register(urls)
    where = host or socket.gethostname()
    when = _aware(clock()).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = (
        f"A test message from `tiller notify test` on {where} at {when}.\n"
        "This channel receives Tiller's alerts. No action is needed."
    )
    checks = []
    for position, (url, levels) in enumerate(channels, start=1):
        alert = Alert(
            AlertLevel.INFO,
            "notify_test",
            "test",
            "Tiller test notification",
            text,
            html=(
                "<p><b>Tiller test notification</b></p>"
                f"<p>A test message from <code>tiller notify test</code> on {_escape(where)} "
                f"at {when}.<br>This channel receives Tiller's alerts. "
                "No action is needed.</p>"
            ),
            markdown=f"*Tiller test notification*\n{text}",
        )
        try:
            problem = deliver(url, alert, settings.alerts.timeout_seconds)
        except Exception as exc:  # a test reports every failure, it never raises
            problem = f"{type(exc).__name__}: {exc}"
        plugin, _ = instantiate(url)
        service = str(getattr(plugin, "service_name", None) or "unknown service")
        if problem is not None:
            problem = problem.removeprefix(f"({service}): ")
        checks.append(
            ChannelCheck(
                position,
                channel_label(url),
                service,
                levels,
                problem is None,
                None if problem is None else scrub(problem, secrets)[:_MAX_ERROR],
            )
        )
    return checks


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def url_secrets_all(urls: Iterable[str]) -> set[str]:
    secrets: set[str] = set()
    for url in urls:
        secrets |= url_secrets(url)
    return secrets


def _aware(value: datetime) -> datetime:
    """UTC-aware (SQLite hands back naive datetimes, stored in UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _notify_types() -> dict[AlertLevel, str]:
    return {
        AlertLevel.INFO: "info",
        AlertLevel.WARNING: "warning",
        AlertLevel.CRITICAL: "failure",
        AlertLevel.EMERGENCY: "failure",
    }


_NOTIFY_TYPE = _notify_types()


# ----------------------------------------------------------------- reporting
def recent_failures(store: Store, since: datetime | date) -> list[dict[str, Any]]:
    """Notifications that failed at or after ``since`` (oldest first), for the next report.

    A plain ``date`` means from its midnight UTC.  Each row: ``created_at`` (UTC), ``level``,
    ``trigger``, ``key``, ``title``, ``channels``, ``error`` (scrubbed of URLs and tokens).
    """
    if not isinstance(since, datetime):
        since = datetime(since.year, since.month, since.day, tzinfo=UTC)
    return alert_store.alerts_since(store, FAILED, since)


# ------------------------------------------------------------------- triggers
def _level_number(level: str | int) -> int:
    digits = re.sub(r"\D", "", str(level))
    return int(digits) if digits else 0


def risk_level_change(old: str | int, new: str | int, drawdown: float) -> Alert:
    """The risk level moved: WARNING when it rises (CRITICAL on reaching L4), INFO when it eases."""
    up = _level_number(new) > _level_number(old)
    if up and _level_number(new) >= 4:
        level = AlertLevel.CRITICAL
    else:
        level = AlertLevel.WARNING if up else AlertLevel.INFO
    direction = "raised" if up else "lowered"
    return Alert(
        level,
        "risk_level_change",
        f"{old}->{new}",
        f"Risk level {direction}: {old} -> {new}",
        f"The risk level moved from {old} to {new}; drawdown from peak {drawdown:.2%}.",
    )


def emergency_stop(reason: str) -> Alert:
    return Alert(
        AlertLevel.EMERGENCY,
        "emergency_stop",
        "portfolio",
        "EMERGENCY STOP: trading halted",
        f"Trading was halted by an emergency stop: {reason}",
    )


def kill_switch(on: bool, reason: str) -> Alert:
    state = "on" if on else "off"
    what = "engaged: no new orders" if on else "released: trading may resume"
    return Alert(
        AlertLevel.CRITICAL if on else AlertLevel.WARNING,
        "kill_switch",
        state,
        f"Kill switch {what}",
        f"The kill switch was turned {state}: {reason}",
    )


def data_quality_failure(message: str, subject: str = "pipeline") -> Alert:
    return Alert(
        AlertLevel.WARNING,
        "data_quality",
        subject,
        "Data quality check failed",
        message,
    )


def order_failures(count: int, why: str | None = None) -> Alert:
    """Orders failing at the broker (``why``: e.g. every order of the day failed)."""
    what = why or f"{count} orders failed in a row"
    return Alert(
        AlertLevel.CRITICAL,
        "order_failures",
        "orders",
        f"{what}: trading paused",
        f"{what}; trading is paused (kill switch on) until a person checks the broker and "
        "turns it off with `tiller risk kill-switch off`.",
    )


def source_down(source: str, error: str) -> Alert:
    return Alert(
        AlertLevel.WARNING,
        "source_down",
        source,
        f"Data source {source} is down",
        f"The data source {source} failed: {error}",
    )


def broker_down(error: str) -> Alert:
    return Alert(
        AlertLevel.CRITICAL,
        "broker_down",
        "broker",
        "Broker unreachable",
        f"The broker could not be reached: {error}",
    )


def flow_failed(flow: str, as_of: date | str, error: str) -> Alert:
    return Alert(
        AlertLevel.CRITICAL,
        "flow_failed",
        f"{flow}:{as_of}",
        f"Flow {flow} failed for {as_of}",
        f"The {flow} run for {as_of} failed: {error}",
    )


def summary(
    kind: str,
    as_of: date | str,
    text: str,
    attachment: Path | None = None,
    html: str | None = None,
    markdown: str | None = None,
) -> Alert:
    """The daily or weekly summary: ``text`` for plain channels, ``html`` for email,
    ``markdown`` for chat (:mod:`tiller.reporting.message` builds all three)."""
    return Alert(
        AlertLevel.INFO,
        "summary",
        f"{kind}:{as_of}",
        f"Tiller {kind} summary {as_of}",
        text,
        attachment,
        html,
        markdown,
    )
