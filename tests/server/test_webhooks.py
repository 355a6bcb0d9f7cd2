"""Webhooks to a real HTTP receiver: signed, filtered, retried with back-off, logged, retried by hand."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
from datetime import datetime
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


def readme_receiver_accepts(secret: str, headers: dict, body: bytes) -> bool:
    """README's receiver code, run as written, on a request as it came."""
    import re
    import time
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    [code] = re.findall(r"To verify in a receiver:\n\n```python\n(.*?)```", readme, re.S)
    scope = {"hmac": hmac, "hashlib": hashlib, "time": time, "secret": secret, "body": body,
             "timestamp": headers["X-GridWatch-Timestamp"], "delivery_id": headers["X-GridWatch-Delivery"],
             "signature": headers["X-GridWatch-Signature"]}
    exec(code, scope)  # noqa: S102 - the README's own sample
    return scope["ok"]


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
    signed = f"{headers['X-GridWatch-Timestamp']}.{delivery['id']}.".encode() + body
    expected = hmac.new(hook["secret"].encode(), signed, hashlib.sha256).hexdigest()
    assert headers["X-GridWatch-Signature"] == f"sha256={expected}", \
        "the delivery id is signed too: the request replayed under another id fails the receiver's check"
    assert readme_receiver_accepts(hook["secret"], headers, body), "found by review: README's check refused it"
    assert not readme_receiver_accepts(hook["secret"], {**headers, "X-GridWatch-Delivery": "999999"}, body)
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


def test_operators_see_subscriptions_without_the_credentials_in_their_urls(fast_api, api_tokens):
    secret_url = "https://bot:pa55@hooks.example.org/notify/T123?token=abc"
    assert fast_api.post("/api/v1/webhooks", json={"url": secret_url}).status_code == 201
    [as_admin] = fast_api.get("/api/v1/webhooks").json()
    [as_operator] = fast_api.get("/api/v1/webhooks", headers={"Authorization": f"Bearer {api_tokens['operator']}"}
                                 ).json()
    assert as_admin["url"] == secret_url
    assert as_operator["url"] == "https://***@hooks.example.org/notify/T123?***"


def test_operators_see_a_receivers_status_and_admins_its_reply(api, api_tokens):
    """Found by review: an admin may point a webhook at an internal service, and the first bytes of whatever it
    answered (its settings, a password) were shown to every operator in the delivery log."""
    from server.models import WebhookDelivery, WebhookSubscription

    with api.app.state.database.session() as session:
        subscription = WebhookSubscription(url="http://10.0.0.5/admin", secret="s" * 32, created_by="test")
        session.add(subscription)
        session.flush()
        session.add(WebhookDelivery(subscription_id=subscription.id, case_id=1, event="case.dispatch", payload="{}",
                                    status="failed", attempts=20, last_status_code=403,
                                    last_error='HTTP 403: {"db_password": "hunter2"}'))
        session.commit()
        hook = subscription.id
    log = f"/api/v1/webhooks/{hook}/deliveries"
    [seen] = api.get(log, headers={"Authorization": f"Bearer {api_tokens['operator']}"}).json()["items"]
    assert seen["last_error"] == "HTTP 403 (the receiver's reply is shown to admins)"
    assert "hunter2" in api.get(log).json()["items"][0]["last_error"]
    from server.api.routes.webhooks import _without_reply

    assert _without_reply('HTTP 500: moved to production; {"db_password": "x"}') == \
        "HTTP 500 (the receiver's reply is shown to admins)", "only the server's own redirect words are shown"


