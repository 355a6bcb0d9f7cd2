"""Webhooks to a real HTTP receiver: signed, filtered, retried with back-off, logged, retried by hand."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from gridwatch.contract import event_topic
from server.main import create_app
from tests.factories import event_payload, wait_until


class Receiver:
    """An integrator's endpoint: records every request, answers with the queued status codes (then 200)."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        self.answers: queue.Queue[int] = queue.Queue()
        self.delay = 0.0
        """Seconds each answer takes (a slow endpoint)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                time.sleep(receiver.delay)
                code = receiver.answers.get_nowait() if not receiver.answers.empty() else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def fast_api(server_settings, api_tokens):
    settings = server_settings.model_copy(update={"webhook_retry_base_seconds": 0.1, "webhook_max_attempts": 3})
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {api_tokens['admin']}"
        wait_until(lambda: client.get("/healthz").json()["mqtt"] == "connected")
        yield client


def send(node, category: str, code: str) -> None:
    payload = event_payload(category=category, code=code, camera_id=f"cam-{category}")
    node.publish(event_topic("node-a", category), json.dumps(payload))


def test_case_changes_reach_the_subscriber_signed_and_retried(fast_api, receiver, mqtt_client):
    created = fast_api.post("/api/v1/webhooks", json={"url": f"http://127.0.0.1:{receiver.port}/hook",
                                                      "categories": ["litter"], "actions": ["dispatch", "close"]})
    assert created.status_code == 201
    hook = created.json()
    assert len(hook["secret"]) == 64 and "secret" not in fast_api.get("/api/v1/webhooks").json()[0]
    receiver.answers.put(500)
    receiver.answers.put(503)

    node = mqtt_client("node-a")
    send(node, "litter", "0102")
    send(node, "illegal_parking", "0505")  # not subscribed
    log = wait_until(lambda: (page := fast_api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json())["items"]
                     and page["items"][0]["status"] == "delivered" and page, timeout=15)
    [delivery] = log["items"]
    assert delivery["event"] == "case.dispatch" and delivery["attempts"] == 3 and delivery["last_status_code"] == 200

    assert len(receiver.requests) == 3, "two failures, then the success"
    assert {headers["X-GridWatch-Delivery"] for headers, _ in receiver.requests} == {str(delivery["id"])}
    headers, body = receiver.requests[-1]
    expected = hmac.new(hook["secret"].encode(), headers["X-GridWatch-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert headers["X-GridWatch-Signature"] == f"sha256={expected}"
    message = json.loads(body)
    assert message["category"] == "litter" and message["status"] == "dispatched"
    assert message["assignment"]["unit_id"] == "sanitation"


def test_an_unreachable_subscriber_is_logged_as_failed_and_can_be_retried(fast_api, mqtt_client):
    gone = Receiver()
    port = gone.port
    gone.close()
    hook = fast_api.post("/api/v1/webhooks", json={"url": f"http://127.0.0.1:{port}/hook",
                                                   "actions": ["dispatch"]}).json()
    send(mqtt_client("node-a"), "illegal_parking", "0505")
    failed = wait_until(lambda: fast_api.get(f"/api/v1/webhooks/{hook['id']}/deliveries",
                                             params={"status": "failed"}).json()["items"], timeout=15)[0]
    assert failed["attempts"] == 3 and "ConnectError" in failed["last_error"]

    back = Receiver(port)
    try:
        retried = fast_api.post(f"/api/v1/webhooks/deliveries/{failed['id']}/retry")
        assert retried.status_code == 200 and retried.json()["status"] == "pending"
        wait_until(lambda: fast_api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["items"][0]["status"]
                   == "delivered", timeout=10)
        assert json.loads(back.requests[0][1])["category"] == "illegal_parking"
        again = fast_api.post(f"/api/v1/webhooks/deliveries/{failed['id']}/retry")
        assert again.status_code == 409 and "delivered" in again.json()["detail"]
    finally:
        back.close()


@pytest.mark.parametrize(("body", "message"), [
    ({"url": "ftp://example.org/x"}, "url"),
    ({"url": "http://example.org/x", "categories": ["weather"]}, "categories"),
    ({"url": "http://example.org/x", "actions": ["explode"]}, "actions"),
    ({"url": "http://example.org/x", "secret": "mine"}, "secret"),
    ({"url": "http://hooks..example.org/x"}, "not a valid name"),
])
def test_a_bad_subscription_is_refused_with_the_field_named(fast_api, body, message):
    response = fast_api.post("/api/v1/webhooks", json=body)
    assert response.status_code == 422 and message in json.dumps(response.json())


def test_two_workers_senders_deliver_each_case_change_once(database_url, receiver):
    """Every worker runs a webhook sender on the one database: each delivery reaches the subscriber once (both
    senders used to pick up a delivery that was still being sent)."""
    from server.db import Database
    from server.models import WebhookDelivery, WebhookSubscription, utcnow
    from server.services.webhooks import Webhooks

    receiver.delay = 0.05
    database = Database(database_url)
    with database.session() as session:
        subscription = WebhookSubscription(url=f"http://127.0.0.1:{receiver.port}/hook", secret="s" * 32,
                                           created_by="test")
        session.add(subscription)
        session.flush()
        session.add_all([WebhookDelivery(subscription_id=subscription.id, case_id=n, event="case.dispatch",
                                         payload=json.dumps({"case_id": n}), next_attempt_at=utcnow())
                         for n in range(1, 41)])
        session.commit()
    senders = [Webhooks(Database(database_url)) for _ in range(2)]
    for sender in senders:
        sender.start()
    try:
        wait_until(lambda: len(receiver.requests) >= 40, timeout=30)
        time.sleep(1.5)  # a second sender's round after the last one
    finally:
        for sender in senders:
            sender.stop()
    delivered = [headers["X-GridWatch-Delivery"] for headers, _body in receiver.requests]
    assert sorted(delivered, key=int) == [str(n) for n in range(1, 41)], "each once"
    with database.session() as session:
        assert {d.status for d in session.query(WebhookDelivery)} == {"delivered"}


def queue_changes(database, url: str, changes: list[tuple[int, str]]) -> None:
    """A subscription and its deliveries, (case id, action) in the order the changes happened."""
    from server.models import WebhookDelivery, WebhookSubscription, utcnow

    with database.session() as session:
        subscription = WebhookSubscription(url=url, secret="s" * 32, created_by="test")
        session.add(subscription)
        session.flush()
        session.add_all([WebhookDelivery(subscription_id=subscription.id, case_id=case, event=f"case.{action}",
                                         payload=json.dumps({"case_id": case, "action": action}),
                                         next_attempt_at=utcnow() - timedelta(seconds=1))
                         for case, action in changes])
        session.commit()


def test_a_case_whose_change_failed_gets_its_later_changes_after_it_and_other_cases_go_on(database_url):
    """Found by review: each delivery backed off on its own, so a receiver down for a few minutes got a case's
    `accept` before its `collect`, `file` and `dispatch`."""
    import httpx

    from server.db import Database
    from server.models import utcnow
    from server.services.webhooks import Webhooks

    database = Database(database_url)
    queue_changes(database, "http://receiver.test/hook", [(1, "collect"), (1, "file"), (2, "dispatch"),
                                                         (1, "dispatch"), (1, "accept")])
    received: list[tuple[int, str]] = []
    down = [True]

    def receive(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        received.append((body["case_id"], body["action"]))
        return httpx.Response(503 if down[0] and body["case_id"] == 1 else 200)

    now = [utcnow()]
    sender = Webhooks(database, clock=lambda: now[0])
    with httpx.Client(transport=httpx.MockTransport(receive)) as client:
        sender.deliver_due(client)
        assert received == [(1, "collect"), (2, "dispatch")], "case 1 waits behind its failed change; case 2 not"
        down[0], now[0] = False, now[0] + timedelta(minutes=5)
        sender.deliver_due(client)
    assert received[2:] == [(1, "collect"), (1, "file"), (1, "dispatch"), (1, "accept")]


def test_a_dead_receiver_costs_one_attempt_a_round_and_holds_back_no_other_subscriber(database_url):
    """Found by review: every change queued for a receiver that could not be reached was tried in turn, each
    request taking up to the whole connect timeout, while the other integrators' changes waited behind them."""
    import httpx

    from server.db import Database
    from server.models import WebhookDelivery, utcnow
    from server.services.webhooks import Webhooks

    database = Database(database_url)
    queue_changes(database, "http://dead.test/hook", [(case, "dispatch") for case in range(1, 6)])
    queue_changes(database, "http://alive.test/hook", [(case, "dispatch") for case in range(1, 6)])
    tried: list[str] = []
    up = [False]

    def receive(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        if request.url.host == "dead.test" and not up[0]:
            raise httpx.ConnectTimeout("timed out", request=request)
        return httpx.Response(200)

    now = [utcnow()]
    sender, other_worker = Webhooks(database, clock=lambda: now[0]), Webhooks(database, clock=lambda: now[0])
    with httpx.Client(transport=httpx.MockTransport(receive)) as client:
        sender.deliver_due(client)
        assert tried.count("dead.test") == 1 and tried.count("alive.test") == 5
        other_worker.deliver_due(client)
        assert tried.count("dead.test") == 1, "every worker's sender lets it rest"
        with database.session() as session:
            attempts = [d.attempts for d in session.query(WebhookDelivery).filter(WebhookDelivery.subscription_id == 1)]
        assert sorted(attempts) == [0, 0, 0, 0, 1], "the rest waited without spending an attempt"
        now[0] += timedelta(seconds=6)  # the endpoint's rest (the base delay) is over: one probe, still dead
        sender.deliver_due(client)
        assert tried.count("dead.test") == 2
        up[0], now[0] = True, now[0] + timedelta(seconds=11)
        sender.deliver_due(client)
    assert tried.count("dead.test") == 2 + 4 + 1, "awake again: everything it missed"
    with database.session() as session:
        assert {d.status for d in session.query(WebhookDelivery)} == {"delivered"}


def test_a_receiver_that_chokes_on_one_change_still_gets_the_other_cases(database_url):
    """Only an endpoint that cannot be reached rests: one that drops the connection on one payload is awake."""
    import httpx

    from server.db import Database
    from server.models import utcnow
    from server.services.webhooks import Webhooks

    database = Database(database_url)
    queue_changes(database, "http://receiver.test/hook", [(1, "collect"), (2, "collect"), (3, "collect")])
    received: list[int] = []

    def receive(request: httpx.Request) -> httpx.Response:
        case = json.loads(request.content)["case_id"]
        if case == 1:
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
        received.append(case)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(receive)) as client:
        Webhooks(database, clock=utcnow).deliver_due(client)
    assert received == [2, 3]


