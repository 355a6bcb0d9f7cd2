"""server.models: times go into the database as UTC and come back time-zone aware; SQLite's own quicker binding
must write exactly the text SQLAlchemy's composition (this type, then its DATETIME) would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import TypeDecorator
from sqlalchemy.dialects import sqlite

from server.db import Database
from server.models import CaseRecord, CaseTransition, UTCDateTime

TIMES = [datetime(2026, 12, 1, 6, 52, 6, 123456, tzinfo=UTC), datetime(2026, 12, 1, 6, 52, 6, tzinfo=UTC),
         datetime(2026, 12, 1, 6, 52, 6, 1, tzinfo=timezone(timedelta(hours=8))),
         datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/Amsterdam")),  # the hour the clocks go forward
         datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Amsterdam")),
         datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 31, 12, tzinfo=timezone(timedelta(hours=-11))),
         datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))]


def test_sqlite_binds_the_text_sqlalchemy_would_write():
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    composed = TypeDecorator.bind_processor(UTCDateTime().dialect_impl(dialect), dialect)
    for value in [*TIMES, None]:
        assert ours(value) == composed(value), value
    for process in (ours, composed):
        with pytest.raises(ValueError, match="naive datetimes are not stored"):
            process(datetime(2026, 12, 1, 6, 52))


def test_times_come_back_the_same_instant_and_time_zone_aware(database_url):
    database = Database(database_url)
    with database.session() as session:
        case = CaseRecord(violation_id="v", category="litter", code="0101", status="collected", node_id="n",
                          camera_id="c", zone_id="z", label="garbage", score=0.9, opened_at=TIMES[0],
                          updated_at=TIMES[0], started_at=TIMES[0], last_seen_at=TIMES[0])
        session.add(case)
        session.flush()
        steps = [CaseTransition(case_id=case.id, action="collect", to_status="collected", at=at, actor="t",
                                reason=str(index)) for index, at in enumerate(TIMES)]
        session.add_all(steps)
        session.commit()
        ids = [step.id for step in steps]
    with database.session() as session:
        for step_id, at in zip(ids, TIMES, strict=True):
            back = session.get(CaseTransition, step_id).at
            assert back == at.astimezone(UTC) and back.utcoffset() == timedelta(0), (at, back)
