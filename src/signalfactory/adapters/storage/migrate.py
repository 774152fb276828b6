"""Schema migrations through Alembic, driven from our own code so the wheel carries them.

Alembic (about 150 ms to import) is loaded only to change the schema or when the revision
files are ambiguous: the question every command and worker asks at start — "is the database
at head?" — is answered by reading ``alembic_version`` with SQLAlchemy and the revision ids
from the migration files' ``revision = "..."`` lines.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)
_QUOTED = re.compile(r"""^["']([^"']+)["']$""")


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _declared_head(versions: Path) -> str | None:
    """The one revision no other revision names as its parent, read from the files' text;
    None when that is not plain (no files, a merge tuple, several heads): Alembic decides."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        found = {m.group(1): m.group(2) for m in _ASSIGNMENT.finditer(text)}
        rev = _QUOTED.match(found.get("revision", ""))
        parent = found.get("down_revision", "None")
        if rev is None:
            return None
        revisions.add(rev.group(1))
        if parent != "None":
            quoted = _QUOTED.match(parent)
            if quoted is None:
                return None
            parents.add(quoted.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


@functools.cache
def head_revision() -> str | None:
    """The newest revision the installed package carries. Cached: the migration files do not
    change while a process runs (every /readyz and overview asks)."""
    declared = _declared_head(MIGRATIONS_DIR / "versions")
    if declared is not None:
        return declared
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision stored in the database, None when it was never migrated."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(VERSION_TABLE):
            return None
        rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:  # branches: let Alembic report it as it always did
        from alembic.runtime.migration import MigrationContext

        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    return str(rows[0]) if rows else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def ensure_at_head(engine: Engine) -> None:
    """Migrate to head unless the database is there already (then Alembic is not loaded)."""
    if not is_at_head(engine):
        upgrade(engine)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def is_at_head(engine: Engine) -> bool:
    head = head_revision()
    return head is not None and current_revision(engine) == head
