"""SQLModel tables: the store's schema, mapped to domain types at the store boundary."""

from models.strategy import (
    FactorGap,
    FactorValue,
    OptimizationRecord,
    RegimeRecord,
    RiskDecisionRecord,
    RiskEvent,
    RiskStateRecord,
    SignalRecord,
    TargetWeight,
)
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
    "FactorGap",
    "FactorValue",
    "FlowRun",
    "IngestLog",
    "MacroObservation",
    "OptimizationRecord",
    "RegimeRecord",
    "RiskDecisionRecord",
    "RiskEvent",
    "RiskStateRecord",
    "SignalRecord",
    "StageCheckpoint",
    "TargetWeight",
    "metadata",
]
