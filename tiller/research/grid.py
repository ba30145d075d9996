"""Grid files: which configurations, profiles and periods a study backtests.

A grid is a YAML mapping::

    name: lookback-and-buffer          # shown in reports (default: the file name)
    profiles: [default, trend-rp]      # optional; "default" = no profile
    periods:                           # the windows of a sweep (a walk-forward cuts its
      - {start: 2015-01-02, end: 2023-12-29}   # train/test windows from the first one)
    parameters:                        # dotted configuration keys and their values
      optimize.lookback: [126, 252]
      optimize.cash_buffer: [0.02, 0.05]
    objective: sharpe                  # see :mod:`tiller.research.objective`

A parameter whose values are mappings is a *bundle*: each value sets several keys at once
(``{}`` sets none), so settings that only mean something together vary together instead
of multiplying the grid::

    parameters:
      signals:
        - {strategy.signals.rule: rules}
        - {strategy.signals.rule: trend}
        - {strategy.signals.rule: trend, strategy.signals.trend_exit_band: 0.02}

Every combination of a profile, one value per parameter and a period is a
:class:`Point`, in the order of the file (profiles, then parameters, then periods).  Each
point's settings are resolved and validated before any backtest starts
(:func:`resolve`); an unknown key or a value the settings refuse is one
:class:`GridError` line naming the point.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from tiller.errors import ConfigError, TillerError
from tiller.research.objective import Objective, parse_objective
from tiller.settings import Settings, load_settings

DEFAULT_PROFILE = "default"
_KEYS = {"name", "profiles", "periods", "parameters", "objective"}
# Settings that do not change a backtest's numbers: left out of a point's hash.
_NOT_HASHED = {
    "home",
    "database_url",
    "log_level",
    "run_lock_wait_seconds",
    "notify_urls",
    "alerts",
    "broker",
    "massive_api_key",
    "alpaca_url",
    "alpaca_api_key",
    "alpaca_secret_key",
    "fred_api_key",
}
_SECRETS = {"massive_api_key", "alpaca_api_key", "alpaca_secret_key", "fred_api_key"}


class GridError(TillerError, ValueError):
    """A grid file that cannot be run (the message says what to fix)."""


@dataclass(frozen=True)
class Point:
    """One configuration over one window."""

    profile: str
    params: Mapping[str, Any]
    start: date
    end: date

    @property
    def label(self) -> str:
        """``profile | key=value, ... | start..end`` (human, for tables)."""
        values = ", ".join(f"{k}={v}" for k, v in self.params.items()) or "base"
        return f"{self.profile} | {values} | {self.start}..{self.end}"

    def on(self, start: date, end: date) -> Point:
        """The same configuration over another window."""
        return Point(self.profile, self.params, start, end)


@dataclass(frozen=True)
class Grid:
    """A parsed grid file (module docstring)."""

    name: str
    profiles: tuple[str, ...]
    parameters: Mapping[str, tuple[Any, ...]]
    periods: tuple[tuple[date, date], ...]
    objective: Objective
    raw: Mapping[str, Any] = field(repr=False)

    def configurations(self) -> list[Point]:
        """Every profile x parameter combination on the first period."""
        start, end = self.periods[0]
        keys = list(self.parameters)
        out = []
        for profile in self.profiles:
            for values in itertools.product(*(self.parameters[k] for k in keys)):
                params: dict[str, Any] = {}
                for key, value in zip(keys, values, strict=True):
                    params |= dict(value) if isinstance(value, Mapping) else {key: value}
                out.append(Point(profile, params, start, end))
        return out

    def points(self) -> list[Point]:
        """Every configuration on every period."""
        return [c.on(s, e) for c in self.configurations() for s, e in self.periods]

    def digest(self, *extra: Any) -> str:
        """A short stable id of the grid (and of ``extra``, e.g. walk-forward windows)."""
        text = json.dumps([self.raw, [str(x) for x in extra]], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def read_grid(path: Path) -> Grid:
    """Parse and check a grid file.

    Raises
    ------
    GridError
        Not a file, not YAML, an unknown top-level key, no parameter values, a bad
        period, an unknown objective.
    """
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist; give --grid PATH to a YAML grid")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        reason = str(exc).replace("\n", " ")
        raise GridError(f"{path}: not valid YAML: {reason}") from None
    if not isinstance(raw, dict):
        raise GridError(f"{path}: expected a mapping with parameters, periods, objective")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise GridError(
            f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}"
        )
    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise GridError(f"{path}: parameters must map dotted keys to lists of values")
    values: dict[str, tuple[Any, ...]] = {}
    for key, options in parameters.items():
        listed = options if isinstance(options, list) else [options]
        if not listed:
            raise GridError(f"{path}: parameter {key} has no values; give a list, e.g. [1, 2]")
        values[str(key)] = tuple(listed)
    _check_bundles(path, values)
    profiles = tuple(str(p) for p in (raw.get("profiles") or [DEFAULT_PROFILE]))
    periods = tuple(_period(path, p) for p in (raw.get("periods") or []))
    if not periods:
        raise GridError(f"{path}: no period; add periods: [{{start: YYYY-MM-DD, end: ...}}]")
    if not values and len(profiles) < 2 and len(periods) < 2:
        raise GridError(
            f"{path}: the grid is empty (no parameter, one profile, one period): nothing to "
            "compare; add parameters: {optimize.lookback: [126, 252]}"
        )
    try:
        objective = parse_objective(raw.get("objective", "sharpe"))
    except ValueError as exc:
        raise GridError(f"{path}: objective: {exc}") from None
    return Grid(
        name=str(raw.get("name") or path.stem),
        profiles=profiles,
        parameters=values,
        periods=periods,
        objective=objective,
        raw=raw,
    )


def _check_bundles(path: Path, values: Mapping[str, tuple[Any, ...]]) -> None:
    """A bundle's values are all mappings of dotted keys, and no key is set twice (by two
    bundles, or by a bundle and a plain parameter)."""
    owner: dict[str, str] = {
        k: k for k, v in values.items() if not any(isinstance(x, dict) for x in v)
    }
    for key, options in values.items():
        dicts = [x for x in options if isinstance(x, dict)]
        if not dicts:
            continue
        if len(dicts) != len(options):
            raise GridError(
                f"{path}: parameter {key} mixes mappings and plain values; a bundle lists "
                "mappings only, e.g. [{optimize.lookback: 126}, {}]"
            )
        for name in sorted({str(k) for d in dicts for k in d}):
            if owner.get(name, key) != key:
                raise GridError(
                    f"{path}: {name} is set by both {owner[name]} and {key}; set each key in "
                    "one parameter"
                )
            owner[name] = key


def _period(path: Path, item: Any) -> tuple[date, date]:
    if not isinstance(item, dict) or set(item) != {"start", "end"}:
        raise GridError(f"{path}: a period is {{start: YYYY-MM-DD, end: YYYY-MM-DD}}, got {item!r}")
    try:
        start, end = (date.fromisoformat(str(item[k])) for k in ("start", "end"))
    except ValueError:
        raise GridError(f"{path}: period {item!r}: dates must be YYYY-MM-DD") from None
    if start >= end:
        raise GridError(f"{path}: period {start}..{end}: the start must come before the end")
    return start, end


def nested(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{"optimize.lookback": 60}`` -> ``{"optimize": {"lookback": 60}}``."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


@contextmanager
def _profile(name: str) -> Iterator[None]:
    saved = os.environ.get("TILLER_PROFILE")
    if name == DEFAULT_PROFILE:
        os.environ.pop("TILLER_PROFILE", None)
    else:
        os.environ["TILLER_PROFILE"] = name
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TILLER_PROFILE", None)
        else:
            os.environ["TILLER_PROFILE"] = saved


def resolve(point: Point, base: Mapping[str, Any] | None = None) -> Settings:
    """The point's settings: the configuration, its profile, ``base`` overrides (e.g.
    ``home``), then its parameters; secrets removed (they never travel to a worker).

    Raises
    ------
    GridError
        A parameter the settings do not know or refuse, one line naming the point.
    """
    overrides = {**dict(base or {}), **nested(point.params)}
    try:
        with _profile(point.profile):
            settings = load_settings(**overrides)
    except ConfigError as exc:
        lines = [line.strip() for line in str(exc).splitlines()[1:]] or [str(exc)]
        detail = "; ".join(
            line.replace("Extra inputs are not permitted", "unknown key") for line in lines
        )
        raise GridError(f"point {point.label}: {detail}") from None
    return settings.model_copy(update=dict.fromkeys(_SECRETS))


def point_hash(settings: Settings, start: date, end: date) -> str:
    """SHA-256 of everything that decides a backtest's numbers: the resolved settings (but
    paths, logging and secrets), the window and the data sources."""
    payload = settings.model_dump(mode="json", exclude=_NOT_HASHED)
    text = json.dumps([payload, str(start), str(end)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def validate(points: Sequence[Point], base: Mapping[str, Any] | None = None) -> list[Settings]:
    """Resolve every point before any work starts (:func:`resolve`)."""
    return [resolve(p, base) for p in points]
