"""The case engine as the case tests drive it: a database, a clock passed in, detections and people's steps
(the `city` fixture, tests/server/conftest.py). Time is passed in, so an afternoon runs in milliseconds."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gridwatch.contract import CaseAction, CaseMessage, event_topic
from server.core.security import Role
from server.db import Database
from server.models import CaseRecord
from server.services.cases import CaseService
from server.services.dispatch import Dispatcher
from server.services.evidence import EvidenceStore
from server.services.ingest import Ingest
from tests.conftest import DISPATCH
from tests.factories import event_payload

CST = timezone(timedelta(hours=8))
GRID_WL02 = {"lat": 30.2742, "lon": 120.1652}  # street chief 李晓梅, Wulin Street Office


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 10, 0, tzinfo=CST)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def make_city(tmp_path: Path, database_url: str):  # noqa: ANN201 - the City below
    """The case engine on a database of the test's own, fed like the MQTT loop feeds it; `messages` is what
    integrators get."""

    class City:
        clock = Clock()
        messages: list[CaseMessage] = []
        database = Database(database_url)
        ingest = Ingest(database, CaseService(Dispatcher.from_file(DISPATCH)), EvidenceStore(tmp_path / "ev"),
                        publish_case=messages.append, clock=clock)

        def event(self, **overrides) -> tuple[str, bytes]:
            """A litter detection of node-a as the broker delivers it: topic and payload."""
            payload = event_payload(**{"category": "litter", "code": "0102", "label": "garbage", "score": 0.8,
                                       "location": GRID_WL02, "zone_id": "kerb",
                                       "observed_at": self.clock.now.isoformat(), **overrides})
            return event_topic("node-a", payload["category"]), json.dumps(payload).encode()

        def detect(self, **overrides) -> dict:
            topic, payload = self.event(**overrides)
            assert self.ingest.handle(topic, payload) == "stored"
            return json.loads(payload)

        def case(self, case_id: int = 1) -> CaseRecord:
            with self.database.session() as session:
                case = session.get(CaseRecord, case_id)
                _ = case.transitions, case.events
                return case

        def cases(self) -> int:
            with self.database.session() as session:
                return session.query(CaseRecord).count()

        def act(self, action: str, role: Role = Role.ADMIN, case_id: int = 1, **fields) -> None:
            with self.database.session() as session:
                case = session.get(CaseRecord, case_id)
                self.messages += self.ingest.cases.act(case, CaseAction(action), f"test {role.value}", role,
                                                       self.clock.now, **fields)
                session.commit()

        def actions(self) -> list[tuple[str, str]]:
            return [(t.action, t.to_status) for t in self.case().transitions]

    return City()
