"""The CSV provider on the real shared data, and every kind of bad file."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from tiller.data.base import SeriesKind, SeriesRequest
from tiller.data.providers.csv import CsvProvider
from tiller.errors import DataError

from .conftest import MARKET

HEADER = "date,open,high,low,close,adj_close,volume\n"
GOOD = HEADER + "2024-01-02,10,11,9,10.5,10.4,100\n2024-01-03,10.5,11,10,10.8,10.7,120\n"


def _request(symbol: str = "SPY", start: date = date(2000, 1, 1), end: date = date(2030, 1, 1)):
    return SeriesRequest(symbol, SeriesKind.BAR, start, end)


def test_reads_the_real_spy_file_with_its_known_closes() -> None:
    provider = CsvProvider(MARKET)
    spy = provider.fetch(_request()).set_index("date")
    assert spy.loc["2009-03-09", "close"] == pytest.approx(68.11, abs=0.005)
    assert spy.loc["2020-03-23", "close"] == pytest.approx(222.95, abs=0.005)
    vix = provider.fetch(_request("VIX")).set_index("date")
    assert vix.loc["2020-03-16", "close"] == pytest.approx(82.69)
    assert vix["volume"].isna().all()


def test_never_returns_rows_after_the_request_end() -> None:
    spy = CsvProvider(MARKET).fetch(_request(end=date(2020, 3, 20)))
    assert spy["date"].max().date() == date(2020, 3, 20)


def test_macro_from_the_sibling_folder_keeps_fred_gaps() -> None:
    provider = CsvProvider(MARKET)
    assert provider.supports("DGS10", SeriesKind.MACRO)
    ten = provider.fetch(
        SeriesRequest("DGS10", SeriesKind.MACRO, date(2024, 12, 20), date(2025, 1, 3))
    )
    assert ten.set_index("date")["value"].isna().sum() >= 1  # Christmas / New Year


def _write(tmp_path: Path, text: str, name: str = "SPY.csv") -> CsvProvider:
    (tmp_path / name).write_text(text)
    return CsvProvider(tmp_path)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", ["is empty", "date,open,high"]),
        (HEADER, ["header but no rows"]),
        (
            "date,open,high,low,price,adj_close,volume\n2024-01-02,1,2,0.5,1,1,1\n",
            ["missing column(s) close", "found date,open,high,low,price"],
        ),
        ("Date;Open;High\n2024-01-02;1;2\n", ["missing column(s)"]),
        (HEADER + "2024-01-02,10,11,9,ten,10,100\n", ["line 2", "close = 'ten' is not a number"]),
        (GOOD + "2024-01-32,1,2,0.5,1,1,1\n", ["line 4", "not a YYYY-MM-DD date"]),
        (GOOD + "2024-01-03,1,2,0.5,1,1,1\n", ["line 4", "2024-01-03 appears again", "line 3"]),
        (GOOD + "2024-01-01,1,2,0.5,1,1,1\n", ["line 4", "comes before", "sort the file"]),
    ],
)
def test_a_bad_file_is_one_clear_error_naming_file_and_line(
    tmp_path: Path, content: str, words: list[str]
) -> None:
    provider = _write(tmp_path, content)
    with pytest.raises(DataError) as error:
        provider.fetch(_request())
    message = str(error.value)
    assert str(tmp_path / "SPY.csv") in message
    for word in words:
        assert word in message


def test_missing_folder_and_unknown_symbol(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="csv folder .* does not exist"):
        CsvProvider(tmp_path / "nowhere")
    provider = _write(tmp_path, GOOD)
    assert not provider.supports("NOPE", SeriesKind.BAR)
    with pytest.raises(DataError, match="NOPE.csv: no such file"):
        provider.fetch(_request("NOPE"))


@pytest.mark.parametrize("series", ["../macro/DGS10", "..", "sub/SPY", ".hidden"])
def test_a_series_name_never_reads_outside_the_folder(series: str) -> None:
    provider = CsvProvider(MARKET)
    assert provider.supports(series, SeriesKind.BAR) is False
    with pytest.raises(DataError, match="is not a series name"):
        provider.fetch(_request(series))
