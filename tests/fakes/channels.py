"""Local receivers for the notification channels: Slack's webhook and a json:// endpoint
on one HTTP server, and an SMTP server (aiosmtpd) that keeps what it is sent."""

from __future__ import annotations

import socket
from email import message_from_bytes
from email.message import Message
from typing import Any

from tests.fakes.http import FakeHandler


class Receiver(FakeHandler):
    """Slack's webhook (answers ``ok``) and a json:// endpoint."""

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        if path.startswith("/services/"):
            return 200, {"Content-Type": "text/plain"}, b"ok"
        return 200, {}, {"ok": True}


class MailHandler:
    """An aiosmtpd handler keeping each message as it arrived (``raw``)."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []

    @property
    def messages(self) -> list[Message]:
        """The messages, parsed."""
        return [message_from_bytes(raw) for raw in self.raw]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(envelope.content)
        return "250 Message accepted for delivery"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
