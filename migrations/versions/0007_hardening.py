"""hardening: revocable issue preview links

Revision ID: 0007_hardening
Revises: 0006_metric_counters
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007_hardening'
down_revision: str | None = '0006_metric_counters'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Preview keys carry the epoch; bumping it revokes every key given out before.
    with op.batch_alter_table('issues') as batch:
        batch.add_column(sa.Column('preview_epoch', sa.Integer(), nullable=False,
                                   server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('issues') as batch:
        batch.drop_column('preview_epoch')
