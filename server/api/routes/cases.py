"""Cases: list with filters, one with its events and history, and the workflow's actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import and_, func, not_, select
from sqlalchemy.exc import IntegrityError

from gridwatch.contract import CaseAction, CaseStatus, Category
from server.api import changes
from server.api.deps import (
    MAX_ID,
    PICTURE_ROLES,
    Caller,
    CaseWorker,
    PageNumber,
    PageSize,
    RowId,
    SessionDep,
    get_caller,
    moment_problem,
)
from server.api.schemas import (
    ActionIn,
    CaseDetail,
    CaseSummary,
    EventOut,
    Page,
    PhotoOut,
    ReportOut,
    TransitionOut,
)
from server.core.security import Role, TokenEntry
from server.models import CaseRecord, CaseTransition, EventRecord, EvidenceRecord, utcnow
from server.services import action_keys
from server.services.case_records import case_assignment
from server.services.cases import CaseService
from server.services.dispatch import Dispatcher
from server.services.events import lock_case
from server.services.feedback import RejectReason, Verdict, confirm_seen_through, review, round_detection
from server.services.photos import photos_of
from server.services.workflow import IN_UNIT, WorkflowError, allowed_actions

router = APIRouter(prefix="/api/v1/cases", tags=["cases"], dependencies=[Depends(get_caller)])
SEE_REPORTERS = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})
"""Who sees a citizen's contact details on a case (to call them back); integrators and field staff do not."""

_SORTS = {"opened_at": CaseRecord.opened_at, "updated_at": CaseRecord.updated_at, "id": CaseRecord.id,
          "deadline_at": CaseRecord.deadline_at, "score": CaseRecord.score}


def summary(case: CaseRecord, seq: int | None = None) -> CaseSummary:
    """`seq`: the case's latest step's."""
    return CaseSummary.model_validate(case).model_copy(update={"assignment": case_assignment(case), "seq": seq})


def _known(session: SessionDep, dispatcher: Dispatcher, unit_id: str | None, grid_id: str | None) -> None:
    """A unit or grid the dispatch configuration does not name, and no case has, is a typo (`Sanitation`): 422
    naming those there are, not a list that is empty for good. (A unit gone from the configuration still lists the
    cases it had.)"""
    for name, value, known, column in (
            ("unit_id", unit_id, dispatcher.config.units if dispatcher.config else None, CaseRecord.unit_id),
            ("grid_id", grid_id, {grid.properties.grid_id for grid in dispatcher.grids}, CaseRecord.grid_id)):
        if value is None or known is None or value in known:
            continue
        if session.scalar(select(CaseRecord.id).where(column == value).limit(1)) is None:
            raise HTTPException(status_code=422, detail=f"{name}: no {name[:-3]} {value!r}; there are: "
                                                        f"{', '.join(sorted(known)) or '(none)'}")


