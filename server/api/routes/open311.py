"""Open311 GeoReport v2: citizen reports from hotlines and apps enter the same pipeline, and every case — camera or
citizen — is visible as a service request. Reading is public, as the standard expects; posting needs an API key
(an integrator's, operator's or admin's token, as `api_key` or a bearer header). Errors come as GeoReport's
`[{"code": ..., "description": ...}]`. Every route answers as `.json` and as `.xml` (the format GeoReport v2
requires): an `.xml` request is routed as its `.json` twin and its answer written as GeoReport's XML (`as_xml`)."""

from __future__ import annotations

import json
import re
import urllib.parse
from datetime import datetime, timedelta
from typing import Annotated
from xml.etree.ElementTree import Element, SubElement, tostring

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gridwatch.contract import DEFAULT_EVENT_CODES, CaseAction, Category, Location
from server.api.deps import MAX_ID, SessionDep, moment_problem
from server.core.security import LoginThrottle, Role, a_role
from server.db import unstorable_text
from server.models import CaseRecord, CaseTransition, utcnow
from server.services.cases import CaseService
from server.services.workflow import FINISHED

router = APIRouter(prefix="/open311/v2", tags=["open311"])

SERVICES = {
    Category.ILLEGAL_PARKING: ("Illegal parking 机动车乱停放", "A vehicle parked where parking is not allowed."),
    Category.STREET_VENDING: ("Street vending 占道经营", "A stall, cart or shop goods occupying the street."),
    Category.LITTER: ("Exposed garbage 暴露垃圾", "Garbage piles or litter lying on the street."),
    Category.DEVICE_FAULT: ("Camera fault", "A street camera that is dark, frozen, covered or moved."),
    Category.STREETLIGHT_FAULT: ("Streetlight fault 路灯故障", "A streetlight off at night or on by day."),
}
_POSTERS = {Role.INTEGRATOR, Role.OPERATOR, Role.ADMIN}
A = CaseAction
ACTOR_NAME = 110
"""Characters of the token's name in a report's actor, `open311 (NAME)`: the column holds 128 (a name may have as
many, and PostgreSQL refused the longer actor, losing the report)."""


def error(status: int, description: str) -> JSONResponse:
    return JSONResponse(status_code=status, content=[{"code": status, "description": description}])


NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
"""Characters XML 1.0 cannot hold (a citizen's text may carry them): left out of the XML answer."""


def _xml_text(value: object) -> str | None:
    if value is None or value == []:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return NOT_XML.sub("", str(value))


def as_xml(data: object, path: str, status: int) -> bytes:
    """A GeoReport JSON answer as GeoReport's XML: `<errors><error>`, `<services><service>`,
    `<service_definition>`, or `<service_requests><request>`."""
    if status >= 400:
        root, item = "errors", "error"
    elif "/services/" in path:
        root, item = "service_definition", None
    elif path.endswith("/services.json"):
        root, item = "services", "service"
    else:
        root, item = "service_requests", "request"
    top = Element(root)
    for entry in (data if item and isinstance(data, list) else [data]):
        parent = SubElement(top, item) if item else top
        for key, value in (entry.items() if isinstance(entry, dict) else []):
            SubElement(parent, key).text = _xml_text(value)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + tostring(top, encoding="unicode").encode()


