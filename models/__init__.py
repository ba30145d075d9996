"""SQLModel tables: the store's schema, mapped to domain types at the store boundary."""

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
