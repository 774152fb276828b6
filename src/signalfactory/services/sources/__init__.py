"""Market-data sources and their collectors: stored source records, scheduled collector runs
with retries, a shared circuit breaker and the dead letter (issue 12)."""
