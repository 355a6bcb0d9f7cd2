"""The case workflow as one table: which action may move a case from which status to which, and who may take it.

Pure and small so that every path is a row of a parametrized test, and the REST API, the ingest service and the
console all ask the same table. Anything the table does not allow is refused with the actions that are allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

from gridwatch.contract import CaseAction, CaseStatus
from server.core.security import Role, a_role

S = CaseStatus
A = CaseAction

OPEN = frozenset({S.COLLECTED, S.REGISTERED, S.DISPATCHED, S.HANDLING, S.FEEDBACK, S.RETURNED, S.DEFERRED})
"""Statuses of a case somebody still has to act on."""
FINISHED = frozenset({S.VERIFIED, S.CLOSED, S.VOID})
IN_UNIT = frozenset({S.DISPATCHED, S.HANDLING})
"""The unit holds the case and its deadline runs."""


@dataclass(frozen=True)
class Rule:
    sources: frozenset[CaseStatus]
    target: CaseStatus | None
    """None: the status stays (the action changes the deadline, the unit or the escalation level)."""
    roles: frozenset[Role]
    """Who may take it through the API; the system (ingest, the deadline sweep) may take any action."""
    needs_reason: bool = False


_OPERATORS = frozenset({Role.OPERATOR, Role.ADMIN})
_FIELD = frozenset({Role.FIELD_STAFF, Role.OPERATOR, Role.ADMIN})
_SUPERVISORS = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})
_SYSTEM_ONLY: frozenset[Role] = frozenset()

RULES: dict[CaseAction, Rule] = {
    A.FILE: Rule(frozenset({S.COLLECTED}), S.REGISTERED, _OPERATORS),
    A.DISPATCH: Rule(frozenset({S.REGISTERED, S.RETURNED}), S.DISPATCHED, _OPERATORS),
    A.REASSIGN: Rule(IN_UNIT, S.DISPATCHED, _OPERATORS, needs_reason=True),
    A.ACCEPT: Rule(frozenset({S.DISPATCHED}), S.HANDLING, _FIELD),
    A.RETURN: Rule(IN_UNIT, S.RETURNED, _FIELD, needs_reason=True),
    A.EXTEND: Rule(IN_UNIT, None, _SUPERVISORS, needs_reason=True),
    A.DEFER: Rule(IN_UNIT, S.DEFERRED, _SUPERVISORS, needs_reason=True),
    A.RESUME: Rule(frozenset({S.DEFERRED}), S.HANDLING, _SUPERVISORS),
    A.FEEDBACK: Rule(frozenset({S.HANDLING}), S.FEEDBACK, _FIELD),
    A.REWORK: Rule(frozenset({S.FEEDBACK, S.VERIFIED}), S.HANDLING, _OPERATORS, needs_reason=True),
    A.VERIFY: Rule(frozenset({S.FEEDBACK}), S.VERIFIED, _OPERATORS),
    A.CLOSE: Rule(frozenset({S.VERIFIED}), S.CLOSED, _SUPERVISORS),
    A.VOID: Rule(frozenset({S.COLLECTED, S.REGISTERED, S.DISPATCHED, S.RETURNED}), S.VOID, _OPERATORS,
                 needs_reason=True),
    A.REOPEN: Rule(frozenset({S.VERIFIED, S.CLOSED}), S.DISPATCHED, _SYSTEM_ONLY, needs_reason=True),
    A.ESCALATE: Rule(OPEN - {S.COLLECTED}, None, _SYSTEM_ONLY, needs_reason=True),
    A.JOIN: Rule(OPEN, None, _SYSTEM_ONLY, needs_reason=True),
}
"""`collect` is not here: it opens a case and has no source status."""


class WorkflowError(Exception):
    def __init__(self, status_code: int, message: str, allowed: list[CaseAction]) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.allowed = allowed


def allowed_actions(status: CaseStatus, role: Role | None) -> list[CaseAction]:
    """What `role` may do to a case in `status` (None: the system)."""
    return [action for action, rule in RULES.items()
            if status in rule.sources and (role is None or role in rule.roles)]


def next_status(status: CaseStatus, action: CaseAction, role: Role | None, reason: str | None = None) -> CaseStatus:
    """The status after `action`; raises WorkflowError: 409 when the case's status does not allow it, 403 when the
    role may not take it, 422 when a reason is required and missing."""
    rule = RULES.get(action)
    if rule is None:
        raise WorkflowError(409, f"{action.value} is not an action on an existing case", allowed_actions(status, role))
    if role is not None and role not in rule.roles:
        raise WorkflowError(403, f"{a_role(role)} may not {action.value} a case", allowed_actions(status, role))
    if status not in rule.sources:
        allowed = allowed_actions(status, role)
        shown = ", ".join(a.value for a in allowed) or "nothing"
        raise WorkflowError(409, f"a {status.value} case cannot be {action.value}: allowed now: {shown}", allowed)
    if rule.needs_reason and not (reason and reason.strip()):
        raise WorkflowError(422, f"{action.value} needs a reason", allowed_actions(status, role))
    return rule.target or status
