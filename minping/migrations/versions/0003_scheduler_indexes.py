"""indexes for the CATI scheduler's next-case pick

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

IN_FIELD = "release_state = 'released' AND state IN ('pending', 'in_field', 'handoff_cati')"
URGENT = "state = 'handoff_cati' OR priority <> 0"


def _where(sql: str) -> dict:
    return {"postgresql_where": sa.text(sql), "sqlite_where": sa.text(sql)}


def upgrade() -> None:
    op.create_index("ix_frame_contact_phone", "frame_contact", ["phone"])
    op.create_index("ix_sample_case_pick_stratum", "sample_case",
                    ["stratum_id", "last_attempt_at", "id"], **_where(IN_FIELD))
    op.create_index("ix_sample_case_pick", "sample_case", ["last_attempt_at", "id"],
                    **_where(IN_FIELD))
    op.create_index("ix_sample_case_urgent", "sample_case", ["priority", "state"],
                    **_where(URGENT))
    op.create_index("ix_sample_case_holder", "sample_case", ["locked_by"],
                    **_where("locked_by IS NOT NULL"))
    op.create_index("ix_call_attempt_open", "call_attempt", ["case_id"],
                    **_where("outcome IS NULL"))
    op.create_index("ix_appointment_case", "appointment", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_appointment_case", table_name="appointment")
    op.drop_index("ix_call_attempt_open", table_name="call_attempt")
    op.drop_index("ix_sample_case_holder", table_name="sample_case")
    op.drop_index("ix_sample_case_urgent", table_name="sample_case")
    op.drop_index("ix_sample_case_pick", table_name="sample_case")
    op.drop_index("ix_sample_case_pick_stratum", table_name="sample_case")
    op.drop_index("ix_frame_contact_phone", table_name="frame_contact")
