"""The start-up migration check answers without Alembic and agrees with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from signalfactory.adapters.storage import migrate


def test_head_read_from_the_files_is_alembics_head() -> None:
    assert migrate.head_revision() == ScriptDirectory.from_config(
        migrate._config()).get_current_head()


def test_a_second_head_or_a_merge_is_left_to_alembic(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text('revision = "a"\ndown_revision = None\n')
    (tmp_path / "b.py").write_text('revision = "b"\ndown_revision = "a"\n')
    assert migrate._declared_head(tmp_path) == "b"
    (tmp_path / "c.py").write_text('revision = "c"\ndown_revision = "a"\n')
    assert migrate._declared_head(tmp_path) is None
    (tmp_path / "c.py").write_text('revision = "c"\ndown_revision = ("a", "b")\n')
    assert migrate._declared_head(tmp_path) is None


def test_ensure_at_head_migrates_once_then_only_reads(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert migrate.current_revision(engine) is None
    assert not migrate.is_at_head(engine)
    migrate.ensure_at_head(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    migrate.downgrade(engine, "0001")
    assert migrate.current_revision(engine) == "0001"
    assert not migrate.is_at_head(engine)
    migrate.ensure_at_head(engine)
    assert migrate.is_at_head(engine)
    engine.dispose()


def test_checking_a_migrated_database_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = sa.create_engine(url)
    migrate.ensure_at_head(engine)
    engine.dispose()
    probe = ("import sys, sqlalchemy as sa\n"
             "from signalfactory.adapters.storage import migrate\n"
             f"migrate.ensure_at_head(sa.create_engine({url!r}))\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]"
