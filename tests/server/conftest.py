"""The server as a user meets it: the app with its ingest service on a real Mosquitto and a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.core.config import ServerSettings
from server.main import create_app
from tests.factories import wait_until

DISPATCH = Path(__file__).resolve().parents[2] / "config" / "demo" / "dispatch.yaml"


@pytest.fixture
def server_settings(running_broker, tmp_path) -> ServerSettings:
    return ServerSettings(
        database_url=f"sqlite:///{tmp_path / 'gridwatch.db'}",
        evidence_dir=tmp_path / "evidence",
        dispatch_config=DISPATCH,
        mqtt_port=running_broker.port,
        mqtt_password=running_broker.credentials.server_password,
    )


@pytest.fixture
def api(server_settings):
    with TestClient(create_app(server_settings)) as client:
        wait_until(lambda: client.get("/healthz").json()["mqtt"] == "connected")
        yield client
