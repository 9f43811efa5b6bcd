"""mdq: market-data quality checks (dbt) and flows (Prefect) for OHLCV candles in PostgreSQL."""

__version__ = "0.1.0"
