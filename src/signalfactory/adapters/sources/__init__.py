"""Market-data sources: bar files (CSV, Parquet) read for ingest, and sources collectors
page through (synthetic data now; exchanges and vendors later, as adapters of the same port)."""
