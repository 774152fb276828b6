"""Operations: logging, metrics, health, backups, archives, retention."""
