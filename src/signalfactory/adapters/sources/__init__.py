"""Market-data sources: files (CSV, Parquet), synthetic data, and later ccxt and yfinance."""
