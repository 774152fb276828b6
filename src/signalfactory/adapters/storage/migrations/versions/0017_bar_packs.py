"""Packed bars on PostgreSQL: ``bar_packs``, ``bar_packs_stale`` and the trigger on ``bars``.

One row per (timeframe, instrument, bucket of 366 bar lengths) holding those bars as one
record array (see ``adapters/storage/postgres_packs.py``), so a universe read moves a few
thousand values rather than a row per bar. Existing bars are packed here. A statement
trigger on ``bars`` marks the packs stale when bars are written around the bar store.

SQLite has nothing to add: its bars live in Arrow segment files, already columnar. The
revision still runs there (a no-op), so both databases stay on the same revision chain.

Revision ID: 0017
Revises: 0014
Create Date: 2026-12-04
"""

from alembic import op

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("""
        CREATE TABLE bar_packs (
            timeframe varchar(8) NOT NULL,
            instrument_id integer NOT NULL,
            bucket integer NOT NULL,
            bars integer NOT NULL,
            data bytea NOT NULL,
            CONSTRAINT pk_bar_packs PRIMARY KEY (timeframe, instrument_id, bucket))""")
    # Out of line and uncompressed: float bits do not compress, and pglz would cost CPU on
    # every read of every pack.
    op.execute("ALTER TABLE bar_packs ALTER COLUMN data SET STORAGE EXTERNAL")
    op.execute("""
        CREATE TABLE bar_packs_stale (
            stale boolean PRIMARY KEY DEFAULT true CHECK (stale),
            since timestamptz NOT NULL DEFAULT now())""")
    op.execute("""
        CREATE FUNCTION bars_mark_packs_stale() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF coalesce(current_setting('signalfactory.bars_packed', true), '') <> 'on' THEN
                INSERT INTO bar_packs_stale DEFAULT VALUES ON CONFLICT DO NOTHING;
            END IF;
            RETURN NULL;
        END $$""")
    op.execute("CREATE TRIGGER bars_packs_stale AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
               "ON bars FOR EACH STATEMENT EXECUTE FUNCTION bars_mark_packs_stale()")
    if bind.exec_driver_sql("SELECT EXISTS (SELECT 1 FROM bars)").scalar():
        # Imported here: numba and the COPY reader are only needed when there is data.
        from signalfactory.adapters.storage.postgres_bars import PostgresBarStore

        PostgresBarStore().repack(bind)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS bars_packs_stale ON bars")
    op.execute("DROP FUNCTION IF EXISTS bars_mark_packs_stale()")
    op.execute("DROP TABLE IF EXISTS bar_packs_stale")
    op.execute("DROP TABLE IF EXISTS bar_packs")
