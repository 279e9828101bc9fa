"""The schema: typed SQLAlchemy 2 models.

Every timestamp is stored in UTC (:class:`UTCDateTime` keeps them aware on both
SQLite and PostgreSQL).  Configuration objects (tracks, units, groups, towns)
carry the configuration's stable ``code``; rows refer to each other by integer
keys.  Call attempt events, disposition history and the audit log are append
only: rows are added, never updated.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("interviewer", "supervisor", "statistician")
CHANNELS = ("ivr", "cati")
RELEASE_STATES = ("held", "released", "withdrawn")
CASE_STATES = ("pending", "in_field", "handoff_cati", "final")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime on every database (naive values are refused)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, date: Date}


# --- campaign and its configuration -------------------------------------------------


class Campaign(Base):
    __tablename__ = "campaign"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    config_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    tracks: Mapped[list[Track]] = relationship(back_populates="campaign", order_by="Track.position")


class Track(Base):
    __tablename__ = "track"
    __table_args__ = (UniqueConstraint("campaign_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    weights: Mapped[dict[str, Any]] = mapped_column(default=dict)

    campaign: Mapped[Campaign] = relationship(back_populates="tracks")
    units: Mapped[list[Unit]] = relationship(back_populates="track", order_by="Unit.position")


class Unit(Base):
    """A rated unit: a department, an agency or a service window."""

    __tablename__ = "unit"
    __table_args__ = (UniqueConstraint("campaign_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    track_id: Mapped[int] = mapped_column(ForeignKey("track.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    category: Mapped[str | None] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)

    track: Mapped[Track] = relationship(back_populates="units")


class RespondentGroup(Base):
    __tablename__ = "respondent_group"
    __table_args__ = (UniqueConstraint("campaign_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    track_codes: Mapped[list[str]] = mapped_column(JSON, default=list)


class Town(Base):
    __tablename__ = "town"
    __table_args__ = (UniqueConstraint("campaign_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))


# --- sampling frame -------------------------------------------------------------------


class Frame(Base):
    """A sampling frame: the list of contacts the sample is drawn from."""

    __tablename__ = "frame"
    __table_args__ = (UniqueConstraint("campaign_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FrameImport(Base):
    """One imported file; the same content imported again is a no-op."""

    __tablename__ = "frame_import"
    __table_args__ = (UniqueConstraint("frame_id", "content_hash"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frame.id", ondelete="CASCADE"))
    file_name: Mapped[str] = mapped_column(String(500))
    content_hash: Mapped[str] = mapped_column(String(64))
    rows_read: Mapped[int] = mapped_column(Integer)
    rows_imported: Mapped[int] = mapped_column(Integer)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    rows_suppressed: Mapped[int] = mapped_column(Integer, default=0)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    imported_by: Mapped[str | None] = mapped_column(String(100))


class FrameContact(Base):
    __tablename__ = "frame_contact"
    __table_args__ = (
        UniqueConstraint("frame_id", "phone"),
        Index("ix_frame_contact_frame_group_town", "frame_id", "group_id", "town_id"),
        Index("ix_frame_contact_phone", "phone"),  # the do-not-call check
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frame.id", ondelete="CASCADE"))
    import_id: Mapped[int | None] = mapped_column(
        ForeignKey("frame_import.id", ondelete="SET NULL")
    )
    phone: Mapped[str] = mapped_column(String(20))  # E.164
    group_id: Mapped[int] = mapped_column(ForeignKey("respondent_group.id"))
    town_id: Mapped[int | None] = mapped_column(ForeignKey("town.id"))
    source_row: Mapped[int | None] = mapped_column(Integer)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DoNotCall(Base):
    """Numbers never to be called again (opt-out by keypad, by interviewer, or imported)."""

    __tablename__ = "do_not_call"
    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    note: Mapped[str | None] = mapped_column(Text)


# --- the draw ------------------------------------------------------------------------------


class SampleDraw(Base):
    """The audit record of one stratified draw: enough to re-derive it exactly."""

    __tablename__ = "sample_draw"
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    frame_id: Mapped[int] = mapped_column(ForeignKey("frame.id"))
    frame_hash: Mapped[str] = mapped_column(String(64))
    seed: Mapped[str] = mapped_column(String(80))
    stratification: Mapped[str] = mapped_column(String(32))  # "group" or "group_town"
    method: Mapped[str] = mapped_column(String(32))
    sample_size: Mapped[int] = mapped_column(Integer)
    replicates: Mapped[int] = mapped_column(Integer, default=1)
    reserve: Mapped[int] = mapped_column(Integer, default=0)
    allocation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    assignment: Mapped[dict[str, Any]] = mapped_column(default=dict)
    software_version: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(100))
    #: A training draw (``minping practice create``): its cases are in release state
    #: "practice", so nothing counts them; never the campaign's current draw.
    practice: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Stratum(Base):
    __tablename__ = "stratum"
    __table_args__ = (UniqueConstraint("draw_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    draw_id: Mapped[int] = mapped_column(ForeignKey("sample_draw.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(130))
    group_id: Mapped[int] = mapped_column(ForeignKey("respondent_group.id"))
    town_id: Mapped[int | None] = mapped_column(ForeignKey("town.id"))
    population: Mapped[int] = mapped_column(Integer)  # N_h
    target: Mapped[int] = mapped_column(Integer)  # n_h allocated


#: Released cases still in the field (the predicate of the scheduler's partial indexes).
IN_FIELD_SQL = "release_state = 'released' AND state IN ('pending', 'in_field', 'handoff_cati')"
#: Released cases the IVR dialer may take (the predicate of its due-case index).
DIALABLE_SQL = "release_state = 'released' AND state IN ('pending', 'in_field')"
#: Cases handed over from the IVR or with a supervisor's priority.
URGENT_SQL = "state = 'handoff_cati' OR priority <> 0"


class SampleCase(Base):
    """A drawn contact: its design variables and where it stands in the field."""

    __tablename__ = "sample_case"
    __table_args__ = (
        UniqueConstraint("draw_id", "contact_id"),
        CheckConstraint("release_state IN ('held', 'released', 'withdrawn', 'practice')",
                        name="release_state"),
        CheckConstraint(
            "state IN ('pending', 'in_field', 'handoff_cati', 'final')", name="state"
        ),
        CheckConstraint("lock_channel IS NULL OR lock_channel IN ('ivr', 'cati')", name="lock"),
        Index("ix_sample_case_queue", "draw_id", "release_state", "state", "next_attempt_at"),
        # the CATI scheduler (minping.scheduler): cases in the field in calling order, per
        # stratum and overall; the few urgent ones; the case an interviewer holds
        Index("ix_sample_case_pick_stratum", "stratum_id", "last_attempt_at", "id",
              postgresql_where=text(IN_FIELD_SQL), sqlite_where=text(IN_FIELD_SQL)),
        Index("ix_sample_case_pick", "last_attempt_at", "id",
              postgresql_where=text(IN_FIELD_SQL), sqlite_where=text(IN_FIELD_SQL)),
        Index("ix_sample_case_urgent", "priority", "state",
              postgresql_where=text(URGENT_SQL), sqlite_where=text(URGENT_SQL)),
        Index("ix_sample_case_holder", "locked_by",
              postgresql_where=text("locked_by IS NOT NULL"),
              sqlite_where=text("locked_by IS NOT NULL")),
        # the dialer's due cases in its order (minping.cases.hold_cases_for_ivr)
        Index("ix_sample_case_due", text("(next_attempt_at IS NOT NULL)"),
              text("next_attempt_at"), text("priority DESC"), text("id"),
              postgresql_where=text(DIALABLE_SQL), sqlite_where=text(DIALABLE_SQL)),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    draw_id: Mapped[int] = mapped_column(ForeignKey("sample_draw.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("frame_contact.id"))
    stratum_id: Mapped[int] = mapped_column(ForeignKey("stratum.id"), index=True)
    pseudo_id: Mapped[str] = mapped_column(String(32), unique=True)
    inclusion_prob: Mapped[float] = mapped_column(Float)
    weight: Mapped[float] = mapped_column(Float)
    replicate: Mapped[int] = mapped_column(Integer)
    is_reserve: Mapped[bool] = mapped_column(Boolean, default=False)
    draw_order: Mapped[int] = mapped_column(Integer)
    release_state: Mapped[str] = mapped_column(String(16), default="held")
    released_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16), default="pending")
    language: Mapped[str] = mapped_column(String(16), default="cmn-CN")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    current_disposition: Mapped[str | None] = mapped_column(String(8))
    final_disposition: Mapped[str | None] = mapped_column(String(8))
    known_eligible: Mapped[bool] = mapped_column(Boolean, default=False)
    lock_channel: Mapped[str | None] = mapped_column(String(8))
    locked_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    locked_at: Mapped[datetime | None]
    lock_expires_at: Mapped[datetime | None]
    assigned_to: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    refusal_conversion: Mapped[bool] = mapped_column(Boolean, default=False)
    notified_at: Mapped[datetime | None]  # SMS advance notice sent
    sms_code: Mapped[str | None] = mapped_column(String(8))  # the code the SMS carried
    # arm of the embedded mode experiment (minping.experiment): "ivr_first", "cati_first",
    # or None when the case was released without an experiment
    mode_arm: Mapped[str | None] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=0)

    units: Mapped[list[CaseUnit]] = relationship(order_by="CaseUnit.position")


class CaseUnit(Base):
    """A unit assigned to a case, in the order it is asked."""

    __tablename__ = "case_unit"
    __table_args__ = (
        UniqueConstraint("case_id", "unit_id"),
        UniqueConstraint("case_id", "position"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("sample_case.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)


# --- fieldwork -----------------------------------------------------------------------------


class CallAttempt(Base):
    """One attempt to reach a case, by IVR or by an interviewer."""

    __tablename__ = "call_attempt"
    __table_args__ = (
        CheckConstraint("channel IN ('ivr', 'cati')", name="channel"),
        Index("ix_call_attempt_case", "case_id", "started_at"),
        Index("ix_call_attempt_open", "case_id", postgresql_where=text("outcome IS NULL"),
              sqlite_where=text("outcome IS NULL")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("sample_case.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(8))
    interviewer_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    call_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    direction: Mapped[str] = mapped_column(String(16), default="outbound")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(24), default="queued")
    status_rank: Mapped[int] = mapped_column(Integer, default=0)
    last_sequence: Mapped[int] = mapped_column(Integer, default=-1)
    answered_by: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(8))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)


class AttemptEvent(Base):
    """Append-only: every callback, key press and state change of an attempt."""

    __tablename__ = "attempt_event"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    attempt_id: Mapped[int] = mapped_column(
        ForeignKey("call_attempt.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    sequence_number: Mapped[int | None] = mapped_column(Integer)
    idempotency_token: Mapped[str | None] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Answer(Base):
    """A respondent's rating of one unit; saved the moment it is given."""

    __tablename__ = "answer"
    __table_args__ = (UniqueConstraint("case_id", "unit_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("sample_case.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), index=True)
    rating: Mapped[str | None] = mapped_column(String(4))  # keypad key; None = no answer
    channel: Mapped[str] = mapped_column(String(8))
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("call_attempt.id"))
    answered_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Recording(Base):
    """A link to a recording (a spoken comment, or a CATI call after consent)."""

    __tablename__ = "recording"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("sample_case.id", ondelete="CASCADE"))
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("call_attempt.id"))
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(String(500))
    recording_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DispositionEvent(Base):
    """Append-only history of a case's dispositions (AAPOR codes)."""

    __tablename__ = "disposition_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("sample_case.id", ondelete="CASCADE"), index=True
    )
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("call_attempt.id"))
    code: Mapped[str] = mapped_column(String(8))
    is_final: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    note: Mapped[str | None] = mapped_column(Text)


