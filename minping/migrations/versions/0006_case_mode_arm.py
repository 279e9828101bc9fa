"""the arm of the embedded mode experiment on each released case (ivr_first / cati_first)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 18:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sample_case") as batch:
        batch.add_column(sa.Column("mode_arm", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sample_case") as batch:
        batch.drop_column("mode_arm")
