"""API tokens with roles. The tokens file keeps only each token's SHA-256, so reading it gives nobody access.

    tokens:
      - {name: "Zhang Min", role: operator, sha256: 9f86d0...}

`gridwatch server token NAME --role ROLE` makes a token and prints the line to add.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridwatch.config_files import ConfigError, load_yaml_model, read_yaml_mapping


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


def a_role(role: Role) -> str:
    """The role with its article, as a message says it: an operator, an admin, a field_staff."""
    return f"{'an' if role.value[0] in 'aeiou' else 'a'} {role.value}"


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


log = logging.getLogger(__name__)

RECHECK_SECONDS = 2.0
"""How often the tokens file is looked at for changes: a token revoked (or added) there counts within seconds, in
every worker, without a restart."""


def _stamp(path: Path) -> tuple[int, ...] | None:
    """What tells a file changed: a copy put in its place keeping the old one's time and size (`cp -p`, `rsync
    -a`) is another inode, or its status changed."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino, status.st_ctime_ns


class TokenStore:
    def __init__(self, entries: list[TokenEntry], path: Path | None = None,
                 check: Callable[[list[TokenEntry]], None] | None = None) -> None:
        self.check = check
        """What else the entries must be (each field worker's unit one the dispatch configuration has): raises
        ConfigError naming the entry; at start, and each time the file is read again."""
        if check is not None:
            check(entries)
        self.entries = {entry.sha256: entry for entry in entries}
        self.path = path
        self._stamp = _stamp(path) if path else None
        self._checked = time.monotonic()

    @classmethod
    def from_file(cls, path: Path | None, check: Callable[[list[TokenEntry]], None] | None = None) -> TokenStore:
        if path is None:
            return cls([], check=check)
        if not path.exists():
            raise ConfigError(f"{path}: tokens file does not exist")
        return cls(load_yaml_model(path, TokensFile).tokens, path, check)

    def _read_again_if_changed(self) -> None:
        """The file as it is now, when it changed; a file that does not read (half written, a typo) keeps the tokens
        in force, with a warning, rather than locking everyone out."""
        now = time.monotonic()
        if self.path is None or now - self._checked < RECHECK_SECONDS:
            return
        self._checked = now
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            if "tokens" not in read_yaml_mapping(self.path):  # to revoke every token, say so: `tokens: []`
                raise ConfigError("it has no `tokens:` (empty, or being written)")
            entries = load_yaml_model(self.path, TokensFile).tokens
            if self.check is not None:  # taken as it is, the mistake would stop the server at its next start
                self.check(entries)
        except (ConfigError, OSError) as error:
            log.warning("tokens file %s changed but does not read (%s): the tokens in force stay", self.path, error)
            return
        self.entries = {entry.sha256: entry for entry in entries}
        log.info("tokens file %s read again: %d tokens", self.path, len(entries))

    def holds(self, caller: TokenEntry) -> bool:
        """Whether `caller`'s token is still in force as it was (not revoked, its role and unit unchanged)."""
        self._read_again_if_changed()
        return self.entries.get(caller.sha256) == caller

    def principal(self, token: str) -> TokenEntry | None:
        self._read_again_if_changed()
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
        self._swept = clock()

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
            now = self.clock()
            if now - self._swept >= self.window:  # the addresses that failed and never came back (many, with
                self._swept = now  # IPv6's): forgotten once their last failure left the window
                self._failures = {known: failures for known, failures in self._failures.items()
                                  if failures and failures[-1] > now - self.window}
            self._recent(address, now).append(now)
