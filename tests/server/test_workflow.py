"""The case workflow table, path by path: what each action does from each status, and who may take it."""

from __future__ import annotations

import pytest

from gridwatch.contract import CaseAction, CaseStatus
from server.core.security import Role
from server.services.workflow import RULES, WorkflowError, allowed_actions, next_status

OPERATOR, FIELD, SUPERVISOR, INTEGRATOR, ADMIN = (Role.OPERATOR, Role.FIELD_STAFF, Role.SUPERVISOR,
                                                   Role.INTEGRATOR, Role.ADMIN)

# (from, action, by, to): the paths of GB/T 30428 and its side paths
PATHS = [
    ("collected", "file", OPERATOR, "registered"),          # an operator confirms a detection
    ("collected", "void", OPERATOR, "void"),                # ... or rejects it
    ("registered", "dispatch", OPERATOR, "dispatched"),
    ("registered", "void", OPERATOR, "void"),
    ("dispatched", "accept", FIELD, "handling"),
    ("dispatched", "return", FIELD, "returned"),             # 回退: not our unit
    ("handling", "return", FIELD, "returned"),
    ("returned", "dispatch", OPERATOR, "dispatched"),
    ("returned", "void", OPERATOR, "void"),
    ("dispatched", "reassign", OPERATOR, "dispatched"),
    ("handling", "reassign", OPERATOR, "dispatched"),
    ("dispatched", "extend", SUPERVISOR, "dispatched"),     # 延期: same status, later deadline
    ("handling", "extend", OPERATOR, "handling"),
    ("handling", "defer", SUPERVISOR, "deferred"),          # 缓办
    ("deferred", "resume", SUPERVISOR, "handling"),
    ("handling", "feedback", FIELD, "feedback"),
    ("feedback", "rework", OPERATOR, "handling"),           # 返工: feedback not accepted
    ("feedback", "verify", OPERATOR, "verified"),
    ("verified", "rework", OPERATOR, "handling"),
    ("verified", "close", SUPERVISOR, "closed"),
    ("verified", "close", OPERATOR, "closed"),
    ("closed", "reopen", None, "dispatched"),                # the system: the camera sees it again
    ("feedback", "rework", None, "handling"),
    ("handling", "escalate", None, "handling"),
    ("handling", "feedback", ADMIN, "feedback"),             # admins may do what people may
]


@pytest.mark.parametrize(("source", "action", "role", "target"), PATHS)
def test_each_path_leads_where_the_workflow_says(source, action, role, target):
    assert next_status(CaseStatus(source), CaseAction(action), role, reason="because") == CaseStatus(target)


# (from, action): not from here, whoever asks — 409 listing what is allowed
NOT_FROM_HERE = [
    ("collected", "accept"), ("collected", "dispatch"), ("registered", "feedback"), ("dispatched", "close"),
    ("dispatched", "verify"), ("handling", "verify"), ("handling", "accept"), ("feedback", "accept"),
    ("feedback", "void"), ("verified", "void"), ("closed", "feedback"), ("closed", "void"), ("closed", "rework"),
    ("void", "file"), ("void", "dispatch"), ("deferred", "feedback"), ("returned", "accept"),
]


@pytest.mark.parametrize(("source", "action"), NOT_FROM_HERE)
def test_a_forbidden_transition_is_a_409_with_the_allowed_ones(source, action):
    with pytest.raises(WorkflowError) as caught:
        next_status(CaseStatus(source), CaseAction(action), OPERATOR, reason="because")
    assert caught.value.status_code == 409
    assert caught.value.allowed == allowed_actions(CaseStatus(source), OPERATOR)
    assert source in str(caught.value)


# (from, action, by): the status allows it, the role does not — 403
NOT_YOURS = [
    ("collected", "file", FIELD), ("collected", "void", SUPERVISOR), ("dispatched", "accept", INTEGRATOR),
    ("handling", "feedback", INTEGRATOR), ("feedback", "verify", FIELD), ("verified", "close", FIELD),
    ("handling", "defer", FIELD), ("dispatched", "reassign", FIELD), ("closed", "reopen", ADMIN),
    ("handling", "escalate", OPERATOR),
]


@pytest.mark.parametrize(("source", "action", "role"), NOT_YOURS)
def test_a_role_that_may_not_take_an_action_gets_a_403(source, action, role):
    with pytest.raises(WorkflowError) as caught:
        next_status(CaseStatus(source), CaseAction(action), role, reason="because")
    assert caught.value.status_code == 403


@pytest.mark.parametrize("action", ["return", "extend", "defer", "rework", "void", "reassign"])
def test_side_paths_need_a_reason(action):
    source = next(iter(RULES[CaseAction(action)].sources))
    with pytest.raises(WorkflowError, match="needs a reason") as caught:
        next_status(source, CaseAction(action), ADMIN, reason=" ")
    assert caught.value.status_code == 422


def test_finished_cases_take_no_action_from_people():
    for status in ("closed", "void"):
        for role in Role:
            assert allowed_actions(CaseStatus(status), role) == []


def test_every_status_is_reachable_from_collection():
    seen, frontier = {CaseStatus.COLLECTED}, [CaseStatus.COLLECTED]
    while frontier:
        status = frontier.pop()
        for action in allowed_actions(status, None):
            target = next_status(status, action, None, reason="because")
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(CaseStatus)