def test_a_failed_change_is_not_sent_by_hand_after_a_later_one_of_its_case_without_saying_so(api):
    """Found by review: retrying a change that had failed sent it after the case's later changes had reached the
    receiver, which then showed the case back in its older state."""
    from server.models import WebhookDelivery, WebhookSubscription

    with api.app.state.database.session() as session:
        subscription = WebhookSubscription(url="http://receiver.test/hook", secret="s" * 32, created_by="test")
        session.add(subscription)
        session.flush()
        older, newer, other = (WebhookDelivery(subscription_id=subscription.id, case_id=case, event=f"case.{action}",
                                               payload="{}", status=status)
                               for case, action, status in ((1, "dispatch", "failed"), (1, "accept", "delivered"),
                                                            (2, "dispatch", "failed")))
        session.add_all([older, newer, other])
        session.commit()
        ids = older.id, newer.id, other.id
    refused = api.post(f"/api/v1/webhooks/deliveries/{ids[0]}/retry")
    assert refused.status_code == 409 and f"delivery {ids[1]}, a later change of case 1" in refused.json()["detail"]
    assert api.post(f"/api/v1/webhooks/deliveries/{ids[2]}/retry").status_code == 200, "nothing later of case 2"
    forced = api.post(f"/api/v1/webhooks/deliveries/{ids[0]}/retry", params={"out_of_order": "true"})
    assert forced.status_code == 200 and forced.json()["status"] == "pending"


def test_a_retry_a_later_change_in_flight_overtakes_is_not_sent_after_it(api):
    """Found by review: an admin retried a failed change while a later change of its case was being sent; the
    retry was taken (nothing later had reached the receiver yet) and went out after it, putting the case back in
    its older state in the receiver's eyes. Now it waits for that attempt, and the sender then refuses it with the
    reason, unless out_of_order."""
    from datetime import timedelta

    import httpx

    from server.models import WebhookDelivery, WebhookSubscription, utcnow
    from server.services.webhooks import Webhooks

    api.app.state.webhooks.stop()  # this test's own sender, on its own clock, sends
    now = [utcnow() + timedelta(hours=1)]
    sender = Webhooks(api.app.state.database, clock=lambda: now[0])
    with api.app.state.database.session() as session:
        subscription = WebhookSubscription(url="http://receiver.test/hook", secret="s" * 32, created_by="test")
        session.add(subscription)
        session.flush()
        older = WebhookDelivery(subscription_id=subscription.id, case_id=1, event="case.dispatch",
                                payload=json.dumps({"action": "dispatch"}), status="failed", attempts=20)
        newer = WebhookDelivery(subscription_id=subscription.id, case_id=1, event="case.accept",
                                payload=json.dumps({"action": "accept"}), next_attempt_at=now[0])
        session.add_all([older, newer])
        session.commit()
        older_id, hook = older.id, subscription.id
    received, retried = [], []

    def receive(request: httpx.Request) -> httpx.Response:
        received.append(json.loads(request.content)["action"])
        if not retried:  # the admin retries the failed dispatch while the accept is on its way
            retried.append(api.post(f"/api/v1/webhooks/deliveries/{older_id}/retry").json())
        return httpx.Response(200)

    def older_one() -> dict:
        return next(item for item in api.get(f"/api/v1/webhooks/{hook}/deliveries").json()["items"]
                    if item["id"] == older_id)

    with httpx.Client(transport=httpx.MockTransport(receive)) as client:
        sender.deliver_due(client)
        assert retried[0]["status"] == "pending" and received == ["accept"], "taken, not sent in the same breath"
        assert datetime.fromisoformat(retried[0]["next_attempt_at"]) >= utcnow() + sender.lease - timedelta(
            seconds=5), "after the attempt in flight is over"
        now[0] += sender.lease
        sender.deliver_due(client)
        assert received == ["accept"], "not after the later change"
        assert older_one()["status"] == "failed" and "reached the receiver first" in older_one()["last_error"]
        assert api.post(f"/api/v1/webhooks/deliveries/{older_id}/retry",
                        params={"out_of_order": "true"}).status_code == 200
        now[0] += timedelta(seconds=1)
        sender.deliver_due(client)
    assert received == ["accept", "dispatch"], "sent when the admin says so"
