"""Where a new violation repeats an earlier case: of the same category, at the same camera view or within the
radius, and open, or finished within the window (the dispatch config's `repeat_window_minutes`, `repeat_radius_m`).
A batch of events looks its candidates up once (`Repeats.nearby_ids`), then each new violation finds its case among
them in memory (`Repeats.of`). A citizen's report without a position repeats the open case reported at its
address (`reported_at`)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from gridwatch.contract import CaseStatus, Category, Location
from server.db import one_of
from server.models import CaseRecord
from server.services.dispatch import address_key
from server.services.workflow import OPEN

View = tuple[str, str, str]
"""(node, camera, zone): a camera's view of one zone."""
Place = tuple[Category, Location | None, View | None]
"""Where a violation was seen: its category, position (if the camera's is known) and camera view."""
S = CaseStatus

_OPEN_SQL = ", ".join(f"'{status.value}'" for status in sorted(OPEN))
_FINISHED_SQL = f"'{CaseStatus.VERIFIED.value}', '{CaseStatus.CLOSED.value}'"
"""Cases a new violation may join (open ones) or reopen (finished within the window)."""
_PLACES_PER_QUERY = 150
"""Places looked up in one statement: SQLite limits how deep an expression (a chain of ORs) may be."""


class Nearby:
    """The cases a batch's new violations may repeat (`Repeats.nearby`), by category, newest first; a case opened
    during the batch is added in front, so the batch's later violations at its place join it. Each case's place is
    read once here: a batch compares every new violation with many of them, and reading mapped attributes costs."""

    def __init__(self, cases: list[CaseRecord] = ()) -> None:
        self._of: dict[str, list[tuple[CaseRecord, View, float | None, float | None]]] = {}
        for case in sorted(cases, key=lambda case: case.id, reverse=True):
            self._of.setdefault(case.category, []).append(self._entry(case))

    @staticmethod
    def _entry(case: CaseRecord) -> tuple[CaseRecord, View, float | None, float | None]:
        return case, (case.node_id, case.camera_id, case.zone_id), case.lat, case.lon

    def add(self, case: CaseRecord) -> None:
        self._of.setdefault(case.category, []).insert(0, self._entry(case))

    def of(self, category: str) -> list[tuple[CaseRecord, View, float | None, float | None]]:
        """(case, camera view, lat, lon) of the category's cases, newest first."""
        return self._of.get(category, [])


def metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: exact enough for the tens of metres that decide 'the same place'."""
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    return 6_371_000 * math.hypot(x, math.radians(lat2 - lat1))


class Repeats:
    """The repeat rules: `window` (how long a finished case may still be reopened) and `radius_m`."""

    def __init__(self, window: timedelta, radius_m: float) -> None:
        self.window, self.radius_m = window, radius_m

    def keys(self, place: Place) -> list[str]:
        """Names for where a new violation at `place` may open a case, for `server.db.claim`: the grid cells
        (8 × the radius wide) its radius reaches, or its camera view where it has no position. Two violations
        that would repeat each other share one (within the radius, one's disc reaches the other's cell; the same
        view), so two workers claiming them take turns instead of opening two cases at one place. Usually one key,
        at most four: a batch of new violations takes a few hundred locks, within PostgreSQL's default lock table
        (`max_locks_per_transaction` 64 × connections) for a handful of workers."""
        category, location, view = place
        if location is None or self.radius_m <= 0:
            return [f"view {category.value} {'/'.join(view)}"] if view is not None else []
        size = 8 * self.radius_m / 111_000  # a cell's height in degrees of latitude
        reach = self.radius_m / 111_000
        reach_lon = reach / max(0.01, math.cos(math.radians(location.lat)))
        keys = []
        for row in range(math.floor((location.lat - reach) / size), math.floor((location.lat + reach) / size) + 1):
            width = size / max(0.01, math.cos(math.radians((row + 0.5) * size)))  # the row's cells are square
            keys += [f"cell {category.value} {row} {column}" for column in range(
                math.floor((location.lon - reach_lon) / width), math.floor((location.lon + reach_lon) / width) + 1)]
        return keys

    def nearby(self, session: Session, places: list[Place], now: datetime) -> Nearby:
        """Every case that a violation at one of `places` (category, position, camera view) may join or reopen."""
        ids = self.nearby_ids(session, places, now)
        with session.no_autoflush:
            found = session.scalars(select(CaseRecord).where(one_of(session, CaseRecord.id, ids))).all() if ids else []
        return Nearby(found)

    def nearby_ids(self, session: Session, places: list[Place], now: datetime) -> set[int]:
        """The ids of `nearby`'s cases, from one query (per 150 places on SQLite): a batch of events asks once, not
        once per violation."""
        dlat = self.radius_m / 111_000
        rows: dict[tuple, None] = {}  # (category, node, camera, zone, lat_lo, lat_hi, lon_lo, lon_hi), in order
        for category, location, view in places:
            if location is None and view is None:
                continue
            box: tuple = (None,) * 4
            if location is not None:
                dlon = dlat / max(0.01, math.cos(math.radians(location.lat)))
                box = (location.lat - dlat, location.lat + dlat, location.lon - dlon, location.lon + dlon)
            rows[(category.value, *(view or (None,) * 3), *box)] = None
        if not rows:
            return set()
        connection = session.connection()
        to_db = CaseRecord.updated_at.type.bind_processor(connection.dialect) or (lambda value: value)
        since = to_db(now - self.window)
        if connection.dialect.name == "postgresql":
            columns = zip(*rows, strict=True)
            return set(connection.execute(_NEARBY_POSTGRESQL, {"since": since} | dict(
                zip(("category", "node", "camera", "zone", "lat_lo", "lat_hi", "lon_lo", "lon_hi"),
                    map(list, columns), strict=True))).scalars())
        return _nearby_ids_sqlite(connection, list(rows), since)

    def of(self, category: Category, location: Location | None, view: View | None, now: datetime,
           nearby: Nearby) -> CaseRecord | None:
        """Of `nearby`, the newest case at the same place (the same camera view, or within the radius) and of the
        same category that is open, or was closed there within the window."""
        window, radius = self.window, self.radius_m
        for case, case_view, lat, lon in nearby.of(category.value):
            if case_view != view and (location is None or lat is None or lon is None
                                      or metres(lat, lon, location.lat, location.lon) > radius):
                continue
            status = S(case.status)
            if status is S.VOID or (status in (S.VERIFIED, S.CLOSED)
                                    and (case.closed_at or case.verified_at or case.updated_at) < now - window):
                continue
            return case
        return None


_REPEATABLE_SQL = (f"(c.status IN ({_OPEN_SQL}) OR (c.status IN ({_FINISHED_SQL}) "
                   "AND coalesce(c.closed_at, c.verified_at, c.updated_at) >= :since))")
_REPEATABLE_SQLITE = _REPEATABLE_SQL.replace(":since", "?")
_NEARBY_POSTGRESQL = text(f"""
WITH p AS (SELECT * FROM unnest(CAST(:category AS text[]), CAST(:node AS text[]), CAST(:camera AS text[]),
                                CAST(:zone AS text[]), CAST(:lat_lo AS float8[]), CAST(:lat_hi AS float8[]),
                                CAST(:lon_lo AS float8[]), CAST(:lon_hi AS float8[]))
           AS p(category, node_id, camera_id, zone_id, lat_lo, lat_hi, lon_lo, lon_hi))
