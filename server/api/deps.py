"""Dependencies shared by the routes: the database session, settings, evidence store and the caller.

Every route but health and the public board needs a bearer token (`Authorization: Bearer gw_…`); writes need a
role that may write there. Nothing writes anonymously.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from server.core.config import ServerSettings
from server.core.security import LoginThrottle, Role, TokenEntry, TokenStore, a_role
from server.db import Database
from server.services.evidence import EvidenceStore

_bearer = HTTPBearer(auto_error=False, description="An API token from the server's tokens file.")


def get_database(request: Request) -> Database:
    return request.app.state.database


def get_db(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with database.session() as session:
        yield session


def get_settings(request: Request) -> ServerSettings:
    return request.app.state.settings


def get_evidence_store(request: Request) -> EvidenceStore:
    return request.app.state.evidence


def get_caller(request: Request,
               credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> TokenEntry:
    tokens: TokenStore = request.app.state.tokens
    if credentials is None:
        raise HTTPException(status_code=401, detail="this needs an API token: Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})
    throttle: LoginThrottle = request.app.state.login_throttle
    address = request.client.host if request.client else "unknown"
    if (wait := throttle.retry_after(address)) is not None:
        raise HTTPException(status_code=429, detail=f"too many unknown tokens from {address}; try again in "
                                                    f"{wait:.0f} s", headers={"Retry-After": f"{wait:.0f}"})
    caller = tokens.principal(credentials.credentials)
    if caller is None:
        throttle.failed(address)
        raise HTTPException(status_code=401, detail="unknown API token", headers={"WWW-Authenticate": "Bearer"})
    return caller


def allow(*roles: Role) -> Callable[[TokenEntry], TokenEntry]:
    """A dependency admitting callers in `roles` (admins always); others get 403 naming who may."""
    admitted = set(roles) | {Role.ADMIN}

    def check(caller: Annotated[TokenEntry, Depends(get_caller)]) -> TokenEntry:
        if caller.role not in admitted:
            names = ", ".join(sorted(role.value for role in admitted))
            raise HTTPException(status_code=403, detail=f"{a_role(caller.role)} may not do this; it needs: {names}")
        return caller

    return check


PICTURE_ROLES = (Role.OPERATOR, Role.SUPERVISOR, Role.FIELD_STAFF)
"""Who may see evidence and snapshots (people and number plates are in them): not integrators, who get the cases."""
PictureViewer = Annotated[TokenEntry, Depends(allow(*PICTURE_ROLES))]


def moment_problem(name: str, moment: datetime | None) -> str | None:
    """What is wrong with a time given in a query (`name`), or None: it needs a time zone, and a year the database
    can store in UTC (year 1 at +01:00 lies before year 1)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return f"{name}: give a time zone, e.g. 2026-11-23T09:00:00+08:00"
    if not 1970 <= moment.year <= 9998:
        return f"{name}: a year from 1970 to 9998"
    return None


EARLIEST_DAY, LATEST_DAY = date(1970, 1, 1), date(9998, 12, 31)
"""The days a query may name (an assessment's `from` and `to`)."""

MAX_ID = 2**31 - 1
"""The largest id of a case or a webhook (PostgreSQL's integer): a larger one is refused, never looked up."""
MAX_BIG_ID = 2**63 - 1
"""The largest id of a busy table's row (`models.BIG_ID`: PostgreSQL's bigint)."""
RowId = Annotated[int, Path(ge=1, le=MAX_ID, description="A row id.")]
BigRowId = Annotated[int, Path(ge=1, le=MAX_BIG_ID, description="A row id.")]
PageNumber = Annotated[int, Query(ge=1, le=1_000_000, description="Page, from 1.")]
"""A page of a list: bounded, so its offset always fits the database's integers."""
PageSize = Annotated[int, Query(ge=1, le=500, description="Items a page (at most 500).")]
"""A database id in a path: bounded, so no number too large for the database reaches it."""
SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
EvidenceDep = Annotated[EvidenceStore, Depends(get_evidence_store)]
Caller = Annotated[TokenEntry, Depends(get_caller)]
"""Any holder of a valid token (reads)."""
OperatorDep = Annotated[TokenEntry, Depends(allow(Role.OPERATOR))]
CaseWorker = Annotated[TokenEntry, Depends(allow(Role.OPERATOR, Role.FIELD_STAFF, Role.SUPERVISOR))]
"""May take some case action; the workflow table says which."""
