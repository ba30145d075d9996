"""Build the provider chain from settings (``TILLER_DATA_SOURCES``)."""

from __future__ import annotations

from tiller.data.base import DataProvider, SeriesKind
from tiller.data.chain import ProviderChain, breaker_for
from tiller.data.ingest import SeriesSpec
from tiller.errors import ConfigError
from tiller.settings import DataSource, Settings


def _secret(value: object, name: str, source: str) -> str:
    secret = getattr(value, "get_secret_value", lambda: None)()
    if not secret:
        raise ConfigError(
            f"{name} is not set: the {source} data source needs it "
            f"(set it in the environment, or remove {source} from TILLER_DATA_SOURCES)"
        )
    return str(secret)


def build_provider(source: DataSource, settings: Settings) -> DataProvider:
    """One provider instance for one configured source (SDKs are imported only when used)."""
    data = settings.data
    timeout = data.timeout_seconds
    if source.kind == "synthetic":
        from tiller.data.providers.synthetic import SyntheticProvider

        return SyntheticProvider(settings.synthetic_seed, settings.volatility_index)
    if source.kind == "csv":
        from tiller.data.providers.csv import CsvProvider, LongCsvProvider

        assert source.path is not None
        if source.path.is_file():
            return LongCsvProvider(source.path)
        return CsvProvider(source.path, data.csv_macro_dir)
    if source.kind == "yfinance":
        from tiller.data.providers.yahoo import YahooProvider

        return YahooProvider(base_url=data.yfinance_url, timeout=timeout)
    if source.kind == "massive":
        from tiller.data.providers.massive import MassiveProvider

        key = _secret(settings.massive_api_key, "MASSIVE_API_KEY", "massive")
        if data.massive_url:
            return MassiveProvider(key, base_url=data.massive_url, timeout=timeout)
        return MassiveProvider(key, timeout=timeout)
    if source.kind == "alpaca":
        from tiller.data.providers.alpaca_data import AlpacaDataProvider

        return AlpacaDataProvider(
            _secret(settings.alpaca_api_key, "ALPACA_API_KEY", "alpaca"),
            _secret(settings.alpaca_secret_key, "ALPACA_SECRET_KEY", "alpaca"),
            base_url=data.alpaca_data_url,
            timeout=timeout,
        )
    if source.kind == "fred":
        from tiller.data.providers.fred import FredProvider

        key = _secret(settings.fred_api_key, "FRED_API_KEY", "fred")
        return FredProvider(key, base_url=data.fred_url, timeout=timeout)
    raise ConfigError(f"TILLER_DATA_SOURCES: unknown data source {source.kind!r}")


def check_sources(settings: Settings) -> None:
    """What can be checked of ``TILLER_DATA_SOURCES`` without a network call or an SDK
    import: CSV folders exist, keyed sources have their keys.

    Raises
    ------
    ConfigError
        The first problem, naming the setting and what to do.
    """
    keys = {
        "massive": [("MASSIVE_API_KEY", settings.massive_api_key)],
        "alpaca": [
            ("ALPACA_API_KEY", settings.alpaca_api_key),
            ("ALPACA_SECRET_KEY", settings.alpaca_secret_key),
        ],
        "fred": [("FRED_API_KEY", settings.fred_api_key)],
    }
    for source in settings.data_sources:
        if source.kind == "csv" and (source.path is None or not source.path.exists()):
            raise ConfigError(
                f"TILLER_DATA_SOURCES: csv source {source.path} does not exist; give "
                "csv:<folder holding SYMBOL.csv files> or csv:<long-format file.csv[.gz]>"
            )
        for name, value in keys.get(source.kind, []):
            _secret(value, name, source.kind)


def build_chain(settings: Settings) -> ProviderChain:
    """The configured providers in order, each with its process-wide circuit breaker."""
    providers = [(str(s), build_provider(s, settings)) for s in settings.data_sources]
    breakers = {
        label: breaker_for(label, settings.data.failure_threshold, settings.data.cooldown_seconds)
        for label, _ in providers
    }
    return ProviderChain(providers, breakers)


def series_specs(settings: Settings) -> list[SeriesSpec]:
    """Every series the daily flow keeps current: the universe, the volatility index, macro."""
    specs = [SeriesSpec(s, SeriesKind.BAR, settings.calendar_of(s)) for s in settings.symbols]
    specs.append(SeriesSpec(settings.volatility_index, SeriesKind.BAR, "XNYS"))
    # Macro series feed reports and research; a source without them is not an error.
    specs += [SeriesSpec(m, SeriesKind.MACRO, required=False) for m in settings.macro_series]
    return specs
