"""Database tables. Times are stored in UTC and come back time-zone aware, whatever the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy import DateTime as SADateTime
from sqlalchemy.orm import DeclarativeBase, Mapped, WriteOnlyMapped, mapped_column, relationship

BIG_ID = BigInteger().with_variant(Integer(), "sqlite")
"""The id of a busy table's rows (events, images, transitions, dead letters, deliveries): PostgreSQL's integer runs
out at 2,147,483,647, some twelve days of a city's 2,000 events a second; SQLite's row ids are 64-bit already (and
only an INTEGER primary key is one)."""


class UTCDateTime(TypeDecorator):
    impl = SADateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a time zone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        """On SQLite, one function instead of two (the one above, then SQLAlchemy's DATETIME, which formats the
        fields through a dict): the same text in half the time, and a busy worker binds several datetimes an event
        (tests/server/test_models.py holds it to the two)."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetimes are not stored; attach a time zone")
            return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]

        return process

    def process_result_value(self, value: datetime | None, _dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class NodeRecord(Base):
    __tablename__ = "nodes"

    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="unknown")
    session: Mapped[int] = mapped_column(default=0)
    status_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]
    telemetry: Mapped[dict[str, Any] | None]
    telemetry_at: Mapped[datetime | None]
    config_status: Mapped[dict[str, Any] | None]
    """The node's last answer to a remote config: version, applied or refused, reason."""
    remote_config: Mapped[dict[str, Any] | None]
    """The remote config the server last sent (retained on the node's config topic): every camera's settings."""