def test_one_change_failing_for_good_as_its_receiver_restarts_takes_no_other_change_with_it(database_url):
    """Found by review: a change the receiver refused twenty times whose last attempt met a restart (no connection)
    failed every other change waiting for that receiver."""
    import httpx

    from server.db import Database
    from server.models import WebhookDelivery, utcnow
    from server.services.webhooks import Webhooks

    database = Database(database_url)
    queue_changes(database, "http://receiver.test/hook", [(1, "collect")])
    attempts = {1: 0, 2: 0}

    def receive(request: httpx.Request) -> httpx.Response:
        case = json.loads(request.content)["case_id"]
        attempts[case] += 1
        if case == 1 and attempts[1] == 3:
            raise httpx.ConnectError("connection refused", request=request)  # restarting just then
        return httpx.Response(500 if case == 1 else 200)

    now = [utcnow()]
    sender = Webhooks(database, max_attempts=3, clock=lambda: now[0])
    with httpx.Client(transport=httpx.MockTransport(receive)) as client:
        for _ in range(2):
            sender.deliver_due(client)
            now[0] += timedelta(minutes=1)
        with database.session() as session:  # another case's change comes in
            session.add(WebhookDelivery(subscription_id=1, case_id=2, event="case.collect", next_attempt_at=now[0],
                                        payload=json.dumps({"case_id": 2, "action": "collect"})))
            session.commit()
        sender.deliver_due(client)  # case 1's last attempt: no connection
        now[0] += timedelta(minutes=1)
        sender.deliver_due(client)
    with database.session() as session:
        assert [(d.case_id, d.status) for d in session.query(WebhookDelivery).order_by(WebhookDelivery.id)] == [
            (1, "failed"), (2, "delivered")]


