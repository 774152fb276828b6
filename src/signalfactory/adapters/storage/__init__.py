"""Storage adapters: SQLAlchemy tables and engines, migrations, and the bar stores."""
