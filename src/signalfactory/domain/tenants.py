"""Tenants: the installation's own tenant owns built-ins and what a single user creates."""

from __future__ import annotations

#: the tenant created by the first migration; CLI commands and schedules act as it by default
DEFAULT_TENANT_ID = 1
