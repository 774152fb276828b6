"""Trading records and rules, pure: orders and their ids, fills, positions, bots, accounts,
risk limits and the states a bot, a tenant or the whole platform can be in.

Exchanges (paper and ccxt) implement ``services.trading.ports.Exchange``; everything here is
plain data and arithmetic so the same rules run in backtests, paper and live trading:

- `risk`: pre-trade checks, loss limits confirmed on marks, the two-step kill switch;
- `capital`: the backtest's sizing on an exchange's grid, the cash ledger (reservations);
- `decisions`: the engine's decision rule, order intents, fills applied to positions;
- `paper_session`: a bot stepping through bars (the step the bot runner takes);
- `portfolio`: PnL, equity curves and their figures (the backtest's metrics), round trips;
- `costs`, `precision`, `quotes`: the cost model, the exchange grid, prices to fill at.
"""
