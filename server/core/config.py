"""Server settings: a YAML file (`gridwatch server --config`), with GRIDWATCH_* environment variables filling
whatever the file leaves out. Unknown keys are errors that name the key."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridwatch.config_files import ConfigError, format_validation_error, read_secret, read_yaml_mapping

log = logging.getLogger(__name__)


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDWATCH_", extra="forbid")

    database_url: str = Field(default="sqlite:///gridwatch.db", description="SQLAlchemy URL of the case database.")
    evidence_dir: Path = Field(default=Path("evidence"), description="Where evidence JPEGs are kept, by SHA-256.")
    dispatch_config: Path | None = Field(
        default=None, description="YAML of grids, units and categories; without it every case goes to the command "
                                  "centre (`command-centre`, 4 hours), or to the unit an operator names when "
                                  "dispatching."
    )
    api_host: str = Field(default="127.0.0.1", description="Address the HTTP API listens on.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port of the HTTP API.")
    mqtt_host: str = Field(default="127.0.0.1", description="Broker host.")
    mqtt_port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    mqtt_username: str = Field(default="gridwatch-server", description="Broker account with the server role.")
    mqtt_password: SecretStr | None = Field(default=None, description="Broker password (or mqtt_password_file).")
    mqtt_password_file: Path | None = Field(default=None, description="File holding the broker password.")
    mqtt_tls_ca_file: Path | None = Field(
        default=None, description="Connect with TLS (to the broker's TLS port), trusting this CA certificate only.")
    mqtt_client_id: str = Field(default="gridwatch-server", description="MQTT client id; unique per server worker.")
    ingest_enabled: bool = Field(default=True, description="Run the MQTT ingest service inside the API process.")
    ingest_share_group: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Share the event stream with other workers through the MQTT 5 shared subscription "
                    "$share/GROUP/gw/v1/nodes/#: the broker gives each message to one worker of the group. Give "
                    "every worker the same group, its own mqtt_client_id, and one PostgreSQL database.")
    tokens_file: Path | None = Field(
        default=None, description="YAML of API tokens (SHA-256 only) with roles; `gridwatch server token` makes "
                                  "them. Without it only health, metrics, the public board and Open311's "
                                  "reads answer.")
    login_failures_per_minute: int = Field(default=10, ge=1, le=10000, description="Unknown tokens an address may "
                                           "send in a minute; past that it gets 429 until a minute after the oldest.")
    ingest_batch_size: int = Field(default=500, ge=1, le=10000, description="Most MQTT messages written in one "
                                   "database transaction (batches only fill under a backlog). The broker's "
                                   "max_inflight_messages must allow twice it, so the next batch arrives while one "
                                   "is written. Larger batches write a little faster on SQLite (1,000: +3-6 % in "
                                   "make bench-server), but on PostgreSQL each new violation in a batch holds a "
                                   "lock until it commits, and several workers share one lock table.")
    ingest_batch_wait_ms: float = Field(default=20, ge=0, le=1000, description="After a quiet spell, how long a "
                                        "batch waits for more messages once one is there (busy, a batch is what "
                                        "arrived while the last one was written).")
    sweep_interval_seconds: float = Field(default=30, gt=0, description="How often overdue cases are escalated.")
    webhook_max_attempts: int = Field(default=20, ge=1, le=100, description="Attempts per webhook delivery "
                                      "before it is marked failed (20 with the default delays: some ten hours).")
    webhook_retry_base_seconds: float = Field(default=5, gt=0, description="Wait after the first failed attempt; "
                                                                           "doubled after each further one.")
    webhook_retry_max_seconds: float = Field(default=3600, gt=0, description="Longest wait between attempts.")
    webhook_timeout_seconds: float = Field(default=5, gt=0, description=(
        "How long a receiver has for each step (connecting, each read of its answer); an attempt is cut off after "
        "three times this in all, however the answer comes."))
    photo_max_bytes: int = Field(default=12 * 2**20, ge=2**10, le=2**30, description="Largest photo people may "
                                 "add to a case (`POST /api/v1/cases/{id}/photos`); a larger one is refused (413).")

    def resolved_mqtt_password(self) -> str | None:
        if self.mqtt_password is not None:
            return self.mqtt_password.get_secret_value()
        if self.mqtt_password_file is not None:
            return read_secret(self.mqtt_password_file, "mqtt_password_file")
        return None


_RELATIVE_PATH_KEYS = ("evidence_dir", "dispatch_config", "mqtt_password_file", "mqtt_tls_ca_file", "tokens_file")


def load_server_settings(path: Path | None = None) -> ServerSettings:
    data: dict = {}
    if path is not None:
        data = read_yaml_mapping(path)
        for key in _RELATIVE_PATH_KEYS:
            if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                data[key] = str(path.parent / data[key])
        url = data.get("database_url")  # a SQLite file named by a relative path: beside the file too
        if isinstance(url, str) and url.startswith("sqlite:///") and (file := url[len("sqlite:///"):]) and \
                not file.startswith(("/", ":memory:")) and not Path(file.split("?")[0]).is_absolute():
            beside = path.parent / file
            if not beside.exists() and Path(file).exists():  # where versions before 2026-12-07 looked for it
                log.warning("database_url %s: using %s, found from the working directory as before; move it beside "
                            "%s (relative paths are taken from the file's folder now)", url, Path(file).resolve(),
                            path)
                beside = Path(file)
            data["database_url"] = f"sqlite:///{beside.resolve()}"
    if "mqtt_password_file" in data:  # the file names where the password is: a GRIDWATCH_MQTT_PASSWORD in the
        data.setdefault("mqtt_password", None)  # environment (the edge's, say) does not override it
    try:
        return ServerSettings(**data)
    except ValidationError as error:
        from_environment = sorted({f"GRIDWATCH_{key.upper()}" for problem in error.errors()
                                   if (key := str(problem["loc"][0]) if problem["loc"] else "") and key not in data
                                   and f"GRIDWATCH_{key.upper()}" in os.environ})
        where = str(path) if path is not None else "environment"
        if from_environment:
            where += f" ({'and ' if path is not None else ''}the environment: {', '.join(from_environment)})"
        raise ConfigError(format_validation_error(error, where)) from None
