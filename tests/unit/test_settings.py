"""Settings: defaults, secrets from *_FILE, and secrets refused in config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from signalfactory.domain.errors import BadInputError
from signalfactory.settings import load_settings


def test_defaults_point_at_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALFACTORY_HOME", str(tmp_path))
    monkeypatch.delenv("SIGNALFACTORY_DATABASE_URL", raising=False)
    s = load_settings()
    assert s.resolved_database_url == f"sqlite:///{(tmp_path / 'signalfactory.db').resolve()}"
    assert s.resolved_bar_store == "columnar"


def test_postgres_url_selects_sql_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALFACTORY_DATABASE_URL", "postgresql://u@127.0.0.1/db")
    assert load_settings().resolved_bar_store == "sql"


def test_secret_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cr3t-value\n")
    monkeypatch.setenv("SIGNALFACTORY_BACKUP_KEY_FILE", str(secret))
    s = load_settings()
    assert s.backup_key is not None
    assert s.backup_key.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t" not in repr(s)


def test_unreadable_secret_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALFACTORY_BACKUP_KEY_FILE", "/nonexistent/key")
    with pytest.raises(BadInputError, match="SIGNALFACTORY_BACKUP_KEY_FILE"):
        load_settings()


def test_secret_in_config_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "sf.toml"
    cfg.write_text('[signalfactory]\nport = 9000\nbackup_key = "oops"\n')
    with pytest.raises(BadInputError) as info:
        load_settings(config_file=cfg)
    message = str(info.value)
    assert "backup_key" in message and "SIGNALFACTORY_BACKUP_KEY_FILE" in message
    assert "oops" not in message


def test_config_file_values_and_env_precedence(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "sf.toml"
    cfg.write_text('[signalfactory]\nport = 9000\nhost = "127.0.0.2"\n')
    monkeypatch.setenv("SIGNALFACTORY_PORT", "9100")
    s = load_settings(config_file=cfg)
    assert s.port == 9100 and s.host == "127.0.0.2"


def test_database_password_from_file_goes_into_the_url(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from signalfactory.bootstrap import with_password

    secret = tmp_path / "pw"
    secret.write_text("pa55word\n")
    monkeypatch.setenv("SIGNALFACTORY_DATABASE_PASSWORD_FILE", str(secret))
    s = load_settings()
    url = with_password("postgresql+psycopg://sf@db:5432/sf", s)
    assert url == "postgresql+psycopg://sf:pa55word@db:5432/sf"
    assert with_password("postgresql+psycopg://sf:other@db/sf", s).endswith("sf:other@db/sf")


def test_backup_rpo_becomes_a_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    from signalfactory.settings import rpo_cron

    assert rpo_cron(300) == "*/5 * * * *"
    assert rpo_cron(7200) == "0 */2 * * *"
    monkeypatch.setenv("SIGNALFACTORY_BACKUP_DEST", "/var/backups/sf")
    monkeypatch.setenv("SIGNALFACTORY_BACKUP_RPO_SECONDS", "300")
    entries = {e.name: e for e in load_settings().schedules}
    assert entries["backup"].cron == "*/5 * * * *" and entries["backup"].kind == "backup"
    assert entries["retention"].kind == "retention"
    monkeypatch.setenv("SIGNALFACTORY_RETENTION_CRON", "")
    assert "retention" not in {e.name for e in load_settings().schedules}


def test_default_cron_expressions_are_valid_and_bad_ones_still_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``*_cron`` defaults skip croniter at load (``settings._VALID_CRONS``): croniter
    must accept each of them, and an expression set in the environment is still checked."""
    from croniter import croniter

    from signalfactory.settings import Settings

    defaults = {name: f.default for name, f in Settings.model_fields.items()
                if name.endswith("_cron") and isinstance(f.default, str)}
    assert len(defaults) >= 4
    for name, cron in defaults.items():
        assert croniter.is_valid(cron) and len(cron.split()) == 5, name
    monkeypatch.setenv("SIGNALFACTORY_RETENTION_CRON", "61 3 * * *")
    with pytest.raises(ValueError, match="is not a 5-field cron expression"):
        load_settings()
    monkeypatch.setenv("SIGNALFACTORY_RETENTION_CRON", " 17  4 * * * ")
    entries = {e.name: e for e in load_settings().schedules}
    assert entries["retention"].cron == "17 4 * * *"
