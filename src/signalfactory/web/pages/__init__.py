"""Dashboard pages, one router per section (see web/navigation.py)."""