@router.get("", response_model=changes.CasePage, summary="List cases, filtered, paged and sorted")
def list_cases(
    session: SessionDep,
    request: Request,
    status: Annotated[list[CaseStatus] | None, Query(description="Only cases in these statuses (repeatable).")]
    = None,
    category: Annotated[Category | None, Query(description="Only cases of this category.")] = None,
    unit_id: Annotated[str | None, Query(max_length=64, description="Only cases assigned to this unit.")] = None,
    grid_id: Annotated[str | None, Query(max_length=64, description=(
        "Only cases in this unit grid (by their position, dispatched or not)."))] = None,
    node_id: Annotated[str | None, Query(max_length=64, description="Only cases raised by this node.")] = None,
    camera_id: Annotated[str | None, Query(max_length=64, description="Only cases raised by this camera.")] = None,
    overdue: Annotated[bool | None, Query(description="true: only open cases past their deadline; false: only "
                                                      "those that are not.")] = None,
    opened_after: Annotated[datetime | None, Query(description="Opened at or after (ISO 8601).")] = None,
    opened_before: Annotated[datetime | None, Query(description="Opened before (ISO 8601).")] = None,
    updated_after: Annotated[datetime | None, Query(description=(
        "Changed at or after (ISO 8601, with a time zone). To follow changes, start with sort=updated_at (and this, "
        "to start from a time), then pass each page's `next` as `after`."))] = None,
    after: Annotated[str | None, Query(max_length=100, description=(
        "Following changes: the `next` of the page before, as it came. Lists the cases that changed after it, in "
        "the order they changed (`updated_at`, then `id`), each once, at its latest change; a case that changes "
        "again is listed again. Of a case seen twice keep the one with the higher `seq`."))] = None,
    id_below: Annotated[int | None, Query(ge=1, le=MAX_ID, description=(
        "Only cases with a smaller id: keyset paging for a list that changes while it is read (with sort=-id, "
        "pass the last id of the page you have)."))] = None,
    page: PageNumber = 1,
    page_size: PageSize = 50,
    sort: Annotated[str | None, Query(pattern="^-?(opened_at|updated_at|id|deadline_at|score)$",
                                      description="Field; '-' for descending; by default -opened_at (with `after`: "
                                                  "updated_at, the only one it takes). Pages by offset shift as "
                                                  "cases change between them: page a changing list with sort=-id "
                                                  "and id_below, or follow changes with `after`.")] = None,
) -> changes.CasePage:
    _known(session, request.app.state.ingest.cases.dispatcher, unit_id, grid_id)
    if after is not None and (sort not in (None, "updated_at") or page != 1):
        raise HTTPException(status_code=422, detail="after: it pages by itself, in the order of changes: leave out "
                                                    "page and sort (or sort=updated_at)")
    sort = sort or ("updated_at" if after is not None else "-opened_at")
    query = select(CaseRecord)
    if status:
        query = query.where(CaseRecord.status.in_([s.value for s in status]))
    for column, value in ((CaseRecord.category, category.value if category else None), (CaseRecord.unit_id, unit_id),
                          (CaseRecord.grid_id, grid_id), (CaseRecord.node_id, node_id),
                          (CaseRecord.camera_id, camera_id)):
        if value is not None:
            query = query.where(column == value)
    for name, moment in (("opened_after", opened_after), ("opened_before", opened_before),
                         ("updated_after", updated_after)):
        if problem := moment_problem(name, moment):
            raise HTTPException(status_code=422, detail=problem)
    if opened_after is not None:
        query = query.where(CaseRecord.opened_at >= opened_after)
    if opened_before is not None:
        query = query.where(CaseRecord.opened_at < opened_before)
    if updated_after is not None:
        query = query.where(CaseRecord.updated_at >= updated_after)
    if id_below is not None:
        query = query.where(CaseRecord.id < id_below)
    start = (updated_after or changes.START, 0)
    if after is not None:
        start = changes.parse_after(after)
        query = query.where(changes.after(*start))
    if overdue is not None:  # false: every case not overdue (it was taken as no filter at all)
        late = and_(CaseRecord.status.in_([s.value for s in IN_UNIT | {CaseStatus.RETURNED}]),
                    CaseRecord.deadline_at.is_not(None), CaseRecord.deadline_at < utcnow())  # no NULL to negate
        query = query.where(late if overdue else not_(late))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    column = _SORTS[sort.lstrip("-")]
    # cases without the value (no deadline before dispatch) last either way, on both databases: sorting by deadline
    # puts the most urgent first, not the cases nobody has a deadline for
    order = (column.desc().nulls_last(), CaseRecord.id.desc()) if sort.startswith("-") else \
        (column.asc().nulls_last(), CaseRecord.id.asc())
    latest_step = select(func.max(CaseTransition.id)).where(CaseTransition.case_id == CaseRecord.id) \
        .scalar_subquery()
    rows = session.execute(query.add_columns(latest_step).order_by(*order).offset((page - 1) * page_size)
                           .limit(page_size)).all()
    following = sort == "updated_at"  # in the order of changes: where the next page of them starts
    return changes.CasePage(items=[summary(case, seq) for case, seq in rows], total=total, page=page,
                            page_size=page_size,
                            next=changes.next_cursor([case for case, _ in rows], start, utcnow()) if following
                            else None)


def _case(session: SessionDep, case_id: int, to_change: bool = False) -> CaseRecord:
    case = lock_case(session, case_id) if to_change else session.get(CaseRecord, case_id)
    if case is None:
        raise HTTPException(status_code=404, detail=f"case {case_id} does not exist")
    return case


RECENT_EVENTS = 500
"""Events a case's page lists besides those with evidence: the latest (the rest are paged, `/events`)."""
RECENT_STEPS = 500
"""Steps a case's page lists: the latest (a busy place's open case gains a `join` with each new sighting; the rest
are paged, `/transitions`)."""


