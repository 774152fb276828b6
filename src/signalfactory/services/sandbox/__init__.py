"""Uploaded Python strategies: their upload checks, their runs in the sandbox, the audit trail."""
