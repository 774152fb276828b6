"""Operations use cases: backups, archives, retention, data freshness (above services,
below bootstrap; they may work below the repositories with SQLAlchemy)."""
