"""Hierarchical risk (SPEC stage 6): drawdown ladder, stops, correlation, kill switch, re-entry.

Pure functions over dataclasses and DataFrames: no Prefect, no database.  The
caller loads the persisted :class:`RiskState`, calls :func:`assess_risk` once per
``as_of`` and persists ``decision.state`` and ``decision.decisions``.

Modules
-------
:mod:`~tiller.risk.engine`       :func:`assess_risk`, :func:`risk_status`, inputs and decision
:mod:`~tiller.risk.model`        :class:`RiskState`, :class:`PositionInfo`, :class:`RiskEvent`
:mod:`~tiller.risk.ladder`       drawdown -> level, exposure scale, actions
:mod:`~tiller.risk.stops`        per-asset stops from entry (12% halve, 18% exit)
:mod:`~tiller.risk.correlation`  60-day correlation monitor (pair caps, L1/L2 floors)
:mod:`~tiller.risk.killswitch`   manual and automatic kill switch
:mod:`~tiller.risk.reentry`      reset after L4, low-volatility wait, weekly ramp
"""

from tiller.risk.engine import RiskDecision, RiskInputs, assess_risk, risk_status
from tiller.risk.killswitch import set_kill_switch
from tiller.risk.model import PositionInfo, RiskEvent, RiskState
from tiller.risk.reentry import reset_after_confirmation

__all__ = [
    "PositionInfo",
    "RiskDecision",
    "RiskEvent",
    "RiskInputs",
    "RiskState",
    "assess_risk",
    "reset_after_confirmation",
    "risk_status",
    "set_kill_switch",
]