SELECT c.id FROM p CROSS JOIN LATERAL (
    SELECT c.id FROM cases c WHERE c.node_id = p.node_id AND c.camera_id = p.camera_id AND c.zone_id = p.zone_id
                             AND c.category = p.category AND {_REPEATABLE_SQL} OFFSET 0) c
UNION
SELECT c.id FROM p CROSS JOIN LATERAL (
    SELECT c.id FROM cases c WHERE c.lat BETWEEN p.lat_lo AND p.lat_hi AND c.lon BETWEEN p.lon_lo AND p.lon_hi
                             AND c.category = p.category AND {_REPEATABLE_SQL} OFFSET 0) c""")  # noqa: S608 - constants only; every value is bound
"""On PostgreSQL the places go in as arrays: one statement of one shape for any batch, which psycopg prepares once
(a chain of 150 ORs was parsed and planned anew each time). LATERAL … OFFSET 0, so that each place is an index
lookup (its view, or its box): as a join the planner hashed on category and compared every case with every place
(3.7 s for 150 places among 300,000 cases)."""


def _nearby_ids_sqlite(connection: Connection, rows: list[tuple], since: object) -> set[int]:
    """Driver SQL (a batch's lookup has a new shape every time, and building it as SQLAlchemy expressions costs more
    than running it; every value is bound). The places are a VALUES table, each looked up by its view and by its box
    through their indexes: as a chain of ORs SQLite read every case of the category for it (a tenth of a busy
    worker's time, and growing with the cases kept; this way 9× less)."""
    ids: set[int] = set()
    for first in range(0, len(rows), _PLACES_PER_QUERY):
        part = rows[first:first + _PLACES_PER_QUERY]
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(part))
        ids.update(row[0] for row in connection.exec_driver_sql(
            f"WITH p(category, node_id, camera_id, zone_id, lat_lo, lat_hi, lon_lo, lon_hi) AS (VALUES {values}) "
            f"SELECT c.id FROM p CROSS JOIN cases c INDEXED BY ix_cases_view ON c.node_id = p.node_id "
            f"AND c.camera_id = p.camera_id AND c.zone_id = p.zone_id WHERE c.category = p.category "
            f"AND {_REPEATABLE_SQLITE} UNION "
            f"SELECT c.id FROM p CROSS JOIN cases c INDEXED BY ix_cases_place ON c.lat BETWEEN p.lat_lo AND p.lat_hi "
            f"AND c.lon BETWEEN p.lon_lo AND p.lon_hi WHERE c.category = p.category AND {_REPEATABLE_SQLITE}",  # noqa: S608
            (*(value for row in part for value in row), since, since)))
    return ids


def reported_at(session: Session, category: Category, address: str) -> CaseRecord | None:
    """The open case of `category` that citizens reported at `address` without a position (`address_key`:
    letter case and spacing aside, in any script, which SQL's lower() is not), the latest if several. Cases
    waiting to be placed are few: compared here rather than in SQL."""
    wanted = address_key(address)
    return next((case for case in session.scalars(select(CaseRecord).where(
        CaseRecord.category == category.value, CaseRecord.lat.is_(None), CaseRecord.address.is_not(None),
        CaseRecord.status.in_([status.value for status in OPEN])).order_by(CaseRecord.id.desc()))
        if address_key(case.address) == wanted), None)
