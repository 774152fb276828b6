"""Exchange adapters behind ``services.trading.ports.Exchange``: paper and ccxt."""
