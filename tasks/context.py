"""What every stage of one flow run needs: settings, the store, and the run's identity."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from tiller.settings import Settings
from tiller.store.repo import Store


@dataclass(frozen=True)
class RunContext:
    """One flow run for one ``as_of``."""

    settings: Settings
    store: Store
    flow: str
    as_of: date
    run_id: str
    force: bool = False