class Appointment(Base):
    __tablename__ = "appointment"
    __table_args__ = (
        CheckConstraint("kind IN ('hard', 'soft')", name="kind"),
        CheckConstraint("status IN ('pending', 'kept', 'missed', 'cancelled')", name="status"),
        Index("ix_appointment_due", "status", "due_at"),
        Index("ix_appointment_case", "case_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("sample_case.id", ondelete="CASCADE"))
    due_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(8))
    interviewer_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- people and the audit log ---------------------------------------------------------------


class User(Base):
    __tablename__ = "app_user"
    __table_args__ = (
        CheckConstraint("role IN ('interviewer', 'supervisor', 'statistician')", name="role"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(8), default="zh")
    phone: Mapped[str | None] = mapped_column(String(20))  # for click-to-call bridging
    experienced: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditLog(Base):
    """Append-only: who saw or changed what, when, with the old and new value."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    old: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    new: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    detail: Mapped[str | None] = mapped_column(Text)


class UserSession(Base):
    """A log-in to the CATI screens, ended on the server (log-out, new password, disabled
    account, idle or absolute timeout).  ``id`` is the SHA-256 of the cookie's token."""

    __tablename__ = "user_session"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    created_at: Mapped[datetime]
    seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(String(64))


class LoginThrottle(Base):
    """Failed log-ins per client address (``addr:…``) and per user name (``name:…``)."""

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_at: Mapped[datetime]
    blocked_until: Mapped[datetime | None]


# --- coordination between processes ---------------------------------------------------------


class Lease(Base):
    """A named lease rows of which processes take turns on (dialer pacing, leader election).

    ``state`` holds what the holder keeps between turns (for the dialer: the
    time of the last call placed, so the calls-per-second limit holds across
    processes).
    """

    __tablename__ = "lease"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(120))
    expires_at: Mapped[datetime | None]
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- other inputs of the composite score ------------------------------------------------------


class InputImport(Base):
    """One imported file of ballots, votes or inspection records (all or nothing)."""

    __tablename__ = "input_import"
    __table_args__ = (
        UniqueConstraint("campaign_id", "kind", "content_hash"),
        CheckConstraint("kind IN ('assessment', 'online', 'inspection')", name="kind"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    file_name: Mapped[str] = mapped_column(String(500))
    content_hash: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    imported_by: Mapped[str | None] = mapped_column(String(100))


class AssessmentBallot(Base):
    """One in-person assessment ballot's rating of one unit (集中测评)."""

    __tablename__ = "assessment_ballot"
    id: Mapped[int] = mapped_column(primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("input_import.id", ondelete="CASCADE"))
    venue: Mapped[str] = mapped_column(String(100))
    ballot: Mapped[str | None] = mapped_column(String(64))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), index=True)
    rating: Mapped[str] = mapped_column(String(4))
    source_row: Mapped[int] = mapped_column(Integer)


class OnlineVote(Base):
    """Online vote counts for one unit and one option (网上评议)."""

    __tablename__ = "online_vote"
    id: Mapped[int] = mapped_column(primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("input_import.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), index=True)
    option: Mapped[str] = mapped_column(String(4))
    count: Mapped[int] = mapped_column(Integer)
    source_row: Mapped[int] = mapped_column(Integer)


class InspectionRecord(Base):
    """A deduction found by daily inspection (日常考查扣分)."""

    __tablename__ = "inspection_record"
    id: Mapped[int] = mapped_column(primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("input_import.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), index=True)
    on: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(32))
    points: Mapped[float] = mapped_column(Float)
    note: Mapped[str | None] = mapped_column(Text)
    source_row: Mapped[int] = mapped_column(Integer)
