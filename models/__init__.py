"""SQLModel tables: the store's schema, mapped to domain types at the store boundary."""

from models.alerts import AlertLog
from models.backtest import BacktestDay, BacktestEvent, BacktestRun, BacktestTrade, StressResult
from models.execution import (
    AuditEvent,
    BookState,
    FillRecord,
    NavSnapshotRecord,
    OrderRecord,
    OrderRejection,
    PositionSnapshot,
    Reconciliation,
)
from models.reporting import ReportRecord
from models.research import SweepPoint, SweepRun
from models.simbroker import SimAccount, SimOrder, SimPosition
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
    QuarantinedBar,
    StageCheckpoint,
    metadata,
)

__all__ = [
    "AlertLog",
    "AuditEvent",
    "BacktestDay",
    "BacktestEvent",
    "BacktestRun",
    "BacktestTrade",
    "Bar",
    "BookState",
    "CrossSourceCheck",
    "DataQualityFinding",
    "DataQualityReport",
    "FactorGap",
    "FactorValue",
    "FillRecord",
    "FlowRun",
    "IngestLog",
    "MacroObservation",
    "NavSnapshotRecord",
    "OptimizationRecord",
    "OrderRecord",
    "OrderRejection",
    "PositionSnapshot",
    "QuarantinedBar",
    "Reconciliation",
    "RegimeRecord",
    "ReportRecord",
    "RiskDecisionRecord",
    "RiskEvent",
    "RiskStateRecord",
    "SignalRecord",
    "SimAccount",
    "SimOrder",
    "SimPosition",
    "StageCheckpoint",
    "StressResult",
    "SweepPoint",
    "SweepRun",
    "TargetWeight",
    "metadata",
]
