"""Local CSV data, strictly checked: a folder with one file per symbol
(:class:`CsvProvider`, ``csv:<folder>``), or one long-format file of many symbols
(:class:`LongCsvProvider`, ``csv:<file.csv[.gz]>``, e.g. ``../shared/data/universe``).

Folder layout (the format of ``../shared/data/market``)::

    <dir>/SPY.csv      date,open,high,low,close,adj_close,volume
    <dir>/VIX.csv      same header; adj_close and volume may be empty
    <macro>/DGS10.csv  date,value   (value empty where there is no observation)

``<macro>`` is ``<dir>/../macro`` unless configured.  Dates are ISO
``YYYY-MM-DD``, ascending, unique and not in the future; every bar has its open,
high, low and close (``adj_close`` and ``volume`` may be empty, as for an index).
Any problem raises :class:`~tiller.errors.DataError` naming the file and line.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd

from tiller.data.base import (
    BAR_COLUMNS,
    MACRO_COLUMNS,
    SeriesKind,
    SeriesRequest,
    canonical,
)
from tiller.errors import DataError


def read_series_csv(path: Path, kind: SeriesKind) -> pd.DataFrame:
    """Read and check one CSV file; return its canonical frame (all rows).

    Raises
    ------
    DataError
        The file is empty, a column is missing or misnamed, a date or number
        does not parse, or dates are duplicated or out of order.  The message
        names the file and the (1-based, header = line 1) line.
    """
    expected = BAR_COLUMNS if kind is SeriesKind.BAR else MACRO_COLUMNS
    header = ",".join(expected)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected the header {header}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read it as CSV: {exc}") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in expected if c not in raw.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; found {','.join(raw.columns)}; "
            f"expected the header {header}"
        )
    if raw.empty:
        raise DataError(f"{path}: the file has a header but no rows")
    raw = raw.loc[:, list(expected)]

    def line(i: int) -> int:
        return i + 2  # 0-based row + header line + 1-based

    dates = pd.to_datetime(raw["date"].str.strip(), format="%Y-%m-%d", errors="coerce")
    bad = dates.isna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(
            f"{path}: line {line(i)}: date {raw['date'].iloc[i]!r} is not a YYYY-MM-DD date"
        )
    today = pd.Timestamp(date.today())
    future = dates > today
    if future.any():
        i = int(future.to_numpy().nonzero()[0][0])
        raise DataError(
            f"{path}: line {line(i)}: date {raw['date'].iloc[i].strip()} is in the future "
            f"(today is {today.date()}); fix the date or remove the row"
        )
    out = pd.DataFrame({"date": dates.astype("datetime64[ns]")})
    required = ("open", "high", "low", "close") if kind is SeriesKind.BAR else ()
    for column in expected[1:]:
        text = raw[column].str.strip()
        # Empty cells are NaN where that is allowed: an index has no volume or adjusted
        # close, FRED has holiday gaps.  A bar without a price is refused here.
        empty = text.isin(["", ".", "null", "NaN", "nan"])
        if column in required and empty.any():
            i = int(empty.to_numpy().nonzero()[0][0])
            raise DataError(
                f"{path}: line {line(i)}: {column} is empty; every bar needs open, high, low "
                "and close (fill it in or remove the row)"
            )
        values = pd.to_numeric(text.where(~empty), errors="coerce")
        wrong = values.isna() & ~empty
        if wrong.any():
            i = int(wrong.to_numpy().nonzero()[0][0])
            raise DataError(
                f"{path}: line {line(i)}: {column} = {raw[column].iloc[i]!r} is not a number"
            )
        out[column] = values.astype("float64")
    duplicated = out["date"].duplicated()
    if duplicated.any():
        i = int(duplicated.to_numpy().nonzero()[0][0])
        first = int((out["date"] == out["date"].iloc[i]).to_numpy().nonzero()[0][0])
        raise DataError(
            f"{path}: line {line(i)}: date {out['date'].iloc[i].date()} appears again "
            f"(first on line {line(first)}); keep one row per date"
        )
    backwards = out["date"].diff() < pd.Timedelta(0)
    if backwards.any():
        i = int(backwards.to_numpy().nonzero()[0][0])
        raise DataError(
            f"{path}: line {line(i)}: date {out['date'].iloc[i].date()} comes before the "
            f"previous row's {out['date'].iloc[i - 1].date()}; sort the file by date"
        )
    return out


class CsvProvider:
    """Bars from ``<folder>/<SYMBOL>.csv`` and macro series from ``<macro_folder>/<ID>.csv``."""

    name = "csv"

    def __init__(self, folder: Path, macro_folder: Path | None = None):
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(
                f"TILLER_DATA_SOURCES: csv folder {folder} does not exist or is not a folder"
            )
        self.folder = folder
        self.macro_folder = Path(macro_folder) if macro_folder else folder.parent / "macro"
        self._cache: dict[tuple[Path, float, int], pd.DataFrame] = {}

    def __str__(self) -> str:
        return f"csv:{self.folder}"

    def path_for(self, series: str, kind: SeriesKind) -> Path:
        """``<folder>/<series>.csv``; a series name that would leave the folder (``..``, a
        path separator) is refused."""
        base = self.folder if kind is SeriesKind.BAR else self.macro_folder
        path = base / f"{series}.csv"
        if (
            "/" in series
            or "\\" in series
            or series.startswith(".")
            or (path.resolve().parent != base.resolve())
        ):
            raise DataError(
                f"{series!r} is not a series name: it would read {path.resolve()} outside "
                f"{base.resolve()}"
            )
        return path

    def supports(self, series: str, kind: SeriesKind) -> bool:
        try:
            return self.path_for(series, kind).is_file()
        except DataError:
            return False

    def fetch(self, request: SeriesRequest) -> pd.DataFrame:
        path = self.path_for(request.series, request.kind)
        if not path.is_file():
            raise DataError(f"{path}: no such file for {request.series} in {path.parent}")
        stat = path.stat()
        key = (path, stat.st_mtime, stat.st_size)
        if key not in self._cache:
            self._cache = {key: read_series_csv(path, request.kind)}  # keep one file cached
        return canonical(self._cache[key], request)


LONG_COLUMNS = ("date", "symbol", "open", "high", "low", "close", "volume")
"""Required header of a long-format file; ``adj_close`` is optional."""


def read_long_csv(path: Path) -> dict[str, pd.DataFrame]:
    """Read and check a long-format file (one row per symbol and date, e.g.
    ``../shared/data/universe/us_equities_daily.csv.gz``); return each symbol's canonical
    bars.

    Columns ``date,symbol,open,high,low,close,volume`` and optionally ``adj_close`` (NaN
    when absent: the file's ``close`` is then the traded price and no dividend is implied),
    in any order; gzip is read by the extension.

    Raises
    ------
    DataError
        A column is missing, a date or number does not parse, a price is empty, a date
        is in the future, or a symbol has a date twice or out of order; the message names
        the file and the (1-based, header = line 1) line.
    """
    try:
        # symbol and date as categories: each distinct value is stripped and parsed once
        raw = pd.read_csv(
            path, dtype={"symbol": "category", "date": "category"}, skipinitialspace=True
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected {','.join(LONG_COLUMNS)}") from None
    except ValueError:  # a number that does not parse: find its line
        return _long_csv_with_line(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read it as CSV: {exc}") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in LONG_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; found {','.join(raw.columns)}; "
            f"expected the header {','.join(LONG_COLUMNS)} (adj_close optional)"
        )
    for column in ("open", "high", "low", "close", "volume", "adj_close"):
        if column in raw.columns and not pd.api.types.is_numeric_dtype(raw[column]):
            return _long_csv_with_line(path)
    day_of = pd.to_datetime(
        raw["date"].cat.categories.astype(str).str.strip(), format="%Y-%m-%d", errors="coerce"
    )
    dates = pd.Series(day_of.take(raw["date"].cat.codes.to_numpy()), index=raw.index)
    _refuse(path, dates.isna(), lambda i: f"date {raw['date'].iloc[i]!r} is not a YYYY-MM-DD date")
    today = pd.Timestamp(date.today())
    _refuse(
        path,
        dates > today,
        lambda i: (
            f"date {raw['date'].iloc[i]} is in the future (today is {today.date()}); "
            "fix the date or remove the row"
        ),
    )
    for column in ("open", "high", "low", "close"):
        empty = f"{column} is empty; every bar needs open, high, low and close"
        _refuse(path, raw[column].isna(), empty)
    symbols = raw["symbol"].cat.rename_categories(
        raw["symbol"].cat.categories.astype(str).str.strip()
    )
    frame = pd.DataFrame(
        {
            "date": dates.astype("datetime64[ns]"),
            "symbol": symbols,
            "open": raw["open"].astype("float64"),
            "high": raw["high"].astype("float64"),
            "low": raw["low"].astype("float64"),
            "close": raw["close"].astype("float64"),
            "adj_close": (
                raw["adj_close"].astype("float64") if "adj_close" in raw.columns else float("nan")
            ),
            "volume": raw["volume"].astype("float64"),
        }
    )
    order = frame.groupby("symbol", sort=False, observed=True)["date"].diff()
    _refuse(
        path,
        order == pd.Timedelta(0),
        lambda i: (
            f"{symbols.iloc[i]} {dates.iloc[i].date()} appears again; keep one row per "
            "symbol and date"
        ),
    )
    _refuse(
        path,
        order < pd.Timedelta(0),
        lambda i: (
            f"{symbols.iloc[i]} {dates.iloc[i].date()} comes before that symbol's "
            "previous row; sort the file by date"
        ),
    )
    return {
        str(symbol): group.drop(columns="symbol").reset_index(drop=True)
        for symbol, group in frame.groupby("symbol", sort=False, observed=True)
    }


def _refuse(
    path: Path,
    bad: pd.Series,
    what: str | Callable[[int], str],
    cells: pd.Series | None = None,
) -> None:
    """Raise a :class:`DataError` for the first row flagged in ``bad``: ``what`` is the
    message, or makes it from the row; ``cells`` (the column) puts the bad value first."""
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        message = what if isinstance(what, str) else what(i)
        if cells is not None:
            message = f"{cells.iloc[i]!r}: {message}"
        raise DataError(f"{path}: line {i + 2}: {message}")


def _long_csv_with_line(path: Path) -> dict[str, pd.DataFrame]:
    """The slow path of :func:`read_long_csv` when a number does not parse: read as text
    and name the first bad cell."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    for column in ("open", "high", "low", "close", "volume", "adj_close"):
        if column not in raw.columns:
            continue
        text = raw[column].str.strip()
        empty = text.isin(["", "NaN", "nan", "null"])
        wrong = pd.to_numeric(text.where(~empty), errors="coerce").isna() & ~empty
        _refuse(path, wrong, f"{column} is not a number", raw[column])
    raise DataError(f"{path}: cannot read it as CSV: a value does not parse as a number")


class LongCsvProvider:
    """Bars of many symbols from one long-format file (``csv:<file.csv[.gz]>``)."""

    name = "csv"

    def __init__(self, path: Path):
        path = Path(path)
        if not path.is_file():
            raise DataError(f"TILLER_DATA_SOURCES: csv file {path} does not exist")
        self.path = path
        self._bars: dict[str, pd.DataFrame] | None = None

    def __str__(self) -> str:
        return f"csv:{self.path}"

    @property
    def bars(self) -> dict[str, pd.DataFrame]:
        """Every symbol's bars, read once."""
        if self._bars is None:
            self._bars = read_long_csv(self.path)
        return self._bars

    def supports(self, series: str, kind: SeriesKind) -> bool:
        return kind is SeriesKind.BAR and series in self.bars

    def fetch(self, request: SeriesRequest) -> pd.DataFrame:
        frame = self.bars.get(request.series)
        if frame is None or request.kind is not SeriesKind.BAR:
            raise DataError(f"{self.path}: no bars for {request.series}")
        # the frames are canonical already (typed, one row per date, ascending): clip only
        days = frame["date"]
        inside = (days >= pd.Timestamp(request.start)) & (days <= pd.Timestamp(request.end))
        return frame[inside].reset_index(drop=True)
