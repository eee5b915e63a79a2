"""editions: newsletter feeds, feed items used, editor alerts

Revision ID: 0010_editions
Revises: 0009_bounce_reasons
Create Date: 2026-11-30 10:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db


revision: str = '0010_editions'
down_revision: str | None = '0009_bounce_reasons'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('newsletters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('feed_url', sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column('feed_drafts', sa.String(length=16), nullable=False,
                                      server_default='off'))
        batch_op.add_column(sa.Column('feed_draft_hours_before', sa.Integer(), nullable=False,
                                      server_default='48'))
        batch_op.add_column(sa.Column('editor_emails', sa.JSON(), nullable=False,
                                      server_default='[]'))
        batch_op.add_column(sa.Column('feed_drafted_slot', app.db.UTCDateTime(timezone=True),
                                      nullable=True))

    op.create_table('feed_item_uses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('newsletter_id', sa.Integer(), nullable=False),
    sa.Column('issue_id', sa.Integer(), nullable=False),
    sa.Column('item_key', sa.String(length=64), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False,
              server_default=sa.text('CURRENT_TIMESTAMP')),
    sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], name=op.f('fk_feed_item_uses_issue_id_issues'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['newsletter_id'], ['newsletters.id'], name=op.f('fk_feed_item_uses_newsletter_id_newsletters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feed_item_uses')),
    sa.UniqueConstraint('newsletter_id', 'item_key', name=op.f('uq_feed_item_uses_newsletter_id'))
    )
    with op.batch_alter_table('feed_item_uses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_feed_item_uses_issue_id'), ['issue_id'], unique=False)

    op.create_table('edition_alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('newsletter_id', sa.Integer(), nullable=False),
    sa.Column('issue_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False,
              server_default=sa.text('CURRENT_TIMESTAMP')),
    sa.Column('mailed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('dismissed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], name=op.f('fk_edition_alerts_issue_id_issues'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['newsletter_id'], ['newsletters.id'], name=op.f('fk_edition_alerts_newsletter_id_newsletters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_edition_alerts'))
    )
    with op.batch_alter_table('edition_alerts', schema=None) as batch_op:
        batch_op.create_index('ix_edition_alerts_newsletter_created', ['newsletter_id', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('edition_alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_edition_alerts_newsletter_created')
    op.drop_table('edition_alerts')
    with op.batch_alter_table('feed_item_uses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feed_item_uses_issue_id'))
    op.drop_table('feed_item_uses')
    with op.batch_alter_table('newsletters', schema=None) as batch_op:
        batch_op.drop_column('feed_drafted_slot')
        batch_op.drop_column('editor_emails')
        batch_op.drop_column('feed_draft_hours_before')
        batch_op.drop_column('feed_drafts')
        batch_op.drop_column('feed_url')
