"""Idempotency keys of case actions (server/services/action_keys.py) on a real database: a key answers for its own
token only, for a day, and the sweep forgets it then. The HTTP side: tests/server/test_case_api.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from server.models import ActionKey
from server.services import action_keys

ZHANG_1, ZHANG_2 = "a" * 64, "b" * 64  # two people named 张敏, each with a token of their own
BODY = '{"action":"extend","reason":"truck","extend_minutes":60.0}'


def a_case_with_a_key(city):  # noqa: ANN001, ANN201 - the city fixture; when the key was sent
    """Case 1, and ZHANG_1's key `k-1` for BODY on it, sent now."""
    city.detect()
    with city.database.session() as session:
        action_keys.remember(session, ZHANG_1, "k-1", 1, BODY, city.clock.now)
        session.commit()
    return city.clock.now


def test_a_key_answers_for_its_own_token_only(city):
    now = a_case_with_a_key(city)
    with city.database.session() as session:
        assert action_keys.seen_before(session, ZHANG_1, "k-1", 1, BODY, now)
        assert not action_keys.seen_before(session, ZHANG_2, "k-1", 1, BODY, now), \
            "the other 张敏's request with the same key is an action of its own"
        with pytest.raises(action_keys.KeyReused, match="was sent with another request"):
            action_keys.seen_before(session, ZHANG_1, "k-1", 1, BODY.replace("60.0", "90.0"), now)


def test_a_key_is_forgotten_after_a_day_and_the_sweep_removes_it(city):
    sent = a_case_with_a_key(city)
    a_day_on = sent + action_keys.KEPT + timedelta(minutes=1)
    with city.database.session() as session:
        assert not action_keys.seen_before(session, ZHANG_1, "k-1", 1, BODY.replace("60.0", "90.0"), a_day_on), \
            "past its day the key is free again (no replay, no refusal)"
        action_keys.remember(session, ZHANG_1, "k-1", 1, BODY, a_day_on)  # taken again: the old row gives way
        session.commit()
        assert session.query(ActionKey).count() == 1
    city.ingest.sweep(a_day_on + action_keys.KEPT + timedelta(minutes=1))
    with city.database.session() as session:
        assert session.query(ActionKey).count() == 0
