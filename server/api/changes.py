"""Following the cases that changed, a page at a time: a keyset cursor on (`updated_at`, `id`).

Pages by offset skip a case that changes between two of them (it moves to the end, the rest move up one), and
the latest `updated_at` seen as the next `updated_after` asks for the same page for ever once more cases than a
page share one moment (every case of one batch of events, or of one sweep, does). A page's `next` names the last
case listed; the next page starts after it, so a case that changed meanwhile is listed again, at its new place.

A change is stamped as its transaction starts and commits a little later (a batch waits for its cases' locks): a
change committed after a later-stamped one was listed would lie behind a cursor already past it. So `next` passes
only the changes stamped `SETTLED` ago or earlier; later ones are listed, and listed again on the next page.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import HTTPException
from pydantic import Field
from sqlalchemy import ColumnElement, and_, or_

from server.api.deps import MAX_ID, moment_problem
from server.api.schemas import CaseSummary, Page
from server.models import CaseRecord

SETTLED = timedelta(minutes=1)
"""How long after its stamp a change has surely committed: a cursor passes no change younger than this."""
START = datetime(1970, 1, 1, tzinfo=UTC)
"""Before every change: where following starts without `after` or `updated_after`."""
EXAMPLE = "2026-12-07T08:00:00.000000Z,51"


class CasePage(Page[CaseSummary]):
    next: str | None = Field(default=None, description=(
        "With `after`, or sorted by `updated_at`: the cursor to pass as `after` for the cases that changed after "
        "this page's (the same as `after` when none has yet settled: ask again a little later)."))


def cursor(moment: datetime, case_id: int) -> str:
    """A case's place in the order of changes, as `after` takes it (in UTC, with no `+` for a URL to mangle)."""
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}Z,{case_id}"


def parse_after(text: str) -> tuple[datetime, int]:
    """The (`updated_at`, `id`) of an `after` cursor; a 422 saying what is wrong with one that is not."""
    moment_text, _, id_text = text.rpartition(",")
    try:
        moment, case_id = datetime.fromisoformat(moment_text), int(id_text)
    except ValueError:
        hint = " (a `+` in a URL reads as a space: send it as %2B)" if " " in moment_text else ""
        raise HTTPException(status_code=422, detail=f"after: {text[:80]!r} is no cursor; pass a page's `next` as it "
                                                    f"came: <updated_at>,<id>, e.g. {EXAMPLE}{hint}") from None
    if problem := moment_problem("after", moment):
        raise HTTPException(status_code=422, detail=problem)
    if not 0 <= case_id <= MAX_ID:
        raise HTTPException(status_code=422, detail=f"after: the case id {case_id} is out of range (0 to {MAX_ID})")
    return moment, case_id


def after(moment: datetime, case_id: int) -> ColumnElement[bool]:
    """The cases that changed after the case `case_id` did at `moment`, in the order (`updated_at`, `id`)."""
    return or_(CaseRecord.updated_at > moment, and_(CaseRecord.updated_at == moment, CaseRecord.id > case_id))


def next_cursor(rows: list[CaseRecord], start: tuple[datetime, int], now: datetime) -> str:
    """Where the next page starts: after the last case of `rows` (in change order) whose change has settled, or at
    `start`, where this page started, when none has."""
    settled = [case for case in rows if case.updated_at <= now - SETTLED]
    return cursor(settled[-1].updated_at, settled[-1].id) if settled else cursor(*start)
