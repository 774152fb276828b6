"""Exchange adapters of ``services.trading.ports.Exchange``: paper (in memory, the backtest's
fill model) and ccxt."""
