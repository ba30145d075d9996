"""The store on SQLite and PostgreSQL: migrations, upserts, pragmas, bad URLs."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

import models
from tiller.errors import StoreError
from tiller.store.engine import connect, mask_url
from tiller.store.migrate import current_revision, head_revision, upgrade
from tiller.store.repo import BARS, Store
from tiller.store.schema import ddl

REPO = Path(__file__).resolve().parents[1]


def _bars(closes: list[float], start: str = "2024-01-02") -> pd.DataFrame:
    dates = pd.bdate_range(start, periods=len(closes))
    return pd.DataFrame(
        {
            "date": dates,
            "open": closes,
            "high": [c + 1 for c in closes],
            "low": [c - 1 for c in closes],
            "close": closes,
            "adj_close": closes,
            "volume": [1000.0] * len(closes),
        }
    )


def test_migrations_reach_head_and_match_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = connect(db_url)
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision()
    assert upgrade(engine) == head_revision()  # idempotent: an existing database stays
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), models.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    engine.dispose()


def test_an_older_database_upgrades(db_url: str) -> None:
    engine = connect(db_url)
    upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO flow_runs (id, flow, as_of, status, force, started_at, stages) "
                "VALUES ('r1', 'daily-rebalance', '2024-01-02', 'completed', false, "
                "'2024-01-02 21:00:00+00', '{}')"
            )
        )
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    store = Store(engine)
    assert store.run("r1")["status"] == "completed"  # type: ignore[index]
    engine.dispose()


def test_upsert_writes_each_bar_once_and_updates_revisions(db_url: str) -> None:
    store = Store.open(db_url)
    with store.transaction() as tx:
        assert store.upsert_bars(tx, "SPY", _bars([100.0, 101.0, 102.0]), "csv:/x") == 3
    with store.transaction() as tx:  # overlapping window with a revised close
        store.upsert_bars(tx, "SPY", _bars([101.5, 102.0], start="2024-01-03"), "yfinance")
    bars = store.load_bars(["SPY"])
    assert len(bars) == 3
    assert bars["close"].tolist() == [100.0, 101.5, 102.0]
    assert bars["source"].tolist() == ["csv:/x", "yfinance", "yfinance"]
    assert store.last_bar_dates() == {"SPY": date(2024, 1, 4)}
    assert store.last_bar_dates(date(2024, 1, 3)) == {"SPY": date(2024, 1, 3)}
    store.close()


def test_a_failed_transaction_leaves_nothing(db_url: str) -> None:
    store = Store.open(db_url)
    with pytest.raises(RuntimeError), store.transaction() as tx:
        store.upsert_bars(tx, "SPY", _bars([100.0, 101.0]), "synthetic")
        raise RuntimeError("stage crashed")
    assert store.load_bars(["SPY"]).empty
    store.close()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url: str) -> None:
    store = Store.open(sqlite_url)
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    with pytest.raises(Exception, match="FOREIGN KEY"), store.transaction() as tx:
        tx.execute(
            text(
                "INSERT INTO ingest_log (run_id, as_of, series, kind, status, rows, attempts) "
                "VALUES ('no-such-run', '2024-01-02', 'SPY', 'bar', 'ingested', 0, '')"
            )
        )
    store.close()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://u:hunter2@localhost/db", ["unsupported database 'mysql'", "postgresql+psycopg"]),
        ("not a url", ["TILLER_DATABASE_URL", "sqlite:///"]),
        ("postgresql+asyncpg://u:hunter2@127.0.0.1/db", ["driver 'asyncpg'"]),
        ("postgresql://u:hunter2@127.0.0.1:1/db", ["cannot connect", "TILLER_DATABASE_URL"]),
    ],
)
def test_a_bad_database_url_is_a_clear_error_without_the_password(
    url: str, words: list[str]
) -> None:
    with pytest.raises(StoreError) as error:
        connect(url)
    for word in words:
        assert word in str(error.value)
    assert "hunter2" not in str(error.value)


def test_mask_url_hides_the_password() -> None:
    assert mask_url("postgresql+psycopg://tiller:s3cret@db:5432/x") == (
        "postgresql+psycopg://tiller:***@db:5432/x"
    )


def test_schema_sql_is_the_generated_ddl() -> None:
    assert (REPO / "sql" / "schema.sql").read_text() == ddl("sqlite"), (
        "sql/schema.sql is out of date: run `uv run tiller db schema > sql/schema.sql`"
    )
    assert (REPO / "sql" / "schema.postgresql.sql").read_text() == ddl("postgresql")


def test_bars_table_primary_key_is_symbol_and_date() -> None:
    assert [c.name for c in BARS.primary_key.columns] == ["symbol", "date"]
