"""the short code carried by the SMS advance notice (an inbound caller confirms with it)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 16:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sample_case") as batch:
        batch.add_column(sa.Column("sms_code", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sample_case") as batch:
        batch.drop_column("sms_code")