class XmlTwin:
    """ASGI middleware: `/open311/….xml` is answered by the route of `….json`, in XML (its errors too); every other
    request passes straight through (the consoles' live stream among them, untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path.startswith("/open311/") and path.endswith(".xml")):
            await self.app(scope, receive, send)
            return
        twin = path[:-4] + ".json"
        started: dict = {}
        body = bytearray()

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self.app({**scope, "path": twin, "raw_path": twin.encode()}, receive, keep)
        status = started["status"]
        try:
            content = as_xml(json.loads(body) if body else None, twin, status)
        except ValueError:  # not GeoReport's JSON (never expected): sent as it came
            await send(started)
            await send({"type": "http.response.body", "body": bytes(body)})
            return
        headers = [(key, value) for key, value in started.get("headers", [])
                   if key.lower() not in (b"content-length", b"content-type")]
        headers += [(b"content-type", b"text/xml; charset=utf-8"), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


@router.get("/services", summary="GeoReport v2: the services (categories) citizens can report")
@router.get("/services.json", include_in_schema=False)
def services() -> list[dict]:
    return [{"service_code": category.value, "service_name": name, "description": text, "metadata": False,
             "type": "realtime", "keywords": DEFAULT_EVENT_CODES[category], "group": "city management"}
            for category, (name, text) in SERVICES.items()]


@router.get("/services/{service_code}", summary="GeoReport v2: a service's definition (no extra attributes here)")
@router.get("/services/{service_code}.json", include_in_schema=False)
def service_definition(service_code: str):  # noqa: ANN201 - GeoReport definition or error
    if service_code not in {category.value for category in SERVICES}:
        return error(404, f"no service {service_code[:40]!r}; see /open311/v2/services")
    return {"service_code": service_code, "attributes": []}


@router.get("/tokens/{token}", summary="GeoReport v2: the request a token became (none here: ids come at once)")
@router.get("/tokens/{token}.json", include_in_schema=False)
def token_lookup(token: str):  # noqa: ANN201 - always a GeoReport error
    return error(404, f"no token {token[:40]!r}: this server answers a report with its service_request_id at once, "
                      "never with a token")


async def _params(request: Request) -> dict[str, str]:
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/"):
        raise ValueError("send the report form-encoded (application/x-www-form-urlencoded) or as JSON; media "
                         "uploads are not taken")
    if content_type.startswith("application/json"):
        try:
            data = json.loads(body or b"{}")
        except (ValueError, RecursionError) as problem:  # (JSONDecodeError, bad UTF-8; nested past Python's limit)
            raise ValueError(f"body is not valid JSON: {type(problem).__name__}: {problem}") from None
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object of GeoReport fields")
        return _text({key: str(value) for key, value in data.items() if value is not None})
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise ValueError("body is not UTF-8") from None
    return _text({key: values[-1] for key, values in urllib.parse.parse_qs(text).items()})


def _text(params: dict[str, str]) -> dict[str, str]:
    """The fields, each text a database keeps: JSON's escapes can spell a lone UTF-16 surrogate (no character,
    which no column stores, and which left the case unreadable once it was kept in the reports' JSON) or a NUL."""
    for key, value in params.items():
        try:
            (key + value).encode()
        except UnicodeEncodeError:
            raise ValueError(f"{key.encode(errors='replace').decode()[:40]}: holds a lone UTF-16 surrogate, "
                             "which is not a character") from None
        if "\x00" in key + value:
            raise ValueError(f"{key[:40]!r}: holds a NUL character")
    return params


@router.post("/requests", summary="GeoReport v2: file a citizen report (form-encoded or JSON)",
             responses={200: {"description": "[{service_request_id, service_notice, account_id}]"}})
@router.post("/requests.json", include_in_schema=False)
async def post_request(request: Request):  # noqa: ANN201 - GeoReport list or error
    try:
        params = await _params(request)
    except ValueError as problem:
        return error(400, str(problem))
    authorization = request.headers.get("authorization", "")
    key = params.get("api_key") or (authorization[7:] if authorization.lower().startswith("bearer ") else "")
    if not key:
        return error(401, "this needs an api_key (an API token) or Authorization: Bearer <token>")
    throttle: LoginThrottle = request.app.state.login_throttle  # guessing keys here is cut off as on the API
    client = request.client.host if request.client else "unknown"
    if (wait := throttle.retry_after(client)) is not None:
        response = error(429, f"too many unknown tokens from {client}; try again in {wait:.0f} s")
        response.headers["Retry-After"] = f"{wait:.0f}"
        return response
    caller = request.app.state.tokens.principal(key)
    if caller is None:
        throttle.failed(client)
        return error(403, "unknown API token: invalid api_key (GeoReport answers 403)")
    if caller.role not in _POSTERS:
        return error(403, f"{a_role(caller.role)} may not file reports; it needs: admin, integrator, operator")
    try:
        category = Category(params.get("service_code", ""))
    except ValueError:
        return error(400, f"service_code: unknown service {params.get('service_code')!r}; see /open311/v2/services")
    address = " ".join(params.get("address_string", "").split())[:500] or None
    if address is None and (address_id := " ".join(params.get("address_id", "").split())[:200]):
        address = f"address id {address_id}"  # the jurisdiction's master address register's id, as given
    location: Location | None = None
    if "lat" in params or "long" in params or address is None:
        try:
            location = Location(lat=float(params["lat"]), lon=float(params["long"]))
        except KeyError:
            if "lat" in params or "long" in params:
                return error(400, "lat/long: a position needs both")
            return error(400, "a location is required: lat and long, or address_string (or address_id)")
        except (ValueError, ValidationError):
            return error(400, "lat/long: not a valid position")
    description = params.get("description", "").strip()
    if not description or len(description) > 4000:
        return error(400, "description: required, at most 4000 characters")
    reporter = {k: params[k][:200] for k in ("first_name", "last_name", "email", "phone", "device_id", "account_id")
                if params.get(k)}
    media_url = params.get("media_url", "").strip() or None
    if media_url is not None and (len(media_url) > 2000 or not re.fullmatch(r"https?://\S+", media_url)):
        return error(400, "media_url: an http(s) URL of at most 2000 characters")
    state = request.app.state

    def file_report() -> tuple[int, bool]:  # in a worker thread: it may wait for a batch holding the case
        ingest = state.ingest
        service: CaseService = ingest.cases
        with state.database.session() as session:
            case, messages, joined = service.open_report(session, category, location, description, address,
                                                         reporter, f"open311 ({caller.name[:ACTOR_NAME]})", utcnow(),
                                                         media_url)
            outgoing = ingest.record_changes(session, messages)
            session.commit()
            case_id = case.id
        ingest.announce(messages, outgoing)
        return case_id, joined

    try:
        case_id, joined = await run_in_threadpool(file_report)
    except (UnicodeEncodeError, StatementError) as refused:
        if problem := unstorable_text(refused):  # found only when the database refused it: GeoReport's form still
            return error(400, problem)
        raise  # a database away: 503 in GeoReport's form (server/main.py)
    notice = (f"joined case {case_id}, already reported at that place" if joined
              else "received; an operator will confirm it")
    return [{"service_request_id": str(case_id), "service_notice": notice, "account_id": None}]


