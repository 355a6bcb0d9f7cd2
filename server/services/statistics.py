"""Planner statistics for tables that grow fast while they are young.

PostgreSQL's autovacuum analyses a table at most once a minute (`autovacuum_naptime`), and only once a tenth of it
changed. A new city's database doubles many times in its first minutes, and a table never analysed leaves the
planner guessing: it compared each stored image with each of a batch's 450 event ids in a sequential scan (40–60 ms
a batch, a third of the database's time) and looked nearby cases up by category, a third of the table, instead of by
camera view or position. So ingest analyses its own tables whenever one has more than doubled since its last
analysis: a handful of times while the tables are young (each cheap then), hardly ever once they are large, where
autovacuum keeps up. Several workers take turns (an advisory lock); SQLite needs none of this.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import text

from server.db import Database, claim, first_line

log = logging.getLogger(__name__)

GROWING_TABLES = ("events", "evidence", "cases", "case_transitions", "nodes", "dead_letters", "webhook_deliveries")
"""The tables ingest writes, and reads back by key while it writes."""
MIN_ROWS = 500
"""Below this, a table is read whole faster than any plan matters."""
CHECK_EVERY_SECONDS = 2.0
RETRY_SECONDS = 600.0

_GROWN = text("SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(:tables) "
              "AND n_mod_since_analyze >= greatest(:min_rows, n_live_tup / 2) ORDER BY relname")
"""Changed by more than half its rows since its last analysis (a never-analysed table: all of it)."""


class PlannerStatistics:
    def __init__(self, database: Database, every_seconds: float = CHECK_EVERY_SECONDS) -> None:
        self.database = database
        self.every = every_seconds
        self._due = 0.0

    def refresh(self) -> list[str]:
        """Analyse the grown tables, at most every `every_seconds`; returns their names. Never raises: ingest has
        committed its batch before it asks, and a failure here (a role that may not analyse, the database gone)
        is logged and tried again in `RETRY_SECONDS`."""
        if self.database.engine.dialect.name != "postgresql" or time.monotonic() < self._due:
            return []
        self._due = time.monotonic() + self.every
        try:
            return self._analyse_grown()
        except Exception as error:
            self._due = time.monotonic() + RETRY_SECONDS
            log.warning("planner statistics not refreshed (%s: %s); next try in %.0f min", type(error).__name__,
                        first_line(error), RETRY_SECONDS / 60)
            return []

    def _analyse_grown(self) -> list[str]:
        with self.database.session() as session:
            grown = list(session.execute(_GROWN, {"tables": list(GROWING_TABLES), "min_rows": MIN_ROWS}).scalars())
            if not grown or not claim(session, ["planner-statistics"], wait=False):
                return []  # or another worker is analysing them now
            began = time.perf_counter()
            for table in grown:
                session.execute(text(f'ANALYZE "{table}"'))
            session.commit()
        log.info("analysed %s for the query planner (grown since their last analysis) in %.0f ms",
                 ", ".join(grown), 1000 * (time.perf_counter() - began))
        return grown
