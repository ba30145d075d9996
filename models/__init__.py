"""SQLModel tables: the store's schema. Mapped to domain types at the store boundary (tiller.store)."""

from models.tables import (
    Bar,
    CrossSourceCheck,
    DataQualityFinding,
    DataQualityReport,
    FlowRun,
    IngestLog,
    MacroObservation,
    StageCheckpoint,
    metadata,
)

__all__ = [
    "Bar",
    "CrossSourceCheck",
    "DataQualityFinding",
    "DataQualityReport",
    "FlowRun",
    "IngestLog",
    "MacroObservation",
    "StageCheckpoint",
    "metadata",
]
