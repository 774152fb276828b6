"""The dashboard's navigation: sections of pages, each shown from a minimum role.

A page joins the menu by an entry here and a router in ``web/pages/``.
"""

from __future__ import annotations

from dataclasses import dataclass

from signalfactory.domain.accounts import Principal


@dataclass(frozen=True)
class NavItem:
    key: str  # what a page passes as ``active``
    label: str
    href: str
    min_role: str = "viewer"


@dataclass(frozen=True)
class NavSection:
    label: str
    items: tuple[NavItem, ...]


NAVIGATION: tuple[NavSection, ...] = (
    NavSection("Markets", (
        NavItem("overview", "Overview", "/"),
        NavItem("signals", "Signals", "/signals"),
        NavItem("scans", "Scans", "/scans"),
    )),
    NavSection("Research", (
        NavItem("strategies", "Strategies", "/strategies"),
        NavItem("backtests", "Backtests", "/backtests"),
    )),
    # bots, orders, positions, PnL charts and the kill switch (web/pages/trading.py)
    NavSection("Trading", (NavItem("trading", "Trading", "/trading"),)),
    NavSection("Operations", (
        NavItem("jobs", "Jobs", "/jobs"),
        NavItem("deliveries", "Deliveries", "/deliveries"),
        NavItem("admin", "Admin", "/admin", min_role="admin"),
    )),
)


def menu_for(principal: Principal) -> list[NavSection]:
    """The sections and items this principal may open (a viewer sees no Admin)."""
    sections = []
    for section in NAVIGATION:
        items = tuple(i for i in section.items if principal.has_role(i.min_role))
        if items:
            sections.append(NavSection(section.label, items))
    return sections
