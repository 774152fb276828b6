"""Use cases over the ports: ingest, sample data, scans, backtests, deliveries, backups."""
