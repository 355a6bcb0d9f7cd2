"""What the server publishes of a case on `gw/v1/cases/{category}/{case_id}`: its status, the step that changed it
and to whom it is assigned."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from gridwatch.contract.payloads import Category, EventCode, Identifier, Location, NodeId, Person, _Strict


class CaseAssignment(_Strict):
    grid_id: str | None = None
    community: str | None = None
    street: str | None = None
    street_chief: Person | None = None
    unit_id: str
    unit_name: str
    fallback: bool = Field(description="True when no grid or category rule matched and the fallback unit took it.")
    on_duty: Person | None = Field(default=None, description="The unit's person on duty when it was assigned (1.3).")
    unit_phone: str | None = Field(default=None, description=(
        "The unit's duty phone when it was assigned (1.5): a unit without a roster has no person on duty to call."))


class CaseStatus(StrEnum):
    """GB/T 30428: collection → registration → dispatch → handling → feedback → verification → closure, with the
    side states returned (wrong unit), deferred and void."""

    COLLECTED = "collected"
    """Detected; waits for an operator to confirm (file) or reject (void) unless its score filed it itself."""
    REGISTERED = "registered"
    DISPATCHED = "dispatched"
    HANDLING = "handling"
    FEEDBACK = "feedback"
    """The unit reports it handled; waits for verification (by an operator, or by the camera seeing it gone)."""
    VERIFIED = "verified"
    CLOSED = "closed"
    RETURNED = "returned"
    """Sent back by the unit as not theirs; waits for an operator to dispatch it again."""
    DEFERRED = "deferred"
    VOID = "void"


class CaseAction(StrEnum):
    """What moves a case (1.3). Which statuses each starts from and who may take it: the README's workflow table."""

    COLLECT = "collect"
    FILE = "file"
    DISPATCH = "dispatch"
    REASSIGN = "reassign"
    ACCEPT = "accept"
    RETURN = "return"
    EXTEND = "extend"
    DEFER = "defer"
    RESUME = "resume"
    FEEDBACK = "feedback"
    REWORK = "rework"
    VERIFY = "verify"
    CLOSE = "close"
    VOID = "void"
    REOPEN = "reopen"
    ESCALATE = "escalate"
    JOIN = "join"


class CaseMessage(_Strict):
    """Published on every case state change, for integrators and field apps. Messages of one case may come out of
    order (QoS 1 resends, webhook retries, several workers): the one with the higher `seq` is the newer."""

    schema_version: str = Field(pattern=r"^1\.\d+$")
    case_id: int = Field(ge=1)
    category: Category
    code: EventCode
    status: CaseStatus
    previous_status: CaseStatus | None
    action: CaseAction | None = Field(default=None, description="What changed it (1.3); the status may stay the "
                                                                "same, e.g. on `extend`, `escalate` or `join`.")
    changed_at: AwareDatetime
    seq: int | None = Field(default=None, ge=1, description=(
        "The change's number (1.6), unique: each change of a case has a higher one than the case's changes before "
        "it. Of two messages of one case (MQTT, a webhook, a retry, the REST API's `seq`), keep the one with the "
        "higher `seq`, whatever order they came in: `changed_at` may tie (steps of one moment) and is read from "
        "the clocks of several workers. Numbers of different cases say nothing of which changed first."))
    changed_by: str
    reason: str
    violation_id: UUID
    source: Literal["camera", "open311"] = Field(
        default="camera", description="Where the case came from (1.3): a camera or sensor, or a citizen report "
                                      "through Open311 (a hotline, an app); a report has no node, camera or zone.")
    node_id: NodeId | None
    camera_id: Identifier | None
    zone_id: Identifier | None
    description: str | None = Field(default=None, description="A citizen report's own words (1.3).")
    location: Location | None
    assignment: CaseAssignment | None
    deadline_at: AwareDatetime | None
    opened_at: AwareDatetime
    escalation_level: int = Field(default=0, ge=0, le=2, description=(
        "0 grid, 1 street office, 2 district (1.3); 0 to 2 at once where no street office is there to tell."))
