"""the short code carried by the SMS advance notice (an inbound caller confirms with it)

Revision ID: 0004_ivr_delivery (branch ivr-delivery; Alembic allows no "-")
Revises: 0003
Create Date: 2026-12-01 16:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_ivr_delivery"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sample_case") as batch:
        batch.add_column(sa.Column("sms_code", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sample_case") as batch:
        batch.drop_column("sms_code")