class CaseRecord(Base):
    __tablename__ = "cases"
    __table_args__ = (  # where a new violation looks for the case it repeats (Repeats.nearby_ids)
        Index("ix_cases_view", "node_id", "camera_id", "zone_id"),
        Index("ix_cases_place", "lat", "lon"),
        Index("ix_cases_updated", "updated_at", "id"),  # following changes: GET /api/v1/cases?after=
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    violation_id: Mapped[str] = mapped_column(String(36), unique=True)
    category: Mapped[str] = mapped_column(String(32), index=True)
    code: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    source: Mapped[str] = mapped_column(String(16), default="camera")
    """`camera` (or sensor) or `open311` (a citizen report from a hotline or app)."""
    node_id: Mapped[str | None] = mapped_column(String(64))
    camera_id: Mapped[str | None] = mapped_column(String(64))
    zone_id: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    reporter: Mapped[dict[str, Any] | None]
    """A citizen report's contact details (name, email, phone) as given; never published."""
    reports: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    """Every citizen report of the case, the first and those that joined it later: at, via, description, address
    and reporter (contact details: shown to the command centre only, never published)."""
    label: Mapped[str] = mapped_column(String(64))
    score: Mapped[float]
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    grid_id: Mapped[str | None] = mapped_column(String(64))
    community: Mapped[str | None] = mapped_column(String(200))
    street: Mapped[str | None] = mapped_column(String(200))
    street_chief_name: Mapped[str | None] = mapped_column(String(200))
    street_chief_phone: Mapped[str | None] = mapped_column(String(64))
    unit_id: Mapped[str | None] = mapped_column(String(64), index=True)
    unit_name: Mapped[str | None] = mapped_column(String(200))
    fallback: Mapped[bool] = mapped_column(default=False)
    on_duty_name: Mapped[str | None] = mapped_column(String(200))
    on_duty_phone: Mapped[str | None] = mapped_column(String(64))
    unit_phone: Mapped[str | None] = mapped_column(String(64))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deadline_at: Mapped[datetime | None] = mapped_column(index=True)
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    """When the camera last saw every violation of the case end (object gone); cleared when it is seen again."""
    dwell_seconds: Mapped[float] = mapped_column(default=0.0)
    occurrences: Mapped[int] = mapped_column(default=0)
    open_violations: Mapped[int] = mapped_column(default=0, server_default="0")
    """Violations of the case the camera still sees (their `end` has not come)."""
    # --- for assessment: when each step happened, and the side paths taken -----------------------------------------
    filed_by: Mapped[str | None] = mapped_column(String(128))
    dispatched_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    feedback_at: Mapped[datetime | None]
    verified_at: Mapped[datetime | None]
    """When the case was last verified (object gone); cleared when it goes back to the unit. A repeat at its place
    within the window reopens it, the window running from its closure, else from this."""
    closed_at: Mapped[datetime | None] = mapped_column(index=True)
    on_time: Mapped[bool | None]
    """Set at closure: the unit's last feedback came before the deadline (as extended)."""
    deferred_at: Mapped[datetime | None]
    was_deferred: Mapped[bool] = mapped_column(default=False)
    response_paused_seconds: Mapped[float] = mapped_column(default=0.0, server_default="0")
    """Of this turn, the time deferred (缓办) before the unit accepted it: not its response time."""
    handling_paused_seconds: Mapped[float] = mapped_column(default=0.0, server_default="0")
    """Of this turn, the time deferred after the unit accepted it: not its handling time."""
    rework_count: Mapped[int] = mapped_column(default=0)
    extension_count: Mapped[int] = mapped_column(default=0)
    return_count: Mapped[int] = mapped_column(default=0)
    returned_at: Mapped[datetime | None]
    """When the unit that had it returned it (回退), until it is dispatched again: its turn ended then, however long
    the command centre takes to send it on."""
    void_reason: Mapped[str | None] = mapped_column(String(32))
    escalation_level: Mapped[int] = mapped_column(default=0)

    events: Mapped[list[EventRecord]] = relationship(back_populates="case", order_by="EventRecord.observed_at")
    transitions: Mapped[list[CaseTransition]] = relationship(
        back_populates="case", order_by="CaseTransition.id", cascade="all, delete-orphan"
    )
    rounds: WriteOnlyMapped[CaseRound] = relationship(cascade="all, delete-orphan")
    """Units' turns that ended before the case did (written as they end, never loaded whole)."""


class EventRecord(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    violation_id: Mapped[str] = mapped_column(String(36), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    type: Mapped[str] = mapped_column(String(8))
    node_id: Mapped[str] = mapped_column(String(64), index=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    zone_id: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    observed_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    payload: Mapped[dict[str, Any]]

    case: Mapped[CaseRecord | None] = relationship(back_populates="events")


class EvidenceRecord(Base):
    """The JPEGs of an event; the files live on disk under their SHA-256, never in a row."""

    __tablename__ = "evidence"
    __table_args__ = (UniqueConstraint("event_id", "variant", name="uq_evidence_event_variant"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), index=True)
    variant: Mapped[str] = mapped_column(String(16), default="frame")
    """`frame` (annotated full frame) or `crop` (the object at full resolution)."""
    node_id: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    bytes: Mapped[int]
    content_type: Mapped[str] = mapped_column(String(64), default="image/jpeg")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class CasePhoto(Base):
    """A photo people took of a case (field staff reporting back, an operator adding one): the file lives on disk
    under its SHA-256, like evidence, never in a row."""

    __tablename__ = "case_photos"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    """`before` (as found), `after` (as left: what feedback shows) or `other`."""
    caption: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int]
    content_type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ActionKey(Base):
    """A case action sent with an `Idempotency-Key` header (server/services/action_keys.py): the same request sent
    again, a field app retrying after its answer was lost, is answered from this instead of taken twice."""

    __tablename__ = "action_keys"
    __table_args__ = (UniqueConstraint("token", "key", name="uq_action_keys_token_key"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    token: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the token that sent it: a key answers for its own token only."""
    key: Mapped[str] = mapped_column(String(255))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    fingerprint: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the case id and the action's body: the same key on another request is refused."""
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class CaseRound(Base):
    """A unit's turn at a case that ended before the case did: returned (回退), reassigned, or closed and then
    reopened. Kept so that assessment credits each unit with its own turns: the case's own columns hold only the
    turn in hand, and a unit that returned a case past its deadline would otherwise leave no trace of it."""

    __tablename__ = "case_rounds"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    unit_id: Mapped[str | None] = mapped_column(String(64))
    dispatched_at: Mapped[datetime]
    deadline_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    feedback_at: Mapped[datetime | None]
    ended_at: Mapped[datetime]
    ended_by: Mapped[str] = mapped_column(String(16))
    """The step that ended it: `dispatch` (after a return), `reassign` or `reopen`."""
    closed: Mapped[bool]
    """Whether the turn ended with the case closed (a reopen after): then `on_time` says how."""
    on_time: Mapped[bool | None]
    response_paused_seconds: Mapped[float] = mapped_column(default=0.0, server_default="0")
    handling_paused_seconds: Mapped[float] = mapped_column(default=0.0, server_default="0")
    reworked: Mapped[int] = mapped_column(default=0)
    """Reworks in the turn (the case's `rework_count` counts every turn's)."""
    extended: Mapped[int] = mapped_column(default=0)


class CaseTransition(Base):
    __tablename__ = "case_transitions"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)

    case: Mapped[CaseRecord] = relationship(back_populates="transitions")


class DeadLetter(Base):
    """A message that could not be used, kept whole with the reason, so nothing is dropped silently."""

    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_received_at", "received_at"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    topic: Mapped[str] = mapped_column(Text)
    node_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class DetectionReview(Base):
    """An operator's verdict on a detection (the event that raised it): the ground truth that retrains models."""

    __tablename__ = "detection_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    verdict: Mapped[str] = mapped_column(String(16))
    """`confirmed` or `rejected`."""
    reason: Mapped[str | None] = mapped_column(String(32))
    """Why it was rejected: false_positive, duplicate, not_our_responsibility, other."""
    reviewer: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class NodeCommand(Base):
    """A command sent to a node, and the node's answer once it comes."""

    __tablename__ = "node_commands"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    node_id: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32))
    camera_id: Mapped[str | None] = mapped_column(String(64))
    sent_by: Mapped[str] = mapped_column(String(128))
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    response: Mapped[dict[str, Any] | None]
    answered_at: Mapped[datetime | None]


class CameraSnapshot(Base):
    """The latest snapshot of each camera (the JPEG lives in the evidence store under its SHA-256)."""

    __tablename__ = "camera_snapshots"
    __table_args__ = (UniqueConstraint("node_id", "camera_id", name="uq_snapshot_camera"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64))
    camera_id: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookSubscription(Base):
    """An integrator's endpoint for case changes; every POST is signed with its secret (HMAC-SHA256)."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Only these categories; empty: all."""
    actions: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Only these case actions (dispatch, close ...); empty: all."""
    description: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    unanswered: Mapped[int] = mapped_column(default=0, server_default="0")
    """Attempts in a row on which the endpoint could not even be reached (no connection)."""
    resting_until: Mapped[datetime | None]
    """After such an attempt, no delivery of the subscription is tried before this (the back-off by `unanswered`)."""


class WebhookDelivery(Base):
    """One case change for one subscription: queued in the transaction that made the change, so none is lost, then
    sent, retried with back-off, and kept as the delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
                                                 index=True)
    case_id: Mapped[int] = mapped_column(index=True)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """pending, delivered or failed (gave up after the last attempt; an admin may retry it)."""
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    out_of_order: Mapped[bool] = mapped_column(default=False, server_default=false())
    """An admin's retry that may go after a later change of its case the receiver has (a retry without it that a
    later change overtakes while it waits fails instead)."""


class CaseOutboxMessage(Base):
    """A case change's MQTT message (`gw/v1/cases/{category}/{case_id}`), written in the transaction that made the
    change and deleted once the broker acknowledged it (server/services/case_outbox.py): a worker that restarts or
    dies before the broker has it sends it again from here, where paho's memory lost it."""

    __tablename__ = "case_messages"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    """The order they are sent in: a case's changes in the order they were made."""
    case_id: Mapped[int] = mapped_column(index=True)
    topic: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    held_by: Mapped[str | None] = mapped_column(String(128), index=True)
    """The MQTT client id of the worker sending it (each worker's is its own); none: any worker may take it. Indexed:
    each worker renews or releases its own rows every 15 s, which read the whole backlog without it."""
    held_until: Mapped[datetime | None]
    """Its worker renews this while it lives; past it, another worker takes the message over."""
