"""Dependencies shared by the routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.core.config import ServerSettings
from server.db import Database
from server.services.ingest import EvidenceStore


def get_database(request: Request) -> Database:
    return request.app.state.database


def get_db(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with database.session() as session:
        yield session


def get_settings(request: Request) -> ServerSettings:
    return request.app.state.settings


def get_evidence_store(request: Request) -> EvidenceStore:
    return request.app.state.evidence


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
EvidenceDep = Annotated[EvidenceStore, Depends(get_evidence_store)]