PUBLIC_NOTES = {
    A.COLLECT: "received", A.FILE: "confirmed", A.DISPATCH: "sent to {unit}", A.REASSIGN: "sent to {unit}",
    A.ACCEPT: "{unit} has taken it on", A.RETURN: "returned by the unit, for another to take",
    A.EXTEND: "{unit} was given more time", A.DEFER: "deferred", A.RESUME: "in hand again",
    A.FEEDBACK: "{unit} reports it handled; to be checked", A.REWORK: "not yet resolved: back with {unit}",
    A.VERIFY: "checked: resolved", A.CLOSE: "closed", A.VOID: "closed without action: {void}",
    A.REOPEN: "seen again: reopened", A.ESCALATE: "overdue: raised to {raised_to}", A.JOIN: "reported again",
}
"""What the public reads of a case's last step: its action in words, never the step's free text (an operator's note,
a field worker's, the name of the person on duty: for the city's staff, not for anyone who asks)."""
RAISED_TO = {1: "the street office", 2: "the district"}
"""Whom an escalation raised the case to, by its level."""
VOID_REASONS = {"false_positive": "nothing to act on was found", "duplicate": "a duplicate of another report",
                "not_our_responsibility": "not for the city to handle"}


def status_notes(case: CaseRecord, last: CaseTransition | None) -> str:
    if last is None:
        return case.status
    # an escalation is the case's last step, so the case's level is the one it raised it to
    note = PUBLIC_NOTES[A(last.action)].format(unit=case.unit_name or "the unit responsible",
                                               void=VOID_REASONS.get(case.void_reason or "", "see the city"),
                                               raised_to=RAISED_TO.get(case.escalation_level, "the city"))
    return f"{case.status}: {note}"


def _request(case: CaseRecord, last: CaseTransition | None) -> dict:
    """A case as a GeoReport service request. `media_url` stays empty: a camera's evidence shows passers-by and
    number plates, for the city's staff (the REST API, with a token), never the public this endpoint serves."""
    name, _ = SERVICES[Category(case.category)]
    return {
        "service_request_id": str(case.id), "status": "closed" if case.status in FINISHED else "open",
        "status_notes": status_notes(case, last),
        "service_name": name, "service_code": case.category, "description": case.description or
        f"{case.label} seen by camera {case.camera_id} in zone {case.zone_id}",
        "agency_responsible": case.unit_name, "service_notice": None,
        "requested_datetime": case.opened_at.isoformat(), "updated_datetime": case.updated_at.isoformat(),
        "expected_datetime": case.deadline_at.isoformat() if case.deadline_at else None,
        "address": case.address or case.street, "address_id": None, "zipcode": None,
        "lat": case.lat, "long": case.lon, "media_url": None,
    }


def _requests(session: Session, cases: list[CaseRecord]) -> list[dict]:
    """The cases as service requests, each with its last step, read in one query (a busy case has thousands)."""
    last_steps = (select(func.max(CaseTransition.id)).where(CaseTransition.case_id.in_([c.id for c in cases]))
                  .group_by(CaseTransition.case_id))
    last = {step.case_id: step for step in session.scalars(select(CaseTransition)
                                                           .where(CaseTransition.id.in_(last_steps)))}
    return [_request(case, last.get(case.id)) for case in cases]


