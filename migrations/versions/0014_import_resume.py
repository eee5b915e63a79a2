"""import resume: the claim and lease that let a stopped import be taken up where it stopped

Revision ID: 0014_import_resume
Revises: 0013_admin_indexes
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0014_import_resume'
down_revision: str | None = '0013_admin_indexes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lines_done', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('claim_token', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=200), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('lease_until', app.db.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('resumes', sa.Integer(), nullable=False,
                                      server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.drop_column('resumes')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('claim_token')
        batch_op.drop_column('lines_done')