def sees_pictures(caller: TokenEntry) -> bool:
    """Evidence and photos show people and number plates: integrators, refused them, are not handed their links."""
    return caller.role in PICTURE_ROLES or caller.role is Role.ADMIN


def events_out(session: SessionDep, events: list[EventRecord], pictures: bool = True) -> list[EventOut]:
    """Events as the API shows them, with the links of the images that have arrived."""
    stored = {
        (row.event_id, row.variant)
        for row in session.execute(select(EvidenceRecord.event_id, EvidenceRecord.variant).where(
            EvidenceRecord.event_id.in_([event.event_id for event in events])))
    }
    return [
        EventOut(
            event_id=event.event_id,
            type=event.type,
            observed_at=event.observed_at,
            received_at=event.received_at,
            dwell_seconds=event.payload["dwell_seconds"],
            score=event.payload["score"],
            box=event.payload["box"],
            evidence_url=f"/api/v1/evidence/{event.event_id}" if pictures and (event.event_id, "frame") in stored
            else None,
            crop_url=f"/api/v1/evidence/{event.event_id}?variant=crop"
            if pictures and (event.event_id, "crop") in stored else None,
        )
        for event in events
    ]


def detail(session: SessionDep, case: CaseRecord, caller: TokenEntry) -> CaseDetail:
    of_case = EventRecord.case_id == case.id
    total = session.scalar(select(func.count()).select_from(EventRecord).where(of_case)) or 0
    latest = select(EventRecord.id).where(of_case).order_by(EventRecord.observed_at.desc(), EventRecord.id.desc()) \
        .limit(RECENT_EVENTS)
    with_images = select(EventRecord.id).join(EvidenceRecord, EvidenceRecord.event_id == EventRecord.event_id) \
        .where(of_case)
    ids = set(session.scalars(latest)) | set(session.scalars(with_images))
    shown = list(session.scalars(select(EventRecord).where(EventRecord.id.in_(ids))
                                 .order_by(EventRecord.observed_at, EventRecord.id)))
    events = events_out(session, shown, sees_pictures(caller))
    of_case_steps = CaseTransition.case_id == case.id
    steps = session.scalar(select(func.count()).select_from(CaseTransition).where(of_case_steps)) or 0
    latest_steps = list(session.scalars(select(CaseTransition).where(of_case_steps)
                                        .order_by(CaseTransition.id.desc()).limit(RECENT_STEPS)))
    return CaseDetail(
        **summary(case, latest_steps[0].id if latest_steps else None).model_dump(),
        violation_id=case.violation_id,
        events=events,
        events_total=total,
        transitions=[TransitionOut.model_validate(t) for t in reversed(latest_steps)],
        transitions_total=steps,
        reports=[ReportOut.model_validate(report if caller.role in SEE_REPORTERS
                                          else {**report, "reporter": None, "media_url": None})
                 for report in case.reports or []],
        evidence_urls=[e.evidence_url for e in events if e.evidence_url],
        crop_urls=[e.crop_url for e in events if e.crop_url],
        photos=[PhotoOut.of(photo, sees_pictures(caller)) for photo in photos_of(session, case.id)],
        allowed_actions=[a.value for a in allowed_actions(CaseStatus(case.status), caller.role)
                         if _may_touch(caller, case)],
    )


@router.get("/{case_id}", response_model=CaseDetail,
            summary="One case with its events, evidence, history and what the caller may do to it")
def get_case(case_id: RowId, session: SessionDep, caller: Caller) -> CaseDetail:
    return detail(session, _case(session, case_id), caller)


@router.get("/{case_id}/events", response_model=Page[EventOut],
            summary="Every event of a case, first to last, a page at a time (the case itself lists the latest)")
def get_case_events(case_id: RowId, session: SessionDep, caller: Caller, page: PageNumber = 1,
                    page_size: PageSize = 100) -> Page[EventOut]:
    rows, total = _page_of(session, EventRecord, _case(session, case_id).id, (EventRecord.observed_at, EventRecord.id),
                           page, page_size)
    return Page(items=events_out(session, rows, sees_pictures(caller)), total=total, page=page, page_size=page_size)


@router.get("/{case_id}/transitions", response_model=Page[TransitionOut],
            summary="Every step of a case, first to last, a page at a time (the case itself lists the latest)")
