"""The tamper-evident audit log: record entries, verify the chain, export it."""

from signalfactory.services.audit.log import record

__all__ = ["record"]
