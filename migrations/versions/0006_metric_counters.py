"""metric counters (the /metrics totals when Redis is not configured)

Revision ID: 0006_metric_counters
Revises: 0005_claim_token
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006_metric_counters'
down_revision: str | None = '0005_claim_token'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('metric_counters',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_metric_counters'))
    )


def downgrade() -> None:
    op.drop_table('metric_counters')
