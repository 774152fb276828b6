"""Composition root: settings -> engines -> stores -> services. Nothing happens at import."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from signalfactory.adapters.storage import migrate
from signalfactory.adapters.storage.bar_store import BarStore
from signalfactory.adapters.storage.columnar import ColumnarBarStore
from signalfactory.adapters.storage.db import create_db_engine
from signalfactory.domain.errors import BadInputError
from signalfactory.settings import Settings, load_settings


def make_bar_store(settings: Settings) -> BarStore:
    kind = settings.resolved_bar_store
    if kind == "columnar":
        return ColumnarBarStore(settings.data_dir / "bars")
    if settings.is_sqlite:
        raise BadInputError("SIGNALFACTORY_BAR_STORE=sql needs PostgreSQL; on SQLite use the "
                            "default columnar store (unset SIGNALFACTORY_BAR_STORE)")
    from signalfactory.adapters.storage.postgres_bars import PostgresBarStore

    return PostgresBarStore()


@dataclass
class Platform:
    """Everything a command or request needs, built once from settings."""

    settings: Settings
    engine: Engine
    bars: BarStore
    read_engine: Engine | None = None
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def reader(self) -> Engine:
        return self.read_engine or self.engine

    def close(self) -> None:
        self.engine.dispose()
        if self.read_engine is not None:
            self.read_engine.dispose()


def with_password(url: str, settings: Settings) -> str:
    """Put SIGNALFACTORY_DATABASE_PASSWORD(_FILE) into a URL that carries no password."""
    from sqlalchemy.engine import make_url

    if settings.database_password is None:
        return url
    parsed = make_url(url)
    if parsed.password or parsed.get_backend_name() == "sqlite":
        return url
    return parsed.set(password=settings.database_password.get_secret_value()).render_as_string(
        hide_password=False)


def build_platform(settings: Settings | None = None, *, migrate_db: bool = False) -> Platform:
    settings = settings or load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(with_password(settings.resolved_database_url, settings))
    platform = Platform(settings=settings, engine=engine, bars=make_bar_store(settings))
    probes: dict[str, object] = {}
    if settings.database_read_url:
        from signalfactory.adapters.storage.read_replica import create_read_engine, replica_probe

        platform.read_engine, state = create_read_engine(
            with_password(settings.database_read_url, settings), engine)
        platform.extras["read_replica"] = state
        probes["read_replica"] = replica_probe(platform.read_engine, state)
    if settings.redis_url:
        from signalfactory.adapters.cache import cache_probe

        probes["cache"] = cache_probe(platform)
    if probes:
        platform.extras["readiness_probes"] = probes
    if migrate_db:
        migrate.upgrade(engine)
    return platform
