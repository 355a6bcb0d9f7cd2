"""Webhooks: every case change POSTed to the integrators that asked for it, signed, retried, logged.

A delivery row is written in the same transaction as the case change, so a crash between the two cannot lose one;
a worker thread sends what is due. Each POST carries

    X-GridWatch-Event: case.<action>          X-GridWatch-Delivery: <delivery id>
    X-GridWatch-Timestamp: <unix seconds>     X-GridWatch-Signature: sha256=<hex>

where the signature is HMAC-SHA256 with the subscription's secret over `<timestamp>.<delivery id>.<body>`; a receiver
recomputes it and refuses old timestamps and delivery ids it has handled, so a captured request cannot be replayed,
not even under another delivery id. A failed attempt (no answer, or not 2xx) is
retried after 1, 2, 4 … times the base delay (at most the maximum delay), up to the last attempt, after which the
delivery is `failed`: by default 20 attempts over some ten hours, so a receiver down for a night misses nothing.
A subscription gets a case's changes in the order they happened: while one waits for its next attempt, the case's
later ones wait behind it (other cases' go on). An endpoint that cannot even be reached (connection refused or
timed out, no such host), or that does not answer within the timeout, rests for the same back-off by such attempts
in a row, kept on its subscription so every sender sees it: meanwhile its other changes wait without spending
attempts, so one dead or slow receiver, each of whose requests can take the whole timeout, never holds back the
other subscribers. When its probe runs out of
attempts, its waiting changes fail with it (an admin sends them again); a receiver that answers, whatever it says,
is awake, and one delivery it chokes on never rests the others. A redirect (the receiver moved: redirects are not
followed, so a URL cannot be bounced to an address the admin never gave) or 410 Gone fails the delivery at once,
naming where it points: retrying would only say the same twenty times.

Delivery is at least once: a receiver that handled a request but answered too late (or whose answer was lost) gets
it again; it keeps the X-GridWatch-Delivery ids it has handled and skips those.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, aliased, object_session

from gridwatch.contract import CaseMessage
from gridwatch.redact import redacted
from server.db import Database, begin_writing
from server.models import WebhookDelivery, WebhookSubscription, utcnow

log = logging.getLogger(__name__)


def signature(secret: str, timestamp: str, delivery_id: str, body: bytes) -> str:
    signed = f"{timestamp}.{delivery_id}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()



PERMANENT = {301, 302, 303, 307, 308, 410}
"""Answers no retry changes: moved (a redirect, not followed) or gone."""


ATTEMPT_TIMEOUTS = 3
"""An attempt is cut off after this many `timeout_seconds` in all (connect, send, answer): httpx times each read,
and a receiver answering a byte at a time held the sender for as long as it liked."""


class AttemptTimedOut(httpx.TimeoutException):
    """No whole answer within the attempt's time: the endpoint's trouble, like a timeout."""


@dataclass(frozen=True)
class _Answer:
    status: int
    first_bytes: bytes
    location: str | None


def _post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str], timeout: float) -> _Answer:
    with client.stream("POST", url, content=body, headers=headers, timeout=timeout) as response:
        ok = 200 <= response.status_code < 300
        # of a refusal, its first words only: a receiver's endless answer is neither read nor kept
        return _Answer(response.status_code, b"" if ok else _first_bytes(response, 200),
                       response.headers.get("location"))


def _within(seconds: float, call: Callable[[], _Answer]) -> _Answer:
    """`call`'s answer, or AttemptTimedOut after `seconds`: the call goes on in its thread, which ends with the
    receiver's answer or its read timeout, and what it gets is not used (it touches no row)."""
    outcome: list = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # noqa: BLE001 - handed to the caller, whatever it is
            outcome.append(error)
        done.set()

    threading.Thread(target=run, name="webhook-attempt", daemon=True).start()
    if not done.wait(seconds):
        raise AttemptTimedOut(f"no whole answer within {seconds:g} s")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _first_bytes(response: httpx.Response, limit: int) -> bytes:
    read = b""
    for chunk in response.iter_bytes():
        read += chunk
        if len(read) >= limit:
            break
    return read[:limit]



def _storable(text: str) -> str:
    """A receiver's words as a text column keeps them: PostgreSQL's hold no NUL, and a reply that held one failed
    the round's commit, so the delivery was tried again every claim for ever, its back-off and attempts never
    counted."""
    return text.replace("\x00", "\\0").encode(errors="replace").decode()

