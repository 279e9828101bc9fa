"""practice mode: practice draws, and cases whose release state is 'practice'

A practice draw (``sample_draw.practice``) holds training cases for interviewers.  Its
cases are in release state 'practice', never 'released', so every statistic, report,
export, the IVR dialer and the CATI queue (all of which take released cases only) leave
them out; the campaign's current draw is never a practice draw.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 19:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD = "release_state IN ('held', 'released', 'withdrawn')"
NEW = "release_state IN ('held', 'released', 'withdrawn', 'practice')"


def upgrade() -> None:
    with op.batch_alter_table("sample_draw") as batch:
        batch.add_column(sa.Column("practice", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("sample_case") as batch:
        batch.drop_constraint(op.f("ck_sample_case_release_state"), type_="check")
        batch.create_check_constraint(op.f("ck_sample_case_release_state"), NEW)


def downgrade() -> None:
    op.execute("DELETE FROM sample_draw WHERE practice")
    with op.batch_alter_table("sample_case") as batch:
        batch.drop_constraint(op.f("ck_sample_case_release_state"), type_="check")
        batch.create_check_constraint(op.f("ck_sample_case_release_state"), OLD)
    with op.batch_alter_table("sample_draw") as batch:
        batch.drop_column("practice")
