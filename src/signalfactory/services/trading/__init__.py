"""Trading use cases: accounts, bots, the order path, risk, reconciliation and reports."""
