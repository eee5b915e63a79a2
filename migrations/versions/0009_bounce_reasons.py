"""bounce reasons: why each bounce happened, in the fixed vocabulary of app.bounces.reasons

Revision ID: 0009_bounce_reasons
Revises: 0008_messages
Create Date: 2026-11-30 10:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009_bounce_reasons'
down_revision: str | None = '0008_messages'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('bounces', schema=None) as batch_op:
        # Rows recorded before reasons existed say "undefined": nothing was decided for them.
        batch_op.add_column(sa.Column('reason', sa.String(length=16), nullable=False,
                                      server_default='undefined'))
        batch_op.create_index('ix_bounces_send_reason', ['send_id', 'reason'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('bounces', schema=None) as batch_op:
        batch_op.drop_index('ix_bounces_send_reason')
        batch_op.drop_column('reason')