SPACED_OFFSET = re.compile(r"(T[\d:.]+) (\d\d:?\d\d)$")
"""A time's `+08:00` sent in a query unencoded: the `+` arrives as a space."""


def _moment(name: str, text: str | None) -> datetime | None:
    """A W3C datetime from the query, e.g. 2026-11-23T09:00:00+08:00 (its `+` sent unencoded, arriving as a space,
    too), or a whole day, 2026-11-23, taken from midnight UTC; ValueError says what is wrong."""
    if text is None:
        return None
    text = SPACED_OFFSET.sub(r"\1+\2", text.strip())
    if re.fullmatch(r"\d{4}-\d\d-\d\d", text):  # W3C's date alone: no time, so no zone to give
        text += "T00:00:00+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name}: not a W3C datetime ({text[:40]!r}), e.g. 2026-11-23T09:00:00+08:00") from None
    if problem := moment_problem(name, moment):
        raise ValueError(problem + " (W3C format)")
    return moment


def _listed(text: str, name: str, allowed: set[str]) -> list[str]:
    """A comma-delimited list of the query, each item one of `allowed`; ValueError names the others."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if unknown := [item for item in items if item not in allowed]:
        raise ValueError(f"{name}: unknown {', '.join(repr(item[:40]) for item in unknown[:5])}; one or more "
                         f"(comma-delimited) of {', '.join(sorted(allowed))}")
    return items


DEFAULT_WINDOW = timedelta(days=90)
"""Without dates (or ids), the requests of the last 90 days, as GeoReport v2 says; from an end_date alone, the 90
days before it; start and end dates together may span at most as much."""


@router.get("/requests", summary="GeoReport v2: service requests — citizen reports and camera cases alike")
@router.get("/requests.json", include_in_schema=False)
def get_requests(
    session: SessionDep,
    service_request_id: Annotated[str | None, Query(description="Comma-delimited ids; overrides the others.")]
    = None,
    service_code: Annotated[str | None, Query(description="Comma-delimited service codes.")] = None,
    status: Annotated[str | None, Query(description="open, closed, or open,closed.")] = None,
    start_date: Annotated[str | None, Query(description="Earliest requested_datetime (W3C, with a zone).")] = None,
    end_date: Annotated[str | None, Query(description="Latest requested_datetime to include (W3C, with a zone); "
                                                      "without either date, the last 90 days.")] = None,
):  # noqa: ANN201
    if service_request_id:  # GeoReport v2: the ids override every other argument
        try:
            ids = [int(part) for part in service_request_id.split(",")]
        except ValueError:
            return error(400, "service_request_id: comma-delimited numbers")
        if len(ids) > 1000 or not all(0 < i <= MAX_ID for i in ids):
            return error(400, "service_request_id: at most 1000 ids, each a case number")
        query = select(CaseRecord).where(CaseRecord.id.in_(ids))
    else:
        try:
            codes = _listed(service_code, "service_code", {c.value for c in Category}) if service_code else []
            states = set(_listed(status, "status", {"open", "closed"})) if status else set()
            start, end = _moment("start_date", start_date), _moment("end_date", end_date)
        except ValueError as problem:
            return error(400, str(problem))
        if start is not None and end is not None and end - start > DEFAULT_WINDOW:
            return error(400, "start_date and end_date may not span more than 90 days (GeoReport v2); ask for "
                              "the range in parts")
        query = select(CaseRecord)
        if codes:
            query = query.where(CaseRecord.category.in_(codes))
        if len(states) == 1:
            finished = [s.value for s in FINISHED]
            query = query.where(CaseRecord.status.in_(finished) if states == {"closed"}
                                else CaseRecord.status.not_in(finished))
        if start is None:
            start = (end or utcnow()) - DEFAULT_WINDOW
        if start is not None:
            query = query.where(CaseRecord.opened_at >= start)
        if end is not None:
            query = query.where(CaseRecord.opened_at <= end)
    return _requests(session, list(session.scalars(query.order_by(CaseRecord.id.desc()).limit(1000))))


@router.get("/requests/{service_request_id}", summary="GeoReport v2: one service request")
@router.get("/requests/{service_request_id}.json", include_in_schema=False)
def get_request(service_request_id: str, session: SessionDep):  # noqa: ANN201
    known = (service_request_id.isascii() and service_request_id.isdigit() and len(service_request_id) <= 19
             and 0 < int(service_request_id) <= MAX_ID)  # past 4,300 digits, int() itself refuses
    case = session.get(CaseRecord, int(service_request_id)) if known else None
    if case is None:
        return error(404, f"no service request {service_request_id}")
    return _requests(session, [case])
