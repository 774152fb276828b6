"""Prometheus metrics. Names and labels are a contract with deploy/prometheus and grafana.

Label cardinality is bounded: routes are templates, never raw paths; no symbol or tenant
labels on high-volume series; strategies are labelled by name (operators keep them few).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "HTTP request latency by route template",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
READY = Gauge("signalfactory_ready", "1 when the last readiness check passed, else 0")
JOBS_QUEUED = Gauge("signalfactory_jobs_queued", "Jobs waiting to run", ["kind"])
JOBS_RUNNING = Gauge("signalfactory_jobs_running", "Jobs running now")
JOBS_TOTAL = Counter("signalfactory_jobs_total", "Jobs finished", ["kind", "status"])
JOB_DURATION = Histogram("signalfactory_job_duration_seconds", "Job run time", ["kind"],
                         buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600))
DEAD_LETTER = Gauge("signalfactory_dead_letter_jobs", "Jobs moved to the dead-letter state")
JOB_WORKER_LOSSES = Counter("signalfactory_job_worker_losses_total",
                            "Job runs lost with their worker (its lease expired): killed, out "
                            "of memory, or its node gone", ["kind"])
BACKTEST_DURATION = Histogram("backtest_duration_seconds", "Backtest run time",
                              buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300))
LOGIC_EXECUTIONS = Counter("logic_executions_total", "Strategy evaluations",
                           ["strategy", "status"])
SANDBOX_RUNS = Counter("signalfactory_sandbox_runs_total",
                       "Calls into the strategy sandbox (uploaded Python strategies), by "
                       "outcome and the limit that stopped a failed one",
                       ["outcome", "limit"])
SANDBOX_RUN_SECONDS = Histogram("signalfactory_sandbox_run_seconds",
                                "Sandboxed strategy calls end to end (bars in, result checked)",
                                buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                         10, 30, 60))
SIGNALS_PRODUCED = Counter("signalfactory_signals_produced_total", "New signals stored",
                           ["strategy"])
SIGNAL_LATENCY = Histogram("signalfactory_signal_latency_seconds",
                           "From bar arrival to signal publish",
                           buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5))
MARKET_DATA_LAST_BAR = Gauge("signalfactory_market_data_last_bar_timestamp_seconds",
                             "Time of the newest stored bar", ["source", "timeframe"])
MARKET_DATA_MAX_STALENESS = Gauge("signalfactory_market_data_max_staleness_seconds",
                                  "Allowed age of the newest bar before data counts as stale",
                                  ["source", "timeframe"])
DB_CONNECTIONS_IN_USE = Gauge("signalfactory_db_connections_in_use",
                              "Database connections checked out of the pool")
DB_CONNECTIONS_MAX = Gauge("signalfactory_db_connections_max",
                           "Pool size plus overflow: the most connections this process opens")

DATABASE_SIZE = Gauge("signalfactory_database_size_bytes",
                      "Size of the database: its files on SQLite, pg_database_size on "
                      "PostgreSQL (read at scrape)")
DATABASE_SIZE_LIMIT = Gauge("signalfactory_database_size_limit_bytes",
                            "Configured size the database must stay under "
                            "(SIGNALFACTORY_DATABASE_SIZE_LIMIT_BYTES; absent when unset)")

BACKUP_LAST_SUCCESS = Gauge(
    "backup_last_success_timestamp_seconds",
    "Unix time at which the newest successful backup's snapshot was taken (0: never)")

BACKUP_SIZE = Gauge("signalfactory_backup_size_bytes",
                    "Stored size of the newest successful backup, all parts")

BACKUP_RPO = Gauge("signalfactory_backup_rpo_seconds",
                   "Configured recovery point objective: the interval between backups")

STREAM_CONNECTIONS = Gauge("signalfactory_stream_connections",
                           "Open live stream connections", ["kind"])

STREAM_DISCONNECTS = Counter("signalfactory_stream_disconnects_total",
                             "Live stream connections closed by the server", ["reason"])

STREAM_MESSAGES = Counter("signalfactory_stream_messages_total",
                          "Stream messages handed to connections: 'prepared' (one frame "
                          "written for all) or 'queued' (the connection's own writer)",
                          ["path"])

STREAM_EVENTS = Counter("signalfactory_stream_events_total",
                        "Signals published to the live stream, by how they arrived", ["via"])

API_REFUSALS = Counter("signalfactory_api_refusals_total",
                       "API requests refused before doing work, by reason", ["reason"])

#: Refusals by who was refused: the tenant's name and the key's public prefix, or "-" while no
#: key is known (none sent, unknown, revoked). Operators issue the keys, so the label set is
#: bounded by the keys that exist; a presented but unknown key never becomes a label.
API_REFUSALS_BY_KEY = Counter("signalfactory_api_refusals_by_key_total",
                              "API requests refused, by tenant and key prefix ('-': no known "
                              "key)", ["tenant", "key"])


def count_refusal(reason: str, tenant: str | None = None, key: str | None = None) -> None:
    """Count one refused request by reason and by tenant and key (the intrusion signal)."""
    API_REFUSALS.labels(reason).inc()
    API_REFUSALS_BY_KEY.labels(tenant or "-", key or "-").inc()

API_SHED = Counter("signalfactory_api_shed_total",
                   "HTTP requests answered 503 at once because the process already had its "
                   "limit of requests in flight (SIGNALFACTORY_API_MAX_IN_FLIGHT)")

REPLICA_UP = Gauge("signalfactory_read_replica_up",
                   "1 while the read replica answers, 0 while reads fail over to the primary")

READ_ONLY = Gauge("signalfactory_read_only",
                  "1 while this process refuses writes (primary unreachable or operator's "
                  "switch), 0 otherwise", multiprocess_mode="max")

WRITES_REFUSED_READ_ONLY = Counter("signalfactory_writes_refused_read_only_total",
                                   "Writes refused with 503 because the platform is read-only")

READ_FAILOVERS = Counter("signalfactory_read_failovers_total",
                         "Read connections opened on the primary because the replica was down")

CACHE_REQUESTS = Counter("signalfactory_cache_requests_total",
                         "Hot-read cache look-ups by namespace and result (hit, miss, error)",
                         ["namespace", "result"])

# -- delivery: names are a contract with deploy/prometheus/rules.yml and the Grafana dashboard
DELIVERIES = Counter("deliveries_total", "Delivery attempts by channel kind and outcome "
                     "(delivered, retry, dead, suppressed)", ["channel", "outcome"])
DELIVERY_ATTEMPT_DURATION = Histogram(
    "delivery_attempt_duration_seconds", "Time one delivery attempt took", ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
DELIVERY_LAG = Histogram(
    "delivery_lag_seconds", "From the outbox row's commit to its successful delivery",
    ["priority"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600))
DELIVERY_QUEUE_DEPTH = Gauge("signalfactory_delivery_queue_depth",
                             "Outbox rows waiting to be sent, by priority", ["priority"])
DELIVERY_DEAD_LETTER = Gauge("signalfactory_delivery_dead_letter",
                             "Outbox rows in the dead-letter queue")

# -- trading: names are a contract with the trading alert rules and Grafana dashboard ------
TRADING_ORDERS = Counter(
    "signalfactory_trading_orders_total",
    "Orders by account kind (paper, ccxt) and outcome: filled, open, partially_filled "
    "(acknowledged), rejected (by the exchange), refused (by risk or capital, never sent), "
    "unknown (no answer: left pending for reconciliation), cancelled, expired, resent",
    ["kind", "outcome"])
TRADING_ORDER_LATENCY = Histogram(
    "signalfactory_trading_order_seconds",
    "Order round trip: from the decision to its acknowledgement stored (risk, pending row, "
    "exchange, ack)", ["kind"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5))
TRADING_POSITIONS = Gauge("signalfactory_trading_open_positions",
                          "Open positions per bot", ["bot"])
TRADING_EXPOSURE = Gauge("signalfactory_trading_exposure",
                         "Value of a bot's open positions at their latest marks (quote currency)",
                         ["bot"])
TRADING_EQUITY = Gauge("signalfactory_trading_equity",
                       "A bot's equity at its latest mark (quote currency)", ["bot"])
TRADING_PNL = Gauge("signalfactory_trading_pnl",
                    "A bot's PnL at its latest mark, by kind: realised, unrealised, daily",
                    ["bot", "kind"])
TRADING_DAILY_LOSS_RATIO = Gauge(
    "signalfactory_trading_daily_loss_ratio",
    "Today's loss divided by the daily loss limit, per scope with a limit (alert at 0.8)",
    ["scope", "scope_id"])
TRADING_STATE = Gauge("signalfactory_trading_state",
                      "Trading state a bot trades under: 0 active, 1 reducing, 2 halted",
                      ["bot"])
TRADING_KILL_SWITCH = Gauge("signalfactory_trading_kill_switch_engaged",
                            "1 while a kill switch is engaged (2 when re-armed, not resumed)",
                            ["scope", "scope_id"])
TRADING_RECONCILIATION_MISMATCHES = Counter(
    "signalfactory_trading_reconciliation_mismatches_total",
    "Differences reconciliation found between the exchange and the database, by kind: "
    "balance, order (an order changed state without us), fill (a trade we had not stored)",
    ["kind"])
TRADING_RECONCILIATIONS = Counter("signalfactory_trading_reconciliations_total",
                                  "Reconciliation runs by outcome (ok, mismatch, failed)",
                                  ["outcome"])
TRADING_READ_ONLY = Gauge("signalfactory_trading_read_only",
                          "1 while this process trades read-only (its database is unreachable)")
# -- collectors (labelled by source name: operators keep sources few) ------------------------
COLLECTOR_RUNS = Counter("signalfactory_collector_runs_total",
                         "Collector runs by source and outcome (succeeded, failed, skipped)",
                         ["source", "outcome"])
COLLECTOR_BARS = Counter("signalfactory_collector_bars_total", "Bars a collector stored",
                         ["source"])
COLLECTOR_RETRIES = Counter("signalfactory_collector_retries_total",
                            "Source requests retried after a temporary failure", ["source"])
COLLECTOR_BACKFILLED = Counter("signalfactory_collector_backfilled_bars_total",
                               "Bars found by asking a source again for a hole", ["source"])
COLLECTOR_NO_TRADE_GAPS = Counter("signalfactory_collector_no_trade_gaps_total",
                                  "Periods a source twice answered without bars", ["source"])
COLLECTOR_BREAKER_OPEN = Gauge("signalfactory_collector_breaker_open",
                               "1 while a source's circuit breaker refuses runs (open or "
                               "half-open), else 0", ["source"])
COLLECTOR_LAST_SUCCESS = Gauge("signalfactory_collector_last_success_timestamp_seconds",
                               "When a source's last run succeeded", ["source"])

# Exchange connector (adapters/exchanges/ccxt_exchange.py). ``kind``: rate_limited, timeout,
# network, unavailable, rejected, auth, other; ``endpoint``: the unified method (create_order...).
EXCHANGE_ERRORS = Counter("signalfactory_exchange_errors_total",
                          "Errors of exchange requests by kind", ["exchange", "kind"])
EXCHANGE_REQUEST_SECONDS = Histogram(
    "signalfactory_exchange_request_seconds", "Exchange request latency, one attempt",
    ["exchange", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))

# -- anomaly scan (ops/anomaly.py): robust seasonal z-score of key figures; alert above 5 ----
ANOMALY_SCORE = Gauge("signalfactory_anomaly_score",
                      "Robust z-score of a key figure's last complete hour against the same "
                      "hour-of-week in earlier weeks (median and MAD); anomalous above 5",
                      ["figure", "series"], multiprocess_mode="max")
