"""The audit trail: every signal, risk check, order, fill, rejection and reconciliation as
an event, in the database (same transaction as the stage's output) and in a daily JSONL
file under ``TILLER_HOME/audit/`` (appended once the transaction has committed)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from tiller.store.repo import AUDIT_EVENTS, Store, utcnow


@dataclass
class AuditLog:
    """Events of one stage run: written to the table with :meth:`write`, to the file with
    :meth:`flush` after commit."""

    as_of: date
    run_id: str | None
    folder: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        kind: str,
        payload: dict[str, Any],
        correlation_id: str | None = None,
        symbol: str | None = None,
    ) -> None:
        self.events.append(
            {
                "as_of": self.as_of,
                "kind": kind,
                "correlation_id": correlation_id,
                "symbol": symbol,
                "payload": json.dumps(payload, sort_keys=True, default=str),
                "created_at": utcnow(),
                "run_id": self.run_id,
            }
        )

    def write(self, store: Store, tx: Connection) -> None:
        store.insert(tx, AUDIT_EVENTS, self.events)

    def flush(self) -> Path:
        """Append the events to ``audit/<as_of>.jsonl``; returns the file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.as_of.isoformat()}.jsonl"
        with path.open("a", encoding="utf-8") as handle:
            for event in self.events:
                line = {**event, "payload": json.loads(event["payload"])}
                handle.write(json.dumps(line, sort_keys=True, default=str) + "\n")
        self.events = []
        return path
