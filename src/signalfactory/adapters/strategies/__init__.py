"""Loading trusted Python strategies from entry points, modules and files (importlib)."""
