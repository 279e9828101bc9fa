"""leases, other score inputs, case notice and refusal conversion

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 13:56:41.196107
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lease",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=120), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_lease")),
    )
    op.create_table(
        "input_import",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("file_name", sa.String(length=500), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_by", sa.String(length=100), nullable=True),
        sa.CheckConstraint(
            "kind IN ('assessment', 'online', 'inspection')", name=op.f("ck_input_import_kind")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_input_import_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_input_import")),
        sa.UniqueConstraint(
            "campaign_id",
            "kind",
            "content_hash",
            name=op.f("uq_input_import_campaign_id_kind_content_hash"),
        ),
    )
    op.create_table(
        "assessment_ballot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("venue", sa.String(length=100), nullable=False),
        sa.Column("ballot", sa.String(length=64), nullable=True),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("rating", sa.String(length=4), nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["input_import.id"],
            name=op.f("fk_assessment_ballot_import_id_input_import"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["unit.id"], name=op.f("fk_assessment_ballot_unit_id_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assessment_ballot")),
    )
    with op.batch_alter_table("assessment_ballot", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assessment_ballot_unit_id"), ["unit_id"], unique=False)

    op.create_table(
        "inspection_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("on", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["input_import.id"],
            name=op.f("fk_inspection_record_import_id_input_import"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["unit.id"], name=op.f("fk_inspection_record_unit_id_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspection_record")),
    )
    with op.batch_alter_table("inspection_record", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inspection_record_unit_id"), ["unit_id"], unique=False)

    op.create_table(
        "online_vote",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("option", sa.String(length=4), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["input_import.id"],
            name=op.f("fk_online_vote_import_id_input_import"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["unit.id"], name=op.f("fk_online_vote_unit_id_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_online_vote")),
    )
    with op.batch_alter_table("online_vote", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_online_vote_unit_id"), ["unit_id"], unique=False)

    with op.batch_alter_table("sample_case", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refusal_conversion", sa.Boolean(), nullable=False))
        batch_op.add_column(sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sample_case", schema=None) as batch_op:
        batch_op.drop_column("notified_at")
        batch_op.drop_column("refusal_conversion")

    with op.batch_alter_table("online_vote", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_online_vote_unit_id"))

    op.drop_table("online_vote")
    with op.batch_alter_table("inspection_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inspection_record_unit_id"))

    op.drop_table("inspection_record")
    with op.batch_alter_table("assessment_ballot", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assessment_ballot_unit_id"))

    op.drop_table("assessment_ballot")
    op.drop_table("input_import")
    op.drop_table("lease")
