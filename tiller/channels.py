"""Notification channel URLs (apprise): checked once at start-up, named without secrets.

* :func:`url_problem` -- why apprise cannot use a URL (its own parser decides), in words
  that quote none of the URL; ``None`` when it can.  The settings validator calls it for
  ``TILLER_NOTIFY_URLS`` and ``alerts.channels``, so a bad URL is a one-line
  configuration error before anything runs.
* :func:`channel_label` -- ``scheme://host[:port]`` of a URL for output meant for people
  (``tiller notify test``): never a user, password, path, query or token.  A host that
  apprise itself treats as private (``slack://TokenA/...``, ``tgram://bot-token/...``:
  the token sits where a host would be) is shown as ``***``.
* :func:`url_secrets` -- the parts of a URL that may be secret, for scrubbing text.

apprise is imported by the function that needs it, not with this module.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_PUBLIC_HOST = re.compile(r"[\d.:]+|localhost")

EXAMPLES = (
    "mailtos://user:password@smtp.example.com?to=ops@example.com, "
    "slack://TokenA/TokenB/TokenC or json://host:port/path"
)


def url_secrets(url: str) -> set[str]:
    """The parts of an apprise URL that may be secret: the URL itself, user, password,
    path segments and query values (the host and port stay readable)."""
    parts: set[str] = {url}
    try:
        split = urlsplit(url)
        parts.update(p for p in (split.username, split.password) if p)
        parts.update(unquote(s) for s in split.path.split("/") if s)
        parts.update(s for s in split.path.split("/") if s)
        parts.update(v for _, v in parse_qsl(split.query) if v)
        # tokens written where a host would be (slack://TokenA/TokenB/..., tgram://bot/...)
        if split.hostname and not _PUBLIC_HOST.fullmatch(split.hostname):
            parts.add(split.netloc.rsplit("@", 1)[-1].split(":")[0])
    except ValueError:
        pass
    # short fragments ("a", "v2", "json") would mangle ordinary words
    return {p for p in parts if len(p) >= 4}


def scrub_text(text: str, secrets: set[str]) -> str:
    """``text`` with every URL and each of ``secrets`` replaced (longest first)."""
    text = _URL.sub("<url>", text)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # a malformed record: its text is not needed
            self.messages.append(str(record.msg))


@contextmanager
def _quiet_apprise() -> Iterator[_Collect]:
    """Collect apprise's warnings instead of letting them reach the process's handlers
    (they quote parts of the URL)."""
    logger = logging.getLogger("apprise")
    collect = _Collect()
    propagate = logger.propagate
    logger.addHandler(collect)
    logger.propagate = False
    try:
        yield collect
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate


def instantiate(url: str) -> tuple[Any, list[str]]:
    """apprise's plugin for ``url`` (None when apprise cannot use it) and the warnings
    apprise gave while parsing it (unscrubbed)."""
    import apprise

    with _quiet_apprise() as collect:
        try:
            plugin = apprise.Apprise.instantiate(url)
        except Exception as exc:  # apprise reports by returning None; be safe anyway
            collect.messages.append(f"{type(exc).__name__}: {exc}")
            plugin = None
    return plugin, collect.messages


def url_problem(url: str) -> str | None:
    """Why apprise cannot send to ``url``, without quoting any of it; None when it can."""
    match = _SCHEME.match(url)
    if match is None:
        return f"not a URL (no scheme://); apprise URLs look like {EXAMPLES}"
    scheme = match.group(1).lower()
    plugin, warnings = instantiate(url)
    if plugin is not None:
        return None
    from apprise.manager_plugins import NotificationManager

    if scheme not in NotificationManager().schemas():
        return (
            f"apprise has no service for {scheme}:// (e.g. mailto/mailtos, slack, json, "
            "discord, tgram; see https://github.com/caronc/apprise/wiki)"
        )
    secrets = url_secrets(url)
    details = [
        scrub_text(w, secrets).strip()
        for w in dict.fromkeys(warnings)
        if not w.lower().startswith(("could not load", "unparseable", "unsupported"))
    ]
    detail = "; ".join(d for d in details if d)
    return f"apprise cannot use this {scheme}:// URL" + (f" ({detail})" if detail else "")


def urls_problem(urls: list[str]) -> str | None:
    """One sentence naming every unusable URL of ``urls`` by position; None if all work."""
    problems = [(i, url_problem(url)) for i, url in enumerate(urls, start=1)]
    bad = [(i, why) for i, why in problems if why is not None]
    if not bad:
        return None
    entries = "; ".join(f"entry {i} of {len(urls)}: {why}" for i, why in bad)
    return f"not a usable apprise URL: {entries}"


def _host_port(netloc: str) -> tuple[str, str | None]:
    host = netloc.rsplit("@", 1)[-1]
    if host.startswith("["):  # [IPv6]:port
        inside, _, rest = host[1:].partition("]")
        port = rest.lstrip(":")
        return f"[{inside}]", port if port.isdigit() else None
    name, _, port = host.partition(":")
    return name, port if port.isdigit() else None


def channel_label(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, the host as ``***`` when apprise treats it as
    private (a token written where a host would be) or when apprise cannot parse the URL
    and the host is not an address."""
    match = _SCHEME.match(url)
    if match is None:
        return "(not a URL)"
    scheme = match.group(1).lower()
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        netloc = ""
    host, port = _host_port(netloc)
    plugin, _ = instantiate(url)
    if not host:
        shown = ""
    elif plugin is None:
        shown = host if _PUBLIC_HOST.fullmatch(host) else "***"
    else:
        private = str(getattr(plugin, "host", "") or "")
        try:  # apprise's own privacy mode masks the parts it knows to be secret
            masked_host, _ = _host_port(urlsplit(plugin.url(privacy=True)).netloc)
        except Exception:
            masked_host = ""
        hidden = host.strip("[]") == private.strip("[]") and masked_host != host
        shown = "***" if hidden else host
    label = f"{scheme}://{shown}"
    if port and shown and shown != "***":
        label += f":{port}"
    return label


def service_name(url: str) -> str:
    """apprise's name of the service behind ``url`` (``Email``, ``Slack``, ``JSON``...)."""
    plugin, _ = instantiate(url)
    if plugin is None:
        return "unknown service"
    return str(getattr(plugin, "service_name", None) or type(plugin).__name__)
