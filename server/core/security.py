"""API tokens with roles. The tokens file keeps only each token's SHA-256, so reading it gives nobody access.

    tokens:
      - {name: "Zhang Min", role: operator, sha256: 9f86d0...}

`gridwatch server token NAME --role ROLE` makes a token and prints the line to add.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridwatch.config_files import ConfigError, load_yaml_model


class Role(StrEnum):
    OPERATOR = "operator"
    """Command centre: reviews detections, files, dispatches, verifies and closes cases, commands nodes."""
    FIELD_STAFF = "field_staff"
    """A unit's staff: accept, return, report back (feedback)."""
    SUPERVISOR = "supervisor"
    """Assessment; approves extensions and deferrals, closes."""
    INTEGRATOR = "integrator"
    """Reads; files citizen reports through Open311."""
    ADMIN = "admin"


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="Who holds the token; recorded on what they do.")
    role: Role = Field(description="operator, field_staff, supervisor, integrator or admin.")
    unit: str | None = Field(default=None, description="For field staff (required): the unit id (in "
                                                       "dispatch_config) they work for; they act on that unit's "
                                                       "cases only and see only their pictures.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the token.")

    @model_validator(mode="after")
    def _field_staff_have_a_unit(self) -> TokenEntry:
        """Field staff without a unit could act on every unit's case yet see none of their pictures: refused."""
        if self.role is Role.FIELD_STAFF and not self.unit:
            raise ValueError("field staff need `unit`: the id of the unit (in dispatch_config) they work for")
        return self


class TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry] = Field(default_factory=list)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "gw_" + secrets.token_urlsafe(24)


class TokenStore:
    def __init__(self, entries: list[TokenEntry]) -> None:
        self.entries = {entry.sha256: entry for entry in entries}

    @classmethod
    def from_file(cls, path: Path | None) -> TokenStore:
        if path is None:
            return cls([])
        if not path.exists():
            raise ConfigError(f"{path}: tokens file does not exist")
        return cls(load_yaml_model(path, TokensFile).tokens)

    def principal(self, token: str) -> TokenEntry | None:
        digest = hash_token(token)
        for known, entry in self.entries.items():
            if hmac.compare_digest(known, digest):
                return entry
        return None


class LoginThrottle:
    """Failed logins (unknown tokens) per client address: past `limit` in `window` seconds the address is refused,
    whatever token it sends, until the oldest failure leaves the window. Guessing a token is then hopeless."""

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(address, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def retry_after(self, address: str) -> float | None:
        """Seconds until `address` may try again; None when it may now."""
        with self._lock:
            now = self.clock()
            failures = self._recent(address, now)
            if len(failures) < self.limit:
                if not failures:
                    self._failures.pop(address, None)
                return None
            return max(1.0, failures[0] + self.window - now)

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address, self.clock()).append(self.clock())
