"""The one typed settings object: ``config/*.yaml`` defaults plus environment variables.

Precedence (highest first): keyword arguments, environment variables
(``TILLER_<KEY>``, nested with ``__``; provider keys under their vendors'
usual names), the YAML files in the config folder (``TILLER_CONFIG_DIR``,
default ``<repo>/config``).  A bad value raises :class:`~tiller.errors.ConfigError`
naming the environment variable / config key and what is allowed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from tiller.channels import urls_problem
from tiller.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_KINDS = ("synthetic", "csv", "yfinance", "massive", "alpaca", "fred")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-^=]{0,14}$")


def config_dir() -> Path:
    """The folder holding the YAML defaults (``TILLER_CONFIG_DIR`` or ``<repo>/config``)."""
    return Path(os.environ.get("TILLER_CONFIG_DIR") or REPO_ROOT / "config")


def profile_path() -> Path | None:
    """The profile overlaid on the config folder (``TILLER_PROFILE``): a YAML path, or the
    name of a file in ``<config>/profiles/`` (``sixty-forty`` -> ``profiles/sixty-forty.yaml``)."""
    raw = os.environ.get("TILLER_PROFILE", "").strip()
    if not raw:
        return None
    path = Path(raw)
    if path.suffix not in (".yaml", ".yml"):
        path = config_dir() / "profiles" / f"{raw}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir() / "profiles").glob("*.yaml"))
        raise ConfigError(
            f"TILLER_PROFILE={raw!r}: no such profile file {path}; give a YAML path or one "
            f"of {', '.join(known) or '(none)'}"
        )
    return path


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay`` on top; nested mappings merge key by key, anything else
    (lists, scalars) is replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AssetSpec(_Frozen):
    """One row of the universe table."""

    name: str = ""
    asset_class: Literal[
        "equity", "sector", "bond", "commodity", "real_estate", "international", "crypto"
    ]
    max_weight: float = Field(gt=0, le=1)
    stop_loss: float = Field(gt=0, lt=1)
    calendar: Literal["XNYS", "24/7"] = "XNYS"
    cost_class: str = "etf"


class CostSpec(_Frozen):
    """Trading costs as fractions of traded notional."""

    commission: float = Field(ge=0, lt=0.1)
    slippage: float = Field(ge=0, lt=0.1)


class DataConfig(_Frozen):
    """Ingestion behaviour (``config/data.yaml``)."""

    failure_threshold: int = Field(3, ge=1)
    cooldown_seconds: float = Field(300, ge=0)
    cross_check: bool = True
    cross_check_sessions: int = Field(5, ge=1)
    timeout_seconds: float = Field(15, gt=0)
    csv_macro_dir: Path | None = None
    yfinance_url: str | None = None
    massive_url: str | None = None
    alpaca_data_url: str | None = None
    fred_url: str | None = None


Severity = Literal["blocking", "quarantine", "warning"]
CHECKS = (
    "not_null",
    "positive_prices",
    "ohlc_consistency",
    "jump",
    "missing_sessions",
    "stale",
    "cross_source",
)


class ValidationConfig(_Frozen):
    """Data-quality checks (``config/validation.yaml``)."""

    severity: dict[str, Severity]
    index_severity: dict[str, Severity] = Field(default_factory=dict)
    jump_threshold: float = Field(0.5, gt=0)
    missing_threshold: float = Field(0.05, ge=0, le=1)
    stale_tolerance_sessions: int = Field(0, ge=0)
    cross_source_threshold: float = Field(0.01, gt=0)
    context_sessions: int = Field(1, ge=0)
    # What a quarantined bar stops: the symbol (not traded that day) or the whole run.
    quarantine_scope: Literal["symbol", "run"] = "symbol"
    # A jump is accepted when a second source confirms it, or when the next
    # `jump_confirm_sessions` closes stay within `jump_persist_tolerance` of it.
    jump_confirm_sessions: int = Field(2, ge=1, le=10)
    jump_persist_tolerance: float = Field(0.10, gt=0, lt=1)

    @field_validator("severity", "index_severity")
    @classmethod
    def _known_checks(cls, value: dict[str, Severity]) -> dict[str, Severity]:
        unknown = set(value) - set(CHECKS)
        if unknown:
            raise ValueError(f"unknown check(s) {sorted(unknown)}; known: {', '.join(CHECKS)}")
        return value

    @model_validator(mode="after")
    def _every_check_has_a_severity(self) -> ValidationConfig:
        missing = set(CHECKS) - set(self.severity)
        if missing:
            raise ValueError(f"validation.severity has no entry for {sorted(missing)}")
        return self

    def severity_of(self, check: str, is_index: bool) -> Severity:
        """Severity of ``check`` for a tradable series or (relaxed) for an index."""
        if is_index and check in self.index_severity:
            return self.index_severity[check]
        return self.severity[check]


class FactorConfig(_Frozen):
    """Factor windows and annualisation (periods per year per calendar).

    Windows are counted in sessions of ``window_calendar`` (XNYS); an asset on another
    calendar uses the same span of time, ``round(n * its periods per year / the window
    calendar's)`` of its own bars (a 252-session window is 365 days of a 24/7 asset).
    """

    momentum_windows: list[int] = Field(default_factory=lambda: [60, 120])
    volatility_windows: list[int] = Field(default_factory=lambda: [20, 60])
    sma_windows: list[int] = Field(default_factory=lambda: [20, 50, 200])
    rsi_window: int = Field(14, ge=2)
    atr_window: int = Field(14, ge=2)
    momentum_long: int = Field(252, ge=2)
    momentum_skip: int = Field(21, ge=1)
    periods_per_year: dict[str, int] = Field(default_factory=lambda: {"XNYS": 252, "24/7": 365})
    window_calendar: str = "XNYS"

    @model_validator(mode="after")
    def _window_calendar_known(self) -> FactorConfig:
        if self.window_calendar not in self.periods_per_year:
            raise ValueError(
                f"window_calendar {self.window_calendar!r} has no periods_per_year "
                f"(known: {', '.join(self.periods_per_year)})"
            )
        return self

    def bars_for(self, sessions: int, calendar: str) -> int:
        """Bars of ``calendar`` spanning ``sessions`` sessions of ``window_calendar``."""
        scale = self.periods_per_year[calendar] / self.periods_per_year[self.window_calendar]
        return max(1, round(sessions * scale))

    @model_validator(mode="after")
    def _skip_shorter_than_long(self) -> FactorConfig:
        if self.momentum_skip >= self.momentum_long:
            raise ValueError("momentum_skip must be shorter than momentum_long")
        return self


class RegimeConfig(_Frozen):
    """VIX thresholds: NORMAL < elevated <= ELEVATED < high_vol <= HIGH_VOL < extreme <= EXTREME."""

    elevated: float = 20
    high_vol: float = 30
    extreme: float = 40

    @model_validator(mode="after")
    def _increasing(self) -> RegimeConfig:
        if not 0 < self.elevated < self.high_vol < self.extreme:
            raise ValueError("regime thresholds must increase: 0 < elevated < high_vol < extreme")
        return self


class SignalConfig(_Frozen):
    """Signal rules (SPEC stage 5).

    ``rule``: ``rules`` (the momentum / moving-average rules, the regime filter and the
    12-1 cross-section of :mod:`tiller.strategy.signals`) or ``trend`` (a symbol is a
    BUY, long-eligible at confidence 1, while its price is strictly above its
    ``trend_window``-session average, and a SELL otherwise; no regime filter).
    """

    rule: Literal["rules", "trend"] = "rules"
    trend_window: int = Field(200, ge=2)
    # Trend hysteresis: BUY above average x (1 + trend_entry_band), SELL at or below
    # average x (1 - trend_exit_band), HOLD in between (a holding stays, nothing new is
    # bought), so a price wandering around its average does not flip the position.
    trend_entry_band: float = Field(0.0, ge=0, lt=0.5)
    trend_exit_band: float = Field(0.0, ge=0, lt=0.5)
    momentum_factor: str = "momentum_60"
    strong_buy_momentum: float = 0.10
    strong_buy_max_vix: float = 30
    buy_momentum: float = 0.02
    sell_momentum: float = -0.02
    strong_sell_momentum: float = -0.10
    high_vol_confidence_factor: float = Field(0.5, ge=0, le=1)
    top_fraction: float = Field(0.30, gt=0, le=1)
    bottom_fraction: float = Field(0.30, ge=0, lt=1)
    defensive_assets: list[str] = Field(default_factory=lambda: ["GLD", "TLT"])
    defensive_trigger: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> SignalConfig:
        if not (
            self.strong_sell_momentum
            < self.sell_momentum
            < self.buy_momentum
            < self.strong_buy_momentum
        ):
            raise ValueError(
                "momentum thresholds must increase: strong_sell < sell < buy < strong_buy"
            )
        return self


class StrategyConfig(_Frozen):
    """``config/strategy.yaml``."""

    factors: FactorConfig = Field(default_factory=FactorConfig)
    regime: RegimeConfig = Field(default_factory=RegimeConfig)
    signals: SignalConfig = Field(default_factory=SignalConfig)

    @model_validator(mode="after")
    def _trend_average_computed(self) -> StrategyConfig:
        window = self.signals.trend_window
        if self.signals.rule == "trend" and window not in self.factors.sma_windows:
            raise ValueError(
                f"signals.trend_window {window} needs the factor sma_{window}: add {window} "
                f"to factors.sma_windows (now {self.factors.sma_windows})"
            )
        return self


class RiskConfig(_Frozen):
    """Hierarchical risk (SPEC stage 6), ``config/risk.yaml``."""

    levels: dict[str, float] = Field(
        default_factory=lambda: {"L1": 0.05, "L2": 0.08, "L3": 0.12, "L4": 0.15}
    )
    l1_min_confidence: float = Field(0.6, ge=0, le=1)
    l2_exposure_cut: float = Field(0.25, ge=0, le=1)
    l3_exposure_cut: float = Field(0.50, ge=0, le=1)
    safe_havens: list[str] = Field(default_factory=lambda: ["GLD", "TLT", "TIP"])
    asset_stop_halve: float = Field(0.12, gt=0, lt=1)
    asset_stop_exit: float = Field(0.18, gt=0, lt=1)
    correlation_window: int = Field(60, ge=10)
    pair_correlation_cap: float = Field(0.70, gt=0, le=1)
    pair_combined_weight: float = Field(0.40, gt=0, le=1)
    average_correlation_l1: float = Field(0.50, gt=0, le=1)
    all_pairs_correlation_l2: float = Field(0.80, gt=0, le=1)
    level_hysteresis: float = Field(0.01, ge=0, lt=0.05)
    recovery_calm_sessions: int = Field(10, ge=1)
    reentry_low_vol_days: int = Field(5, ge=1)
    target_volatility: float = Field(0.12, gt=0)
    reentry_initial_fraction: float = Field(0.25, gt=0, le=1)
    reentry_weekly_step: float = Field(0.25, gt=0, le=1)
    kill_daily_loss: float = Field(0.03, gt=0, lt=1)
    kill_error_burst: int = Field(5, ge=1)

    @field_validator("levels")
    @classmethod
    def _four_increasing_levels(cls, value: dict[str, float]) -> dict[str, float]:
        if list(value) != ["L1", "L2", "L3", "L4"]:
            raise ValueError("levels must be L1, L2, L3, L4 in that order")
        drawdowns = list(value.values())
        if not all(0 < a < b < 1 for a, b in pairwise(drawdowns)):
            raise ValueError("level drawdowns must increase and lie in (0, 1)")
        return value

    @model_validator(mode="after")
    def _halve_before_exit(self) -> RiskConfig:
        if self.asset_stop_halve >= self.asset_stop_exit:
            raise ValueError("asset_stop_halve must be smaller than asset_stop_exit")
        return self


class OptimizeConfig(_Frozen):
    """Portfolio construction (SPEC stage 7), ``config/risk.yaml`` section ``optimize``."""

    lookback: int = Field(252, ge=20)
    method: Literal["risk_parity", "fixed"] = "risk_parity"
    # newton: the risk-parity point by Newton's method; riskfolio: riskfolio-lib's conic
    # solve of the same point (tests hold them within 5e-5)
    solver: Literal["riskfolio", "newton"] = "newton"
    # Risk parity needs a non-singular covariance; below the tolerance inverse volatility
    # is used: correlation = smallest eigenvalue of the correlation matrix, covariance =
    # smallest / largest eigenvalue of the covariance matrix.
    singular_matrix: Literal["correlation", "covariance"] = "correlation"
    singular_tolerance: float = Field(1e-8, gt=0, lt=1)
    fixed_weights: dict[str, float] = Field(default_factory=dict)
    cash_buffer: float = Field(0.05, ge=0, lt=1)
    max_gross_leverage: float = Field(1.0, gt=0)
    hard_max_leverage: float = Field(1.5, gt=0)
    min_weight_change: float = Field(0.02, ge=0)
    min_trade_value: float = Field(100, ge=0)
    # No-trade bands around each target: a holding within max(band_absolute, band_relative
    # x target) of its target is left alone; outside, it trades to the target or to the
    # band's edge (band_trade_to). Exits (target 0) always trade in full.
    band_absolute: float = Field(0.0, ge=0, lt=1)
    band_relative: float = Field(0.0, ge=0, lt=10)
    band_trade_to: Literal["target", "edge"] = "target"
    # Volatility targeting: the invested share is scaled by min(1, vol_target / predicted
    # annualised portfolio volatility), and changed only when it moves by more than
    # vol_target_band (fraction of NAV) from the current invested share. None: off.
    vol_target: float | None = Field(None, gt=0, lt=2)
    vol_target_band: float = Field(0.05, ge=0, lt=1)
    # Minimum holding period: a position opened fewer than this many calendar days ago is
    # not closed on its signal (risk exits, stops and delistings still close it). 0: off.
    min_holding_days: int = Field(0, ge=0, le=365)
    max_turnover: float = Field(0.30, gt=0)
    max_trades: int = Field(5, ge=1)
    initial_capital: float = Field(100_000, gt=0)

    @model_validator(mode="after")
    def _fixed_mix(self) -> OptimizeConfig:
        if self.method == "fixed":
            if not self.fixed_weights:
                raise ValueError("method fixed needs fixed_weights, e.g. {SPY: 0.6, TLT: 0.4}")
            bad = {s: w for s, w in self.fixed_weights.items() if not 0 < w <= 1}
            if bad:
                raise ValueError(f"fixed_weights must lie in (0, 1], got {bad}")
        return self

    @model_validator(mode="after")
    def _leverage_within_hard_cap(self) -> OptimizeConfig:
        if self.max_gross_leverage > self.hard_max_leverage:
            raise ValueError(
                f"max_gross_leverage {self.max_gross_leverage} exceeds the hard cap "
                f"{self.hard_max_leverage}"
            )
        return self


class ExecutionConfig(_Frozen):
    """Execution settings (``config/execution.yaml``)."""

    fill_price: Literal["next_open", "close"] = "next_open"
    base_slippage_bps: float = Field(5.0, ge=0)
    volatility_slippage: float = Field(0.10, ge=0)
    impact_threshold: float = Field(10_000, ge=0)
    impact_bps_per_10k: float = Field(1.0, ge=0)
    # None: no volume cap (a research setting; zero-volume bars then fill too)
    max_volume_fraction: float | None = Field(0.10, gt=0, le=1)
    fill_delay_sessions: int = Field(0, ge=0)
    fractional: bool = False
    crypto_lot: float = Field(0.0001, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    retry_backoff_seconds: float = Field(1.0, ge=0, le=60)
    broker_timeout_seconds: float = Field(10.0, gt=0, le=120)
    poll_timeout_seconds: float = Field(30, ge=0)
    poll_interval_seconds: float = Field(1.0, gt=0)
    pause_after_failures: int = Field(3, ge=1)
    alpaca_url: str = "https://paper-api.alpaca.markets"
    strategy_tag: str = Field("tiller-rp", pattern=r"^[a-z0-9-]{1,20}$")


class BacktestConfig(_Frozen):
    """Backtest replay (``config/backtest.yaml``)."""

    cadence: Literal["daily", "weekly", "monthly", "month_end", "once"] = "weekly"
    # False: only bars inside the window are used (factors first exist inside it)
    warmup: bool = True
    # close: trade the session's open/close, pay the cash dividends the adjusted close
    # implies; adj_close: trade the dividend-adjusted series (open/high/low scaled by
    # adj_close / close), no separate dividends
    traded_price: Literal["close", "adj_close"] = "close"
    # A symbol whose data ends inside the window is sold at its last close on the next
    # session, or held at that price until the next rebalance day and sold then
    delisting: Literal["next_session", "next_rebalance"] = "next_session"
    # Sessions after an L4 halt at which a simulated operator confirms the reset
    # (``tiller risk reset --confirm``); None keeps the backtest halted to the end.
    l4_confirm_after_sessions: int | None = Field(10, ge=1)


class StressScenario(_Frozen):
    """One stress scenario: a historical window, or a synthetic shock on a calm window."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    start: date
    end: date
    max_drawdown: float = Field(gt=0, lt=1)
    shock: float | None = Field(None, gt=-1, lt=0)  # e.g. -0.20: every asset drops 20%
    shock_date: date | None = None  # the session the shock hits (on and after it)
    description: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> StressScenario:
        if self.start >= self.end:
            raise ValueError(f"scenario {self.name}: start {self.start} must be before {self.end}")
        if (self.shock is None) != (self.shock_date is None):
            raise ValueError(f"scenario {self.name}: shock and shock_date go together")
        if self.shock_date is not None and not self.start <= self.shock_date <= self.end:
            raise ValueError(f"scenario {self.name}: shock_date must lie in its window")
        return self


class StressConfig(_Frozen):
    """Stress tests and their pass criteria (``config/backtest.yaml`` section ``stress``)."""

    scenarios: list[StressScenario] = Field(default_factory=list)
    max_mean_drawdown: float = Field(0.18, gt=0, lt=1)
    allow_l4: bool = False


class GateThreshold(_Frozen):
    """A performance target and its minimum acceptable value (fractions or ratios)."""

    target: float
    minimum: float


class PerformanceTargets(_Frozen):
    """The technical design's strategy performance targets (see :mod:`tiller.backtest.gate`)."""

    annual_return: GateThreshold = GateThreshold(target=0.10, minimum=0.07)
    volatility: GateThreshold = GateThreshold(target=0.15, minimum=0.18)
    sharpe: GateThreshold = GateThreshold(target=1.0, minimum=0.7)
    max_drawdown: GateThreshold = GateThreshold(target=0.15, minimum=0.20)
    calmar: GateThreshold = GateThreshold(target=0.7, minimum=0.4)
    win_rate: GateThreshold = GateThreshold(target=0.52, minimum=0.48)
    profit_factor: GateThreshold = GateThreshold(target=1.3, minimum=1.1)
    monthly_turnover: GateThreshold = GateThreshold(target=0.30, minimum=0.50)
    cost_drag: GateThreshold = GateThreshold(target=0.01, minimum=0.02)


class PrePaperGate(_Frozen):
    """The gate before paper trading: a long backtest, its Sharpe and drawdown, the stress
    tests."""

    years: int = Field(5, ge=1)  # `tiller gate` without a window: the last `years` of data
    min_years: float = Field(4.95, ge=0)  # years the record must span
    min_sharpe: float = 0.7
    max_drawdown: float = Field(0.20, gt=0, lt=1)
    allow_l4: bool = False


class GateConfig(_Frozen):
    """Performance targets and the pre-paper gate (``config/gate.yaml``, ``tiller gate``)."""

    targets: PerformanceTargets = Field(default_factory=PerformanceTargets)
    pre_paper: PrePaperGate = Field(default_factory=PrePaperGate)
    win_rate_basis: Literal["closed_trades", "daily_returns"] = "closed_trades"
    require_minimums: bool = True  # the verdict also needs every target at its minimum


AlertLevel = Literal["INFO", "WARNING", "CRITICAL", "EMERGENCY"]


def _default_cooldowns() -> dict[AlertLevel, float]:
    return {"INFO": 3600.0, "WARNING": 1800.0, "CRITICAL": 600.0, "EMERGENCY": 0.0}


class AlertsConfig(_Frozen):
    """Alert routing and cooldowns (``config/alerts.yaml``)."""

    channels: dict[AlertLevel, list[str]] = Field(default_factory=dict, repr=False)
    cooldown_seconds: dict[AlertLevel, float] = Field(default_factory=_default_cooldowns)
    order_failures_in_a_row: int = Field(3, ge=1)
    timeout_seconds: float = Field(10, gt=0)

    @field_validator("channels")
    @classmethod
    def _usable_channels(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        """Every URL is one apprise can send to (its own parser decides)."""
        for level, urls in value.items():
            problem = urls_problem(list(urls)) if urls else None
            if problem is not None:
                raise ValueError(f"{level}: {problem}")
        return value


def split_urls(value: Any) -> list[str]:
    """``"a, b c"`` -> ``["a", "b", "c"]``: apprise URLs separated by commas or spaces."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in re.split(r"[,\s]+", value) if part]
    return [str(part) for part in value]


@dataclass(frozen=True)
class DataSource:
    """One entry of ``TILLER_DATA_SOURCES``: a provider kind and, for ``csv``, its folder."""

    kind: str
    path: Path | None = None

    def __str__(self) -> str:
        return f"csv:{self.path}" if self.kind == "csv" else self.kind


def parse_data_sources(value: Any) -> list[DataSource]:
    """Parse ``"synthetic,csv:/data/market,yfinance"`` into :class:`DataSource` entries."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = [str(part).strip() for part in value]
    else:
        raise ValueError("expected a comma-separated string")
    if not items:
        raise ValueError(f"no data source given; allowed: {', '.join(SOURCE_KINDS)} (csv:<dir>)")
    sources: list[DataSource] = []
    for item in items:
        kind, _, arg = item.partition(":")
        kind = kind.strip().lower()
        if kind == "polygon":
            kind = "massive"
        if kind not in SOURCE_KINDS:
            raise ValueError(
                f"unknown data source {item!r}; allowed: synthetic, csv:<dir>, yfinance, "
                "massive, alpaca, fred"
            )
        if kind == "csv":
            if not arg:
                raise ValueError("csv needs a folder: csv:<dir>, e.g. csv:../shared/data/market")
            sources.append(DataSource("csv", Path(arg).expanduser().resolve()))
        elif arg:
            raise ValueError(f"data source {kind!r} takes no argument (got {item!r})")
        else:
            sources.append(DataSource(kind))
    kinds = [str(s) for s in sources]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"a data source is listed twice: {value!r}")
    return sources


def _read_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (an empty file is an empty mapping)."""
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return content


class _YamlConfigSource(PydanticBaseSettingsSource):
    """Merge the top-level keys of every ``*.yaml`` in the config folder."""

    def __init__(self, settings_cls: type[BaseSettings], folder: Path):
        super().__init__(settings_cls)
        self.folder = folder

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns everything at once

    def __call__(self) -> dict[str, Any]:
        if not self.folder.is_dir():
            raise ConfigError(
                f"config folder {self.folder} does not exist; set TILLER_CONFIG_DIR to the "
                "folder holding tiller.yaml and universe.yaml"
            )
        merged: dict[str, Any] = {}
        origin: dict[str, Path] = {}
        for path in sorted(self.folder.glob("*.yaml")):
            for key, value in _read_mapping(path).items():
                if key in merged:
                    raise ConfigError(f"config key {key!r} is set in both {origin[key]} and {path}")
                merged[key] = value
                origin[key] = path
        profile = profile_path()
        if profile is not None:
            overlay = _read_mapping(profile)
            overlay.pop("description", None)
            merged = deep_merge(merged, overlay)
        return merged


class Settings(BaseSettings):
    """Everything Tiller reads from configuration, typed and validated once."""

    model_config = SettingsConfigDict(
        env_prefix="TILLER_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    home: Path = Path("var")
    database_url: str | None = None
    data_sources: Annotated[list[DataSource], NoDecode] = Field(
        default_factory=lambda: [DataSource("synthetic")]
    )
    universe: str = "core"
    history_start: date = date(2016, 1, 4)
    synthetic_seed: int = 7
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # A second run of a flow waits this long for the first to finish, then gives up.
    run_lock_wait_seconds: float = Field(60, ge=0, le=3600)

    assets: dict[str, AssetSpec]
    # The universe-table row of a universe symbol that `assets` does not list (e.g. a
    # research universe of 150 stocks); None: every universe symbol must be in `assets`.
    asset_defaults: AssetSpec | None = None
    universe_groups: dict[str, list[str]]
    costs: dict[str, CostSpec]
    volatility_index: str = Field("VIX", pattern=r"^[A-Z0-9^][A-Z0-9.\-^=]{0,14}$")
    macro_series: list[str] = Field(default_factory=list)

    data: DataConfig = Field(default_factory=DataConfig)
    validation: ValidationConfig
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    optimize: OptimizeConfig = Field(default_factory=OptimizeConfig)
    # apprise URLs may carry tokens and passwords: never shown in a repr or a log
    notify_urls: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    broker: Literal["paper", "alpaca"] = "paper"
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    stress: StressConfig = Field(default_factory=StressConfig)
    gate: GateConfig = Field(default_factory=GateConfig)

    # Provider credentials: environment only, never logged (SecretStr).
    massive_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "TILLER_MASSIVE_API_KEY", "MASSIVE_API_KEY", "POLYGON_API_KEY"
        ),
    )
    alpaca_url: str | None = None  # TILLER_ALPACA_URL overrides execution.alpaca_url
    alpaca_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ALPACA_API_KEY", "APCA_API_KEY_ID")
    )
    alpaca_secret_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ALPACA_SECRET_KEY", "APCA_API_SECRET_KEY")
    )
    fred_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TILLER_FRED_API_KEY", "FRED_API_KEY")
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlConfigSource(settings_cls, config_dir()))

    @field_validator("data_sources", mode="before")
    @classmethod
    def _parse_sources(cls, value: Any) -> Any:
        if isinstance(value, list) and all(isinstance(v, DataSource) for v in value):
            return value
        return parse_data_sources(value)

    @field_validator("notify_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> list[str]:
        return split_urls(value)

    @field_validator("notify_urls")
    @classmethod
    def _usable_urls(cls, value: list[str]) -> list[str]:
        """Every URL is one apprise can send to (its own parser decides); the error quotes
        none of them (they hold tokens and passwords)."""
        problem = urls_problem(value) if value else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _blank_url(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="before")
    @classmethod
    def _default_assets(cls, data: Any) -> Any:
        """Give each universe symbol missing from ``assets`` the ``asset_defaults`` row."""
        if not isinstance(data, dict) or not data.get("asset_defaults"):
            return data
        groups = data.get("universe_groups") or {}
        raw = str(data.get("universe", "core")).strip()
        named = groups.get(raw.lower()) if isinstance(groups, dict) else None
        symbols = named if named is not None else [x.strip() for x in raw.split(",")]
        assets = dict(data.get("assets") or {})
        for symbol in symbols:
            if symbol and symbol not in assets and _SYMBOL.match(symbol):
                assets[symbol] = {"name": symbol, **dict(data["asset_defaults"])}
        return {**data, "assets": assets}

    @model_validator(mode="after")
    def _check_universe(self) -> Settings:
        for group, symbols in self.universe_groups.items():
            unknown = [s for s in symbols if s not in self.assets]
            if unknown:
                raise ValueError(
                    f"universe group {group!r} names assets not in `assets`: {unknown}"
                )
        for symbol, spec in self.assets.items():
            if not _SYMBOL.match(symbol):
                raise ValueError(
                    f"asset {symbol!r} is not a symbol (letters, digits and . - ^ =, at most 15, "
                    "e.g. SPY, BTC-USD, ^VIX)"
                )
            if spec.cost_class not in self.costs:
                raise ValueError(
                    f"asset {symbol} has cost_class {spec.cost_class!r}; "
                    f"allowed: {sorted(self.costs)}"
                )
        try:
            self._resolve_universe()
        except ValueError as exc:
            raise ValueError(
                f"TILLER_UNIVERSE (config key 'universe') (got {self.universe!r}): {exc}"
            ) from None
        return self

    def _resolve_universe(self) -> list[str]:
        raw = self.universe.strip()
        if raw.lower() in self.universe_groups:
            return list(self.universe_groups[raw.lower()])
        symbols = [s.strip() for s in raw.split(",") if s.strip()]
        allowed = f"{', '.join(self.universe_groups)}, or a comma list of {', '.join(self.assets)}"
        if not symbols:
            raise ValueError(f"empty universe; allowed: {allowed}")
        bad = [s for s in symbols if not _SYMBOL.match(s) or s not in self.assets]
        if bad:
            raise ValueError(f"unknown symbol(s) {', '.join(bad)}; allowed: {allowed}")
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"a symbol is listed twice in {raw!r}")
        return symbols

    @cached_property
    def symbols(self) -> list[str]:
        """The resolved universe: tradable symbols in configured order."""
        return self._resolve_universe()

    @property
    def home_dir(self) -> Path:
        """``TILLER_HOME`` as an absolute path."""
        return self.home.expanduser().resolve()

    @property
    def db_url(self) -> str:
        """The database URL: ``TILLER_DATABASE_URL`` or the SQLite file under ``TILLER_HOME``."""
        return self.database_url or f"sqlite:///{self.home_dir / 'tiller.db'}"

    def asset(self, symbol: str) -> AssetSpec:
        """The universe-table row of ``symbol``."""
        return self.assets[symbol]

    def calendar_of(self, series: str) -> str:
        """Exchange-calendars name for a bar series (the volatility index trades on XNYS)."""
        spec = self.assets.get(series)
        return spec.calendar if spec else "XNYS"


_ENV_NAMES = {
    "massive_api_key": "MASSIVE_API_KEY",
    "alpaca_api_key": "ALPACA_API_KEY",
    "alpaca_secret_key": "ALPACA_SECRET_KEY",
    "fred_api_key": "FRED_API_KEY",
}


def _describe(error: dict[str, Any]) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not loc:
        return message
    env = _ENV_NAMES.get(loc[0]) or "TILLER_" + "__".join(p.upper() for p in loc[:2])
    key = ".".join(loc)
    value = error.get("input")
    secret = loc[0] in _ENV_NAMES or loc[0] == "notify_urls" or loc[:2] == ["alerts", "channels"]
    shown = "" if secret or isinstance(value, dict) else f" (got {value!r})"
    return f"{env} (config key '{key}'){shown}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Build :class:`Settings`, turning validation errors into one readable :class:`ConfigError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [_describe(dict(e)) for e in exc.errors()]
        if len(lines) == 1:  # one problem: one line
            raise ConfigError(f"invalid configuration: {lines[0]}") from None
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
