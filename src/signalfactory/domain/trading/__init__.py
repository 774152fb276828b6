"""Trading records and rules, pure: orders and their ids, fills, positions, bots, accounts,
risk limits and the states a bot, a tenant or the whole platform can be in.

Exchanges (paper and ccxt) implement ``services.trading.ports.Exchange``; everything here is
plain data and arithmetic so the same rules run in backtests, paper and live trading.
"""
