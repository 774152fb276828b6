"""Read side of trading for the API and CLI: orders, positions and portfolio figures."""
