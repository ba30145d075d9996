"""The typed settings: YAML defaults, environment overrides, clear errors."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from tiller.errors import ConfigError
from tiller.settings import DataSource, load_settings


def test_defaults_come_from_the_yaml_files() -> None:
    settings = load_settings()
    assert settings.symbols == ["GLD", "SPY", "QQQ", "BTC-USD"]
    assert settings.data_sources == [DataSource("synthetic")]
    assert settings.asset("GLD").max_weight == 0.50
    assert settings.asset("BTC-USD").calendar == "24/7"
    assert settings.asset("BTC-USD").stop_loss == 0.18
    assert settings.costs["crypto"].slippage == 0.0015
    assert settings.db_url.startswith("sqlite:///") and settings.db_url.endswith("var/tiller.db")
    assert settings.validation.severity["positive_prices"] == "blocking"


def test_extended_universe_has_the_fifteen_spec_assets() -> None:
    settings = load_settings(universe="extended")
    assert len(settings.symbols) == 15
    assert {"SLV", "XLK", "XLF", "XLE", "XLV", "TLT", "TIP", "EFA", "EEM", "DBC", "VNQ"} < set(
        settings.symbols
    )


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TILLER_HOME", str(tmp_path))
    monkeypatch.setenv("TILLER_UNIVERSE", "SPY, TLT")
    monkeypatch.setenv("TILLER_DATA_SOURCES", f"csv:{tmp_path},synthetic")
    monkeypatch.setenv("TILLER_HISTORY_START", "2020-01-02")
    monkeypatch.setenv("TILLER_VALIDATION__JUMP_THRESHOLD", "0.3")
    settings = load_settings()
    assert settings.home_dir == tmp_path.resolve()
    assert settings.db_url == f"sqlite:///{tmp_path.resolve() / 'tiller.db'}"
    assert settings.symbols == ["SPY", "TLT"]
    assert settings.data_sources == [DataSource("csv", tmp_path.resolve()), DataSource("synthetic")]
    assert settings.history_start == date(2020, 1, 2)
    assert settings.validation.jump_threshold == 0.3


def test_provider_keys_come_from_the_environment_and_stay_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "PKTESTKEY")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "very-secret")
    monkeypatch.setenv("POLYGON_API_KEY", "poly-secret")
    settings = load_settings()
    assert settings.alpaca_api_key is not None
    assert settings.alpaca_api_key.get_secret_value() == "PKTESTKEY"
    assert settings.massive_api_key is not None
    assert settings.massive_api_key.get_secret_value() == "poly-secret"
    shown = repr(settings) + str(settings.model_dump())
    assert "very-secret" not in shown and "poly-secret" not in shown


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("TILLER_UNIVERSE", "SPYX", ["TILLER_UNIVERSE", "SPYX", "core, extended"]),
        ("TILLER_UNIVERSE", "", ["TILLER_UNIVERSE", "empty universe"]),
        ("TILLER_DATA_SOURCES", "bloomberg", ["TILLER_DATA_SOURCES", "bloomberg", "yfinance"]),
        ("TILLER_DATA_SOURCES", "csv", ["TILLER_DATA_SOURCES", "csv:<dir>"]),
        ("TILLER_DATA_SOURCES", "synthetic,synthetic", ["TILLER_DATA_SOURCES", "twice"]),
        ("TILLER_HISTORY_START", "last year", ["TILLER_HISTORY_START", "date"]),
        ("TILLER_LOG_LEVEL", "LOUD", ["TILLER_LOG_LEVEL", "DEBUG"]),
        ("TILLER_VALIDATION__JUMP_THRESHOLD", "-1", ["TILLER_VALIDATION__JUMP_THRESHOLD", "> 0"]),
    ],
)
def test_a_bad_value_names_the_key_and_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    for part in expected:
        assert part in message.replace("greater than 0", "> 0")


def test_a_broken_config_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "tiller.yaml").write_text("home: [unclosed\n")
    monkeypatch.setenv("TILLER_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="tiller.yaml"):
        load_settings()
    monkeypatch.setenv("TILLER_CONFIG_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="TILLER_CONFIG_DIR"):
        load_settings()


def test_retries_are_bounded() -> None:
    with pytest.raises(
        ConfigError, match=r"TILLER_EXECUTION__MAX_RETRIES.*less than or equal to 10"
    ):
        load_settings(execution={"max_retries": 1000})


def test_a_profile_cannot_name_an_asset_that_reads_outside_the_data_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An asset key is a symbol: a profile defining ``../../etc/passwd`` would make the CSV
    provider read a file outside its folder."""
    profile = tmp_path / "evil.yaml"
    profile.write_text(
        "universe: SPY\n"
        "assets:\n"
        "  ../../etc/passwd: {asset_class: equity, max_weight: 0.1, stop_loss: 0.1}\n"
    )
    monkeypatch.setenv("TILLER_PROFILE", str(profile))
    with pytest.raises(ConfigError, match=r"asset '\.\./\.\./etc/passwd' is not a symbol"):
        load_settings()
