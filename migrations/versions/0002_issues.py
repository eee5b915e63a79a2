"""issues: numbered issues of a newsletter, written as data

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.db

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('issues',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('newsletter_id', sa.Integer(), nullable=False),
    sa.Column('volume', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=250), nullable=True),
    sa.Column('preheader', sa.String(length=250), nullable=False, server_default=''),
    sa.Column('hero_image', JSON, nullable=True),
    sa.Column('stories', JSON, nullable=False),
    sa.Column('links', JSON, nullable=False),
    sa.Column('footer', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False, server_default='draft'),
    sa.Column('sent_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False,
              server_default=sa.text('CURRENT_TIMESTAMP')),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False,
              server_default=sa.text('CURRENT_TIMESTAMP')),
    sa.CheckConstraint("status IN ('draft', 'scheduled', 'sending', 'sent')", name=op.f('ck_issues_status')),
    sa.ForeignKeyConstraint(['newsletter_id'], ['newsletters.id'], name=op.f('fk_issues_newsletter_id_newsletters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_issues')),
    sa.UniqueConstraint('newsletter_id', 'volume', 'number', name=op.f('uq_issues_newsletter_id'))
    )
    with op.batch_alter_table('issues', schema=None) as batch_op:
        batch_op.create_index('ix_issues_newsletter_status_sent', ['newsletter_id', 'status', 'sent_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('issues', schema=None) as batch_op:
        batch_op.drop_index('ix_issues_newsletter_status_sent')

    op.drop_table('issues')