def overtaken(session: Session, delivery: WebhookDelivery, status: str = "delivered") -> int | None:
    """The latest later change of the delivery's case for its subscriber in `status`, if any: "delivered", its
    receiver has it already; "pending", it waits, or is on its way this moment."""
    return session.scalar(select(func.max(WebhookDelivery.id)).where(
        WebhookDelivery.subscription_id == delivery.subscription_id, WebhookDelivery.case_id == delivery.case_id,
        WebhookDelivery.id > delivery.id, WebhookDelivery.status == status))


class Webhooks:
    def __init__(self, database: Database, max_attempts: int = 20, base_delay_seconds: float = 5.0,
                 max_delay_seconds: float = 3600.0, timeout_seconds: float = 5.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.database = database
        self.max_attempts = max_attempts
        self.base_delay = base_delay_seconds
        self.max_delay = max_delay_seconds
        self.timeout = timeout_seconds
        self.clock = clock
        self.wakeup = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def enqueue(self, session: Session, messages: list[CaseMessage]) -> int:
        """Queue `messages` for every matching subscription, inside the caller's transaction."""
        if not messages:
            return 0
        subscriptions = session.scalars(select(WebhookSubscription).where(WebhookSubscription.active)).all()
        queued = 0
        for message in messages:
            action = message.action.value if message.action else message.status.value
            body = message.model_dump_json()
            for subscription in subscriptions:
                if subscription.categories and message.category.value not in subscription.categories:
                    continue
                if subscription.actions and action not in subscription.actions:
                    continue
                session.add(WebhookDelivery(subscription_id=subscription.id, case_id=message.case_id,
                                            event=f"case.{action}", payload=body, next_attempt_at=self.clock()))
                queued += 1
        if queued:
            self.wakeup.set()
        return queued

    def delay(self, attempts: int) -> timedelta:
        """The wait after `attempts` tries in a row: doubling from the base, capped (the power itself too: after a
        thousand it overflowed a float, and a receiver dead for weeks was tried every lease, never failed)."""
        return timedelta(seconds=min(self.max_delay, self.base_delay * 2 ** min(attempts - 1, 40)))

    def deliver_due(self, client: httpx.Client, limit: int = 50) -> int:
        """Send what is due now, oldest first; returns how many were attempted. Every worker runs a sender: each
        delivery is claimed first, so two workers never send one twice."""
        sent = 0
        while sent < limit and (delivery_id := self._claim()) is not None:
            with self.database.session() as session:
                delivery = session.get(WebhookDelivery, delivery_id)
                subscription = session.get(WebhookSubscription, delivery.subscription_id)
                self._attempt(client, delivery, subscription)
                session.commit()
            sent += 1
        return sent

    @property
    def lease(self) -> timedelta:
        """How long a claimed delivery is held: longer than an attempt may take (`ATTEMPT_TIMEOUTS`), so that no
        other sender takes it meanwhile."""
        return timedelta(seconds=(ATTEMPT_TIMEOUTS + 1) * self.timeout + 30)

    def _claim(self) -> int | None:
        """The id of the oldest due delivery, leased to this sender: its next attempt is put off past the time one
        request can take, so another worker's sender passes it by (and sends it if this one dies mid-way). On
        PostgreSQL a row another sender is claiming is skipped; SQLite claims one sender at a time."""
        now = self.clock()
        resting = select(WebhookSubscription.id).where(WebhookSubscription.resting_until > now)
        with self.database.session() as session:
            begin_writing(session)
            earlier = aliased(WebhookDelivery)
            delivery = session.scalars(
                select(WebhookDelivery).where(
                    WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                    WebhookDelivery.subscription_id.not_in(resting),
                    ~exists().where(earlier.status == "pending",  # the case's earlier changes go first
                                    earlier.subscription_id == WebhookDelivery.subscription_id,
                                    earlier.case_id == WebhookDelivery.case_id, earlier.id < WebhookDelivery.id))
                .order_by(WebhookDelivery.id).limit(1).with_for_update(skip_locked=True)).first()
            if delivery is None:
                return None
            if not delivery.out_of_order and (later := overtaken(session, delivery)) is not None:
                # an admin retried it while a later change of its case was on its way: sent now, the receiver
                # would take the case back to this older state
                delivery.status, delivery.last_error = "failed", (
                    f"not sent: delivery {later}, a later change of case {delivery.case_id}, reached the receiver "
                    f"first; retry with out_of_order=true to send it anyway")
                session.commit()
                return self._claim()
            delivery.next_attempt_at = now + self.lease
            session.commit()
            return delivery.id

    def _attempt(self, client: httpx.Client, delivery: WebhookDelivery,
                 subscription: WebhookSubscription | None) -> None:
        delivery.attempts += 1
        if subscription is None or not subscription.active:
            delivery.status, delivery.last_error = "failed", "the subscription was removed or disabled"
            return
        body = delivery.payload.encode()
        timestamp = str(int(self.clock().timestamp()))
        headers = {"Content-Type": "application/json", "User-Agent": "GridWatch-Webhooks/1",
                   "X-GridWatch-Event": delivery.event, "X-GridWatch-Delivery": str(delivery.id),
                   "X-GridWatch-Timestamp": timestamp,
                   "X-GridWatch-Signature": signature(subscription.secret, timestamp, str(delivery.id), body)}
        unreachable = permanent = False
        try:
            url = subscription.url
            answer = _within(ATTEMPT_TIMEOUTS * self.timeout, lambda: _post(client, url, body, headers, self.timeout))
            delivery.last_status_code = answer.status
            ok = 200 <= answer.status < 300
            permanent = answer.status in PERMANENT
            delivery.last_error = None if ok else _storable(f"HTTP {answer.status}: "
                                                             f"{answer.first_bytes.decode(errors='replace')}")
            if 300 <= answer.status < 400 and answer.location:
                delivery.last_error = (f"HTTP {answer.status}: moved to {redacted(answer.location)[:300]} "
                                       "(redirects are not followed: change the subscription's URL)")
        except Exception as error:  # not only httpx's: a URL it cannot even encode (an IDNA label too long) too
            # counts as an attempt, or the delivery stayed pending for good, holding its case's later changes
            ok, delivery.last_error = False, _storable(f"{type(error).__name__}: {error}"[:500])
            # never connected (refused, timed out, no such host) or no answer in time: not one payload's trouble
            # but the endpoint's, and each try of a slow one holds the sender for the whole timeout
            unreachable = isinstance(error, httpx.ConnectError | httpx.TimeoutException)
        now = self.clock()
        unanswered = self._rest(subscription, unreachable, now)
        if ok:
            delivery.status, delivery.delivered_at = "delivered", now
        elif permanent or delivery.attempts >= self.max_attempts:
            delivery.status = "failed"
            log.warning("webhook delivery %d to %s failed for good after %d attempt(s): %s", delivery.id,
                        redacted(subscription.url), delivery.attempts, delivery.last_error)
            if unreachable and unanswered >= self.max_attempts:  # not reached all along: what waited fails too
                self._fail_waiting(subscription, unanswered, delivery, now)
        else:
            delivery.next_attempt_at = now + self.delay(delivery.attempts)

    def _rest(self, subscription: WebhookSubscription, unreachable: bool, now: datetime) -> int:
        """After an attempt: an endpoint that could not be reached rests; one that answered is awake. Counted in
        SQL, not from the row as read before the request: another worker may have tried it meanwhile. Returns the
        attempts in a row it could not be reached."""
        session = object_session(subscription)
        assert session is not None
        row = WebhookSubscription.id == subscription.id
        if not unreachable:
            if subscription.unanswered or subscription.resting_until is not None:
                session.execute(update(WebhookSubscription).where(row).values(unanswered=0, resting_until=None)
                                .execution_options(synchronize_session=False))
            return 0
        unanswered = session.execute(update(WebhookSubscription).where(row)
                                     .values(unanswered=WebhookSubscription.unanswered + 1)
                                     .returning(WebhookSubscription.unanswered)
                                     .execution_options(synchronize_session=False)).scalar_one()
        session.execute(update(WebhookSubscription).where(row).values(resting_until=now + self.delay(unanswered))
                        .execution_options(synchronize_session=False))
        return unanswered

    def _fail_waiting(self, subscription: WebhookSubscription, unanswered: int, probe: WebhookDelivery,
                      now: datetime) -> None:
        session = object_session(probe)
        assert session is not None
        failed = session.execute(
            update(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id,
                                          WebhookDelivery.status == "pending", WebhookDelivery.id != probe.id,
                                          WebhookDelivery.next_attempt_at <= now)
            .values(status="failed", last_error=f"not sent: the receiver could not be reached on {unanswered} "
                                                f"attempts in a row, the last at {now:%Y-%m-%d %H:%M} UTC")
            .execution_options(synchronize_session=False)).rowcount
        if failed:
            log.warning("webhook %s unreachable: %d waiting deliveries failed with its last probe",
                        redacted(subscription.url), failed)

    # ---- the worker --------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        with httpx.Client() as client:
            while not self._stop.is_set():
                try:
                    sent = self.deliver_due(client)
                except Exception:  # the log says why; the next round tries again
                    log.exception("webhook round failed")
                    sent = 0
                if not sent:
                    self.wakeup.wait(1.0)
                    self.wakeup.clear()
