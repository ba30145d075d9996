"""Local CSV folder: one file per symbol, strictly checked.

Layout (the format of ``../shared/data``)::

    <dir>/SPY.csv      date,open,high,low,close,adj_close,volume
    <dir>/VIX.csv      same header; adj_close and volume may be empty
    <macro>/DGS10.csv  date,value   (value empty where there is no observation)

``<macro>`` is ``<dir>/../macro`` unless configured.  Dates are ISO
``YYYY-MM-DD``, ascending, unique and not in the future; every bar has its open,
high, low and close (``adj_close`` and ``volume`` may be empty, as for an index).
Any problem raises :class:`~tiller.errors.DataError` naming the file and line.
"""

from __future__ import annotations

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
