"""admin indexes: growth by confirmation time, substring search, counts kept by triggers

Revision ID: 0013_admin_indexes
Revises: 0012_import_jobs
Create Date: 2026-11-30 14:10:00

- subscriptions (newsletter_id, status, confirmed_at) replaces (newsletter_id, status): the
  dashboard's "new in 30 days" reads a short range of it instead of every active reader.
- bounces (kind, received_at): the dashboard's policy rejections of the last 30 days.
- On PostgreSQL, trigram indexes (pg_trgm) on subscribers' address and name, so a search for
  part of either reads the matching rows instead of the whole list. SQLite has no such index
  and keeps scanning: it serves small lists (so does PostgreSQL without the contrib package).
- status_tallies, written by triggers on subscriptions and deliveries in the same transaction
  as every change, so counts by status (the dashboard, a send's progress) sum a few rows
  instead of scanning a million (see app/ops/tallies.py). PostgreSQL uses statement triggers
  (one row per statement and status); SQLite row triggers. A later migration that makes SQLite
  copy one of these tables (batch mode) must create its triggers again: `create_triggers`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013_admin_indexes'
down_revision: str | None = '0012_import_jobs'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each counted table with the column that owns its rows.
COUNTED = {'subscriptions': 'newsletter_id', 'deliveries': 'send_id'}

POSTGRES_FUNCTION = """
CREATE FUNCTION tally_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO status_tallies (kind, owner_id, status, n)
    SELECT '{table}', {owner}, status, count(*) FROM new_rows GROUP BY {owner}, status;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO status_tallies (kind, owner_id, status, n)
    SELECT '{table}', {owner}, status, -count(*) FROM old_rows GROUP BY {owner}, status;
  ELSE
    INSERT INTO status_tallies (kind, owner_id, status, n)
    SELECT '{table}', owner_id, status, sum(n) FROM (
      SELECT {owner} AS owner_id, status, 1 AS n FROM new_rows
      UNION ALL
      SELECT {owner}, status, -1 FROM old_rows) AS change
    GROUP BY owner_id, status HAVING sum(n) <> 0;
  END IF;
  RETURN NULL;
END $$
"""
POSTGRES_TRIGGERS = (
    "CREATE TRIGGER tally_{table}_insert AFTER INSERT ON {table} "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_{table}()",
    "CREATE TRIGGER tally_{table}_update AFTER UPDATE ON {table} "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION tally_{table}()",
    "CREATE TRIGGER tally_{table}_delete AFTER DELETE ON {table} "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_{table}()",
)
SQLITE_TRIGGERS = (
    "CREATE TRIGGER tally_{table}_insert AFTER INSERT ON {table} BEGIN "
    "INSERT INTO status_tallies (kind, owner_id, status, n) "
    "VALUES ('{table}', NEW.{owner}, NEW.status, 1); END",
    "CREATE TRIGGER tally_{table}_update AFTER UPDATE OF status, {owner} ON {table} "
    "WHEN OLD.status IS NOT NEW.status OR OLD.{owner} IS NOT NEW.{owner} BEGIN "
    "INSERT INTO status_tallies (kind, owner_id, status, n) "
    "VALUES ('{table}', OLD.{owner}, OLD.status, -1); "
    "INSERT INTO status_tallies (kind, owner_id, status, n) "
    "VALUES ('{table}', NEW.{owner}, NEW.status, 1); END",
    "CREATE TRIGGER tally_{table}_delete AFTER DELETE ON {table} BEGIN "
    "INSERT INTO status_tallies (kind, owner_id, status, n) "
    "VALUES ('{table}', OLD.{owner}, OLD.status, -1); END",
)


def _trigrams_available() -> bool:
    """pg_trgm ships with PostgreSQL's contrib (in Debian's and the official images); without
    it the search still works, by reading the list."""
    return op.get_bind().execute(sa.text(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).first() is not None


def create_triggers(table: str) -> None:
    """The triggers that tally `table` by status, then the tally of the rows already there
    (the triggers' lock on the table keeps writers out until the migration commits)."""
    owner = COUNTED[table]
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(POSTGRES_FUNCTION.format(table=table, owner=owner))
        statements = POSTGRES_TRIGGERS
    else:
        statements = SQLITE_TRIGGERS
    for statement in statements:
        op.execute(statement.format(table=table, owner=owner))
    op.execute(f"INSERT INTO status_tallies (kind, owner_id, status, n) "
               f"SELECT '{table}', {owner}, status, count(*) FROM {table} "
               f"GROUP BY {owner}, status")


def drop_triggers(table: str) -> None:
    for event in ('insert', 'update', 'delete'):
        op.execute(f'DROP TRIGGER IF EXISTS tally_{table}_{event}'
                   + (f' ON {table}' if op.get_bind().dialect.name == 'postgresql' else ''))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f'DROP FUNCTION IF EXISTS tally_{table}()')


def upgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index('ix_subscriptions_newsletter_status_confirmed',
                              ['newsletter_id', 'status', 'confirmed_at'], unique=False)
        batch_op.drop_index('ix_subscriptions_newsletter_status')
    with op.batch_alter_table('bounces', schema=None) as batch_op:
        batch_op.create_index('ix_bounces_kind_received', ['kind', 'received_at'], unique=False)
    if op.get_bind().dialect.name == 'postgresql' and _trigrams_available():
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        op.execute('CREATE INDEX ix_subscribers_email_key_trgm ON subscribers '
                   'USING gin (email_key gin_trgm_ops)')
        op.execute('CREATE INDEX ix_subscribers_name_trgm ON subscribers '
                   'USING gin (name gin_trgm_ops)')
    op.create_table('status_tallies',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('n', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_status_tallies'))
    )
    with op.batch_alter_table('status_tallies', schema=None) as batch_op:
        batch_op.create_index('ix_status_tallies_key', ['kind', 'owner_id', 'status'],
                              unique=False)
    for table in COUNTED:
        create_triggers(table)


def downgrade() -> None:
    for table in COUNTED:
        drop_triggers(table)
    op.drop_table('status_tallies')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX IF EXISTS ix_subscribers_name_trgm')
        op.execute('DROP INDEX IF EXISTS ix_subscribers_email_key_trgm')
    with op.batch_alter_table('bounces', schema=None) as batch_op:
        batch_op.drop_index('ix_bounces_kind_received')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index('ix_subscriptions_newsletter_status',
                              ['newsletter_id', 'status'], unique=False)
        batch_op.drop_index('ix_subscriptions_newsletter_status_confirmed')
