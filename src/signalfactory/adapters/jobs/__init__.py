"""Jobs: the durable database-backed runner (default), Celery (at scale) and the scheduler."""
