"""Assessment for supervisors and dashboards, and the public board of streets and chiefs."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from server.api.deps import EARLIEST_DAY, LATEST_DAY, SessionDep, allow
from server.api.schemas import BoardOut, BoardStreet, BoardUnit
from server.core.security import Role
from server.models import utcnow
from server.services.assessment import (
    GroupBy,
    Indicators,
    Period,
    assess,
    load_cases,
    load_rounds,
    next_period,
    period_start,
    to_csv,
)
from server.services.dispatch import Dispatcher

router = APIRouter(tags=["assessment"])

MAX_DAYS = 800
"""The longest range assessed at once (two years of months); by year, three whole years (`MAX_YEARS`)."""
MAX_YEARS = 3


@router.get("/api/v1/assessment", response_model=list[Indicators],
            dependencies=[Depends(allow(Role.SUPERVISOR, Role.OPERATOR, Role.INTEGRATOR))],
            responses={200: {"content": {"text/csv": {}}}},
            summary="Indicators per street chief, unit, grid or camera, by day, week, month, quarter or year")
def get_assessment(
    request: Request,
    response: Response,
    session: SessionDep,
    by: Annotated[GroupBy, Query(description="street_chief, unit, grid or camera.")] = GroupBy.UNIT,
    period: Annotated[Period, Query(description="day, week, month, quarter or year (the annual evaluation, "
                                                "年度考评).")] = Period.MONTH,
    start: Annotated[date | None, Query(alias="from", ge=EARLIEST_DAY, le=LATEST_DAY,
                                        description="First day (local), moved back to the start of its period; "
                                                    "default: the start of the current period, or of the "
                                                    "`periods`th period back to it.")] = None,
    end: Annotated[date | None, Query(alias="to", ge=EARLIEST_DAY, le=LATEST_DAY,
                                      description="Day after the last (local), moved on to the end of the period "
                                                  "the last day is in; default: the end of the period `from` is "
                                                  "in, or without `from`, of the current one. The range used is in "
                                                  "the X-Assessment-From and X-Assessment-To headers.")] = None,
    periods: Annotated[int, Query(ge=1, le=MAX_DAYS,
                                  description="Without `from`: how many periods, up to and including the current "
                                              "one (in the city's time zone), e.g. six months for a trend.")] = 1,
    format: Annotated[Literal["json", "csv"], Query(description="csv: a spreadsheet download.")] = "json",  # noqa: A002
):  # noqa: ANN201 - JSON or CSV
    dispatcher: Dispatcher = request.app.state.ingest.cases.dispatcher
    zone, now = dispatcher.zone, utcnow()
    anchor = period_start(start or now.astimezone(zone).date(), period)  # `from`'s period, or the current one
    first = anchor
    for _ in range(periods - 1 if start is None else 0):
        first = period_start(first - timedelta(days=1), period)
    if end is not None and end <= (start or first):
        raise HTTPException(status_code=422, detail="to: must be after from")
    # whole periods only: a row labelled with a month covers the month, not the days of it the range held
    last = next_period(period_start(end - timedelta(days=1), period), period) if end else next_period(anchor, period)
    if period is Period.YEAR and last.year - first.year > MAX_YEARS:
        raise HTTPException(status_code=422, detail=f"from/to: at most {MAX_YEARS} years at once")
    if period is not Period.YEAR and (last - first).days > MAX_DAYS:
        raise HTTPException(status_code=422, detail=f"from/to: at most {MAX_DAYS} days at once ({MAX_YEARS} years "
                                                    "by year)")
    since, until = datetime.combine(first, time(), zone), datetime.combine(last, time(), zone)
    turns = load_rounds(session, since, until)
    rows = assess(load_cases(session, since, until), by, period, zone, now, turns)
    used = {"X-Assessment-From": first.isoformat(), "X-Assessment-To": last.isoformat()}
    if format == "csv":
        name = f"gridwatch-assessment-{by.value}-{period.value}-{first.isoformat()}.csv"
        return Response(to_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'} | used)
    response.headers.update(used)
    return rows


@router.get("/public/board", response_model=BoardOut,
            summary="Public board: every street's grids with their street chief and phone, and the member units")
def get_board(request: Request) -> BoardOut:
    dispatcher: Dispatcher = request.app.state.ingest.cases.dispatcher
    streets: dict[str, BoardStreet] = {}
    for grid in dispatcher.grids:
        props = grid.properties
        street = streets.setdefault(props.street or "(no street office)", BoardStreet(street=props.street or
                                                                                      "(no street office)", grids=[]))
        chief = props.street_chief
        street.grids.append({"grid_id": props.grid_id, "name": props.name, "community": props.community,
                             "street_chief": chief.name if chief else None,
                             "phone": chief.phone if chief else None})
    units = [BoardUnit(unit_id=unit_id, name=unit.name, phone=unit.phone)
             for unit_id, unit in (dispatcher.config.units.items() if dispatcher.config else [])]
    return BoardOut(streets=list(streets.values()), units=units)
