"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 13:50:53.716986
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("experienced", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('interviewer', 'supervisor', 'statistician')", name=op.f("ck_app_user_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("username", name=op.f("uq_app_user_username")),
    )
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign")),
        sa.UniqueConstraint("code", name=op.f("uq_campaign_code")),
    )
    op.create_table(
        "do_not_call",
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_do_not_call")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=True),
        sa.Column("old", sa.JSON(), nullable=True),
        sa.Column("new", sa.JSON(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_audit_log_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)

    op.create_table(
        "frame",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("synthetic", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_frame_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_frame")),
        sa.UniqueConstraint("campaign_id", "name", name=op.f("uq_frame_campaign_id_name")),
    )
    op.create_table(
        "respondent_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("track_codes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_respondent_group_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_respondent_group")),
        sa.UniqueConstraint(
            "campaign_id", "code", name=op.f("uq_respondent_group_campaign_id_code")
        ),
    )
    op.create_table(
        "town",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_town_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_town")),
        sa.UniqueConstraint("campaign_id", "code", name=op.f("uq_town_campaign_id_code")),
    )
    op.create_table(
        "track",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_track_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_track")),
        sa.UniqueConstraint("campaign_id", "code", name=op.f("uq_track_campaign_id_code")),
    )
    op.create_table(
        "frame_import",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=500), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_imported", sa.Integer(), nullable=False),
        sa.Column("rows_rejected", sa.Integer(), nullable=False),
        sa.Column("rows_suppressed", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["frame_id"],
            ["frame.id"],
            name=op.f("fk_frame_import_frame_id_frame"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_frame_import")),
        sa.UniqueConstraint(
            "frame_id", "content_hash", name=op.f("uq_frame_import_frame_id_content_hash")
        ),
    )
    op.create_table(
        "sample_draw",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("frame_hash", sa.String(length=64), nullable=False),
        sa.Column("seed", sa.String(length=80), nullable=False),
        sa.Column("stratification", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("sample_size", sa.Integer(), nullable=False),
        sa.Column("replicates", sa.Integer(), nullable=False),
        sa.Column("reserve", sa.Integer(), nullable=False),
        sa.Column("allocation", sa.JSON(), nullable=False),
        sa.Column("assignment", sa.JSON(), nullable=False),
        sa.Column("software_version", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_sample_draw_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["frame_id"], ["frame.id"], name=op.f("fk_sample_draw_frame_id_frame")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sample_draw")),
    )
    op.create_table(
        "unit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_unit_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["track_id"], ["track.id"], name=op.f("fk_unit_track_id_track"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unit")),
        sa.UniqueConstraint("campaign_id", "code", name=op.f("uq_unit_campaign_id_code")),
    )
    with op.batch_alter_table("unit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_unit_track_id"), ["track_id"], unique=False)

    op.create_table(
        "frame_contact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("town_id", sa.Integer(), nullable=True),
        sa.Column("source_row", sa.Integer(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["frame_id"],
            ["frame.id"],
            name=op.f("fk_frame_contact_frame_id_frame"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["respondent_group.id"],
            name=op.f("fk_frame_contact_group_id_respondent_group"),
        ),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["frame_import.id"],
            name=op.f("fk_frame_contact_import_id_frame_import"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["town_id"], ["town.id"], name=op.f("fk_frame_contact_town_id_town")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_frame_contact")),
        sa.UniqueConstraint("frame_id", "phone", name=op.f("uq_frame_contact_frame_id_phone")),
    )
    with op.batch_alter_table("frame_contact", schema=None) as batch_op:
        batch_op.create_index(
            "ix_frame_contact_frame_group_town", ["frame_id", "group_id", "town_id"], unique=False
        )

    op.create_table(
        "stratum",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("draw_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=130), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("town_id", sa.Integer(), nullable=True),
        sa.Column("population", sa.Integer(), nullable=False),
        sa.Column("target", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["draw_id"],
            ["sample_draw.id"],
            name=op.f("fk_stratum_draw_id_sample_draw"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["respondent_group.id"], name=op.f("fk_stratum_group_id_respondent_group")
        ),
        sa.ForeignKeyConstraint(["town_id"], ["town.id"], name=op.f("fk_stratum_town_id_town")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stratum")),
        sa.UniqueConstraint("draw_id", "code", name=op.f("uq_stratum_draw_id_code")),
    )
    op.create_table(
        "sample_case",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("draw_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("stratum_id", sa.Integer(), nullable=False),
        sa.Column("pseudo_id", sa.String(length=32), nullable=False),
        sa.Column("inclusion_prob", sa.Float(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("replicate", sa.Integer(), nullable=False),
        sa.Column("is_reserve", sa.Boolean(), nullable=False),
        sa.Column("draw_order", sa.Integer(), nullable=False),
        sa.Column("release_state", sa.String(length=16), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_disposition", sa.String(length=8), nullable=True),
        sa.Column("final_disposition", sa.String(length=8), nullable=True),
        sa.Column("known_eligible", sa.Boolean(), nullable=False),
        sa.Column("lock_channel", sa.String(length=8), nullable=True),
        sa.Column("locked_by", sa.Integer(), nullable=True),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lock_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assigned_to", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "lock_channel IS NULL OR lock_channel IN ('ivr', 'cati')",
            name=op.f("ck_sample_case_lock"),
        ),
        sa.CheckConstraint(
            "release_state IN ('held', 'released', 'withdrawn')",
            name=op.f("ck_sample_case_release_state"),
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'in_field', 'handoff_cati', 'final')",
            name=op.f("ck_sample_case_state"),
        ),
        sa.ForeignKeyConstraint(
            ["assigned_to"], ["app_user.id"], name=op.f("fk_sample_case_assigned_to_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["frame_contact.id"],
            name=op.f("fk_sample_case_contact_id_frame_contact"),
        ),
        sa.ForeignKeyConstraint(
            ["draw_id"],
            ["sample_draw.id"],
            name=op.f("fk_sample_case_draw_id_sample_draw"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["locked_by"], ["app_user.id"], name=op.f("fk_sample_case_locked_by_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["stratum_id"], ["stratum.id"], name=op.f("fk_sample_case_stratum_id_stratum")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sample_case")),
        sa.UniqueConstraint(
            "draw_id", "contact_id", name=op.f("uq_sample_case_draw_id_contact_id")
        ),
        sa.UniqueConstraint("pseudo_id", name=op.f("uq_sample_case_pseudo_id")),
    )
    with op.batch_alter_table("sample_case", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sample_case_queue",
            ["draw_id", "release_state", "state", "next_attempt_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_sample_case_stratum_id"), ["stratum_id"], unique=False)

    op.create_table(
        "appointment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("interviewer_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('hard', 'soft')", name=op.f("ck_appointment_kind")),
        sa.CheckConstraint(
            "status IN ('pending', 'kept', 'missed', 'cancelled')",
            name=op.f("ck_appointment_status"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["sample_case.id"],
            name=op.f("fk_appointment_case_id_sample_case"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["app_user.id"], name=op.f("fk_appointment_created_by_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["interviewer_id"], ["app_user.id"], name=op.f("fk_appointment_interviewer_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointment")),
    )
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.create_index("ix_appointment_due", ["status", "due_at"], unique=False)

    op.create_table(
        "call_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("interviewer_id", sa.Integer(), nullable=True),
        sa.Column("call_sid", sa.String(length=64), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("status_rank", sa.Integer(), nullable=False),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.Column("answered_by", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=8), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("channel IN ('ivr', 'cati')", name=op.f("ck_call_attempt_channel")),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["sample_case.id"],
            name=op.f("fk_call_attempt_case_id_sample_case"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["interviewer_id"],
            ["app_user.id"],
            name=op.f("fk_call_attempt_interviewer_id_app_user"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_attempt")),
        sa.UniqueConstraint("call_sid", name=op.f("uq_call_attempt_call_sid")),
    )
    with op.batch_alter_table("call_attempt", schema=None) as batch_op:
        batch_op.create_index("ix_call_attempt_case", ["case_id", "started_at"], unique=False)

    op.create_table(
        "case_unit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["sample_case.id"],
            name=op.f("fk_case_unit_case_id_sample_case"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["unit.id"], name=op.f("fk_case_unit_unit_id_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_unit")),
        sa.UniqueConstraint("case_id", "position", name=op.f("uq_case_unit_case_id_position")),
        sa.UniqueConstraint("case_id", "unit_id", name=op.f("uq_case_unit_case_id_unit_id")),
    )
    with op.batch_alter_table("case_unit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_unit_unit_id"), ["unit_id"], unique=False)

    op.create_table(
        "answer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("rating", sa.String(length=4), nullable=True),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["call_attempt.id"], name=op.f("fk_answer_attempt_id_call_attempt")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["sample_case.id"],
            name=op.f("fk_answer_case_id_sample_case"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["unit.id"], name=op.f("fk_answer_unit_id_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_answer")),
        sa.UniqueConstraint("case_id", "unit_id", name=op.f("uq_answer_case_id_unit_id")),
    )
    with op.batch_alter_table("answer", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_answer_unit_id"), ["unit_id"], unique=False)

    op.create_table(
        "attempt_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("sequence_number", sa.Integer(), nullable=True),
        sa.Column("idempotency_token", sa.String(length=200), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["call_attempt.id"],
            name=op.f("fk_attempt_event_attempt_id_call_attempt"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempt_event")),
        sa.UniqueConstraint("idempotency_token", name=op.f("uq_attempt_event_idempotency_token")),
    )
    with op.batch_alter_table("attempt_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_attempt_event_attempt_id"), ["attempt_id"], unique=False
        )

    op.create_table(
        "disposition_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("is_final", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by_user_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["call_attempt.id"],
            name=op.f("fk_disposition_event_attempt_id_call_attempt"),
        ),
        sa.ForeignKeyConstraint(
            ["by_user_id"], ["app_user.id"], name=op.f("fk_disposition_event_by_user_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["sample_case.id"],
            name=op.f("fk_disposition_event_case_id_sample_case"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disposition_event")),
    )
    with op.batch_alter_table("disposition_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_disposition_event_case_id"), ["case_id"], unique=False)

    op.create_table(
        "recording",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("recording_sid", sa.String(length=64), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["call_attempt.id"], name=op.f("fk_recording_attempt_id_call_attempt")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["sample_case.id"],
            name=op.f("fk_recording_case_id_sample_case"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording")),
        sa.UniqueConstraint("recording_sid", name=op.f("uq_recording_recording_sid")),
    )


def downgrade() -> None:
    op.drop_table("recording")
    with op.batch_alter_table("disposition_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_disposition_event_case_id"))

    op.drop_table("disposition_event")
    with op.batch_alter_table("attempt_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attempt_event_attempt_id"))

    op.drop_table("attempt_event")
    with op.batch_alter_table("answer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_answer_unit_id"))

    op.drop_table("answer")
    with op.batch_alter_table("case_unit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_unit_unit_id"))

    op.drop_table("case_unit")
    with op.batch_alter_table("call_attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_call_attempt_case")

    op.drop_table("call_attempt")
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.drop_index("ix_appointment_due")

    op.drop_table("appointment")
    with op.batch_alter_table("sample_case", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sample_case_stratum_id"))
        batch_op.drop_index("ix_sample_case_queue")

    op.drop_table("sample_case")
    op.drop_table("stratum")
    with op.batch_alter_table("frame_contact", schema=None) as batch_op:
        batch_op.drop_index("ix_frame_contact_frame_group_town")

    op.drop_table("frame_contact")
    with op.batch_alter_table("unit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unit_track_id"))

    op.drop_table("unit")
    op.drop_table("sample_draw")
    op.drop_table("frame_import")
    op.drop_table("track")
    op.drop_table("town")
    op.drop_table("respondent_group")
    op.drop_table("frame")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
    op.drop_table("do_not_call")
    op.drop_table("campaign")
    op.drop_table("app_user")
