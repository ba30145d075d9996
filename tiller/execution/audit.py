"""The audit trail: every signal, risk check, order, fill, rejection and reconciliation as
an event in the database, and the day's events as a JSONL file under
``TILLER_HOME/audit/<date>.jsonl``.

The table is the record: events land in the same transaction as what they describe (a
stage's output, or the write-ahead rows of orders about to be sent), so a crash keeps
both or neither.  The file is an export of the table (:func:`export_day`), rewritten
whole after the orders stage commits and at the end of every run, so a crash between a
commit and the export loses nothing: the next run of the day writes it again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from tiller.store import Tx
from tiller.store import audit as audit_store
from tiller.store.repo import Store, utcnow


@dataclass
class AuditLog:
    """Events of one stage run, queued until :meth:`write` puts them in a transaction."""

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

    def write(self, store: Store, tx: Tx) -> None:
        """Insert the queued events in ``tx`` and empty the queue."""
        audit_store.insert(tx, store, self.events)
        self.events = []

    def take(self) -> list[dict[str, Any]]:
        """The queued events (for a caller that writes them itself); empties the queue."""
        events, self.events = self.events, []
        return events

    def export(self, store: Store) -> Path:
        """Rewrite the day's JSONL file from the table (see :func:`export_day`)."""
        return export_day(store, self.as_of, self.folder)


def export_day(store: Store, as_of: date, folder: Path) -> Path:
    """Write ``folder/<as_of>.jsonl``: every audit event of ``as_of`` in the table, in the
    order recorded, one JSON object per line (replaced atomically: never half-written)."""
    events = audit_store.day(store, as_of)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{as_of.isoformat()}.jsonl"
    partial = path.with_suffix(".jsonl.partial")
    with partial.open("w", encoding="utf-8") as handle:
        for event in events.to_dict("records"):
            line = {**event, "payload": json.loads(event["payload"])}
            handle.write(json.dumps(line, sort_keys=True, default=str) + "\n")
    os.replace(partial, path)
    return path