def get_case_transitions(case_id: RowId, session: SessionDep, _caller: Caller, page: PageNumber = 1,
                         page_size: PageSize = 100) -> Page[TransitionOut]:
    rows, total = _page_of(session, CaseTransition, _case(session, case_id).id, (CaseTransition.id,), page, page_size)
    return Page(items=[TransitionOut.model_validate(row) for row in rows], total=total, page=page,
                page_size=page_size)


def _page_of(session: SessionDep, model: type[EventRecord] | type[CaseTransition], case_id: int, order: tuple,
             page: int, page_size: int) -> tuple[list, int]:
    """One page of a case's rows of `model`, first to last by `order`, and how many it has in all."""
    of_case = model.case_id == case_id
    total = session.scalar(select(func.count()).select_from(model).where(of_case)) or 0
    rows = list(session.scalars(select(model).where(of_case).order_by(*order)
                                .offset((page - 1) * page_size).limit(page_size)))
    return rows, total


def _may_touch(caller: TokenEntry, case: CaseRecord) -> bool:
    """Field staff act on their own unit's cases only."""
    return caller.role is not Role.FIELD_STAFF or caller.unit is None or caller.unit == case.unit_id


@router.post("/{case_id}/actions", response_model=CaseDetail,
             responses={409: {"description": "Not allowed in the case's status; the body lists what is."},
                        403: {"description": "The caller's role may not take this action."},
                        422: {"description": "A field the action does not take, or an Idempotency-Key sent with "
                                             "another request before."}},
             summary="Take a workflow action: file, dispatch, reassign, accept, return, extend, defer, resume, "
                     "feedback, rework, verify, close, void")
def act(case_id: RowId, body: ActionIn, session: SessionDep, caller: CaseWorker, request: Request,  # noqa: ANN201
        response: Response, idempotency_key: Annotated[str | None, Header(
            alias="Idempotency-Key", min_length=1, max_length=255,
            description="Any unique text (a UUID) per action: the same request sent again with it (a retry after a "
                        "lost answer) is not taken twice, and is answered with the case as it stands "
                        "(`Idempotent-Replayed: true`). Kept 24 hours.")] = None):
    case = _case(session, case_id, to_change=True)  # a detection changing it meanwhile waits for this step
    if not _may_touch(caller, case):
        raise HTTPException(status_code=403, detail=f"case {case_id} is assigned to {case.unit_id}, not to your "
                                                    f"unit {caller.unit}")
    keyed, now = idempotency_key is not None, utcnow()
    asked = body.model_dump_json() if keyed else ""
    try:
        if keyed and action_keys.seen_before(session, caller.sha256, idempotency_key, case_id, asked, now):
            response.headers["Idempotent-Replayed"] = "true"
            return detail(session, case, caller)
    except action_keys.KeyReused as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    service: CaseService = request.app.state.ingest.cases
    try:
        messages = service.act(case, body.action, caller.name, caller.role, now, body.reason, body.unit_id,
                               body.extend_minutes, body.void_reason, body.location)
    except WorkflowError as error:
        return JSONResponse(status_code=error.status_code, content={
            "detail": str(error), "status": case.status, "allowed": [a.value for a in error.allowed]})
    if body.action in (CaseAction.FILE, CaseAction.VOID) and (
            detection := round_detection(session, case.id)) is not None:  # the operator's verdict trains models
        verdict = Verdict.CONFIRMED if body.action is CaseAction.FILE else Verdict.REJECTED
        reason = RejectReason(body.void_reason) if body.action is CaseAction.VOID else None
        review(session, detection, verdict, reason, caller.name, body.reason, commit=False)
    confirm_seen_through(session, messages)  # verified or closed: the detection was real
    outgoing = request.app.state.ingest.record_changes(session, messages)
    if keyed:
        action_keys.remember(session, caller.sha256, idempotency_key, case_id, asked, now)
    try:
        session.commit()
    except IntegrityError as error:  # the same key on another case's action at this very moment: that one has it
        if not keyed or "action_keys" not in str(error):
            raise
        session.rollback()
        raise HTTPException(status_code=422, detail=f"Idempotency-Key {idempotency_key!r} was sent with another "
                                                    f"request: use a new key for each action") from None
    request.app.state.ingest.announce(messages, outgoing)
    return detail(session, case, caller)
