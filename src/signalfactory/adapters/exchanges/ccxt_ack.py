"""`CcxtAckExchange`: `CcxtExchange` keeping the fills an order's acknowledgement reports.

Binance acknowledges a market order with its fills (``newOrderRespType`` FULL, trade ids
included) and ccxt parses them into the order's ``trades``; keeping them on the order
(``ExchangeOrder.trades``) spares the order path a ``myTrades`` request (weight 20) per order.
When the ack's trades do not add up to what the order filled, none are kept and the order
path fetches them by trade id instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from signalfactory.adapters.exchanges.ccxt_exchange import CcxtExchange, _trade
from signalfactory.domain.trading.exchange import ExchangeOrder


class CcxtAckExchange(CcxtExchange):
    """See the module docstring."""

    def _order(self, raw: Mapping[str, Any], client_order_id: str | None) -> ExchangeOrder:
        order = super()._order(raw, client_order_id)
        trades = []
        for row in raw.get("trades") or ():
            if not row.get("id") or not row.get("amount") or not row.get("price"):
                continue  # an ack without trade ids: the order path fetches them instead
            trade = _trade({**row, "symbol": row.get("symbol") or order.symbol,
                            "side": row.get("side") or order.side,
                            "order": row.get("order") or order.exchange_order_id,
                            "timestamp": row.get("timestamp") or raw.get("timestamp")})
            trades.append(dataclasses.replace(trade, client_order_id=order.client_order_id))
        if not trades or abs(sum(t.amount for t in trades) - order.filled) > 1e-9 * max(
                1.0, order.filled):
            return order  # partial information: fetched by trade id instead
        return dataclasses.replace(order, trades=tuple(trades))
