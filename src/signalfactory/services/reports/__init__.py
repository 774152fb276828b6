"""Reports of trading: the daily report per tenant, stored and delivered."""