def test_the_changes_waiting_on_a_receiver_gone_for_good_fail_with_its_last_probe(database_url):
    """Found by review: resting, only the probe spent attempts, so a decommissioned receiver's queue never
    failed and grew for ever. Its changes fail together once the probe has had every attempt (an admin sends them
    again)."""
    import httpx

    from server.db import Database
    from server.models import WebhookDelivery, utcnow
    from server.services.webhooks import Webhooks

    database = Database(database_url)
    queue_changes(database, "http://gone.test/hook", [(case, "dispatch") for case in range(1, 5)])

    def receive(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no such host", request=request)

    now = [utcnow()]
    sender = Webhooks(database, max_attempts=3, clock=lambda: now[0])
    with httpx.Client(transport=httpx.MockTransport(receive)) as client, database.session() as session:
        for _ in range(10):
            sender.deliver_due(client)
            now[0] += timedelta(hours=1)
        deliveries = session.query(WebhookDelivery).order_by(WebhookDelivery.id).all()
        assert [(d.status, d.attempts) for d in deliveries] == [("failed", 3)] + [("failed", 0)] * 3
        assert "could not be reached on 3 attempts in a row" in deliveries[1].last_error


def test_a_receiver_down_for_a_night_still_gets_every_change(database_url):
    """Found by review: eight attempts gave up after about ten minutes, every change of the night then `failed`,
    to be retried one by one by an admin."""
    import httpx

    from server.core.config import ServerSettings
    from server.db import Database
    from server.models import WebhookDelivery, utcnow
    from server.services.webhooks import Webhooks

    database = Database(database_url)
    queue_changes(database, "http://receiver.test/hook", [(1, "dispatch")])
    start = utcnow()
    now = [start]
    defaults = ServerSettings.model_fields
    sender = Webhooks(database, defaults["webhook_max_attempts"].default,
                      defaults["webhook_retry_base_seconds"].default, defaults["webhook_retry_max_seconds"].default,
                      clock=lambda: now[0])

    def receive(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200 if now[0] - start > timedelta(hours=9) else 503)

    with httpx.Client(transport=httpx.MockTransport(receive)) as client, database.session() as session:
        for _ in range(100):
            sender.deliver_due(client)
            delivery = session.query(WebhookDelivery).one()
            session.refresh(delivery)
            if delivery.status != "pending":
                break
            now[0] = delivery.next_attempt_at + timedelta(seconds=1)
    assert delivery.status == "delivered", f"gave up after {delivery.attempts} attempts"


def test_a_delivery_that_cannot_even_be_sent_counts_and_fails_and_the_case_goes_on(database_url):
    """Found by review: only httpx's errors counted as an attempt; a URL httpx could not encode (an empty label, one
    over 63 characters) raised something else, so the delivery stayed pending for good and held back every later
    change of its case."""
    import httpx

    from server.db import Database
    from server.models import WebhookDelivery
    from server.services.webhooks import Webhooks

    database = Database(database_url)
    queue_changes(database, "http://hooks..example.org/x", [(1, "collect"), (1, "file")])
    sender = Webhooks(database, max_attempts=1)
    with httpx.Client() as client:
        sender.deliver_due(client)
        sender.deliver_due(client)
    with database.session() as session:
        deliveries = session.query(WebhookDelivery).order_by(WebhookDelivery.id).all()
        assert [(d.status, d.attempts) for d in deliveries] == [("failed", 1), ("failed", 1)]
        assert "label" in deliveries[0].last_error


def test_operators_see_subscriptions_without_the_credentials_in_their_urls(fast_api, api_tokens):
    secret_url = "https://bot:pa55@hooks.example.org/notify/T123?token=abc"
    assert fast_api.post("/api/v1/webhooks", json={"url": secret_url}).status_code == 201
    [as_admin] = fast_api.get("/api/v1/webhooks").json()
    [as_operator] = fast_api.get("/api/v1/webhooks", headers={"Authorization": f"Bearer {api_tokens['operator']}"}
                                 ).json()
    assert as_admin["url"] == secret_url
    assert as_operator["url"] == "https://***@hooks.example.org/notify/T123?***"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://bot:pa55@hooks.example.org/notify?token=abc", "https://***@hooks.example.org/notify?***"),
    ("http://[::1]:8080/hook", "http://[::1]:8080/hook"),
    ("http://hooks.example.org/hook", "http://hooks.example.org/hook"),
])
def test_a_url_is_shown_without_its_credentials_and_otherwise_as_it_is(url, shown):
    from server.services.webhooks import redacted

    assert redacted(url) == shown
