"""The webhook sender's retries against a receiver standing in for the integrator (httpx's mock transport): a
case's changes in order, back-off through a night, an endpoint that cannot be reached resting without holding back
the others, and what fails with it. Subscriptions, signatures and the API: test_webhooks.py."""

from __future__ import annotations

import json
from datetime import timedelta


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


def test_a_receiver_dead_for_weeks_still_waits_the_longest_delay(database_url):
    """Found by review: after 1,024 failed tries in a row the back-off overflowed a float, and the delivery was
    tried every lease for ever, never failed, with a traceback each time."""
    from server.db import Database
    from server.services.webhooks import Webhooks

    sender = Webhooks(Database(database_url), 20, 5.0, 3600.0)
    assert [sender.delay(n).total_seconds() for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert sender.delay(1025) == sender.delay(100_000) == timedelta(hours=1)


def test_a_receiver_too_slow_to_answer_rests_and_holds_back_no_other_subscriber(database_url):
    """Found by review: a receiver that took longer than the timeout to answer was not resting, so each of its
    changes held the sender for the whole timeout in turn while the other integrators' changes waited."""
    import httpx

    from server.db import Database
    from server.models import WebhookDelivery, WebhookSubscription
    from server.services.webhooks import Webhooks

    database = Database(database_url)
    queue_changes(database, "http://slow.test/hook", [(case, "dispatch") for case in range(1, 6)])
    queue_changes(database, "http://quick.test/hook", [(case, "dispatch") for case in range(1, 6)])
    tried: list[str] = []

    def receive(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        if request.url.host == "slow.test":
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(receive)) as client:
        Webhooks(database).deliver_due(client)
    assert tried.count("slow.test") == 1 and tried.count("quick.test") == 5
    with database.session() as session:
        slow = session.query(WebhookSubscription).filter_by(url="http://slow.test/hook").one()
        assert slow.resting_until is not None and "ReadTimeout" in session.query(WebhookDelivery).filter_by(
            subscription_id=slow.id, attempts=1).one().last_error


def test_a_receiver_that_moved_or_is_gone_fails_at_once_naming_where_it_points(database_url):
    """Found by review: a 301 to the receiver's new address, or a 410, was tried twenty times over ten hours, and
    the log said only "HTTP 301"."""
    import httpx

    from server.db import Database
    from server.models import WebhookDelivery
    from server.services.webhooks import Webhooks

    database = Database(database_url)
    queue_changes(database, "http://moved.test/hook", [(1, "dispatch")])
    queue_changes(database, "http://gone.test/hook", [(2, "dispatch")])
    queue_changes(database, "http://busy.test/hook", [(3, "dispatch")])
    queue_changes(database, "http://tickets.test/hook", [(4, "dispatch")])

    def receive(request: httpx.Request) -> httpx.Response:
        if request.url.host == "moved.test":
            return httpx.Response(301, headers={"Location": "https://new.test/hook?key=secret"})
        if request.url.host == "tickets.test":  # REST's "created, here": found by review to be logged as moved
            return httpx.Response(201, headers={"Location": "https://tickets.test/tickets/77"})
        return httpx.Response(410 if request.url.host == "gone.test" else 503)

    with httpx.Client(transport=httpx.MockTransport(receive)) as client:
        Webhooks(database).deliver_due(client)
    with database.session() as session:
        outcome = {d.case_id: (d.status, d.last_error) for d in session.query(WebhookDelivery)}
    assert outcome[1][0] == "failed" and "moved to https://new.test/hook" in outcome[1][1]
    assert "secret" not in outcome[1][1], "a credential in the new address stays out of the log"
    assert outcome[2][0] == "failed" and outcome[2][1].startswith("HTTP 410")
    assert outcome[3][0] == "pending", "a busy receiver is tried again"
    assert outcome[4] == ("delivered", None)


def test_a_receiver_answering_a_nul_is_tried_again_by_its_back_off_and_gives_up_in_time(database_url):
    """Found by review: a reply holding a NUL byte went into the log as it came; PostgreSQL refused it, the round's
    commit failed, and the delivery was tried every claim for ever, its attempts and back-off never counted."""
    import httpx

    from server.db import Database
    from server.models import WebhookDelivery, utcnow
    from server.services.webhooks import Webhooks

    database = Database(database_url)
    queue_changes(database, "http://receiver.test/hook", [(1, "dispatch")])
    now = [utcnow()]
    sender = Webhooks(database, max_attempts=3, clock=lambda: now[0])
    with httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(500, content=b"oops\x00bin"))) as client:
        for _ in range(3):
            sender.deliver_due(client)
            now[0] += timedelta(hours=2)
    with database.session() as session:
        [delivery] = session.query(WebhookDelivery).all()
        assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 3, "HTTP 500: oops\\0bin")


def test_a_receiver_that_drips_its_answer_holds_the_sender_no_longer_than_an_attempt_may_take(database_url):
    """Found by review: httpx times each read, so a receiver answering a byte at a time held the sender for as long
    as it liked (13 s with a 1 s timeout), every other subscriber's change waiting behind it, and past the lease
    another worker sent the same delivery again."""
    import socket
    import threading
    import time

    import httpx

    from server.db import Database
    from server.models import WebhookDelivery, WebhookSubscription
    from server.services.webhooks import ATTEMPT_TIMEOUTS, Webhooks

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def drip() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        try:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 40:
                connection.sendall(bytes([byte]))
                time.sleep(0.2)  # within httpx's read timeout, every time
        except OSError:
            pass
        connection.close()

    threading.Thread(target=drip, daemon=True).start()
    database = Database(database_url)
    queue_changes(database, f"http://127.0.0.1:{port}/hook", [(1, "dispatch")])
    queue_changes(database, "http://other.test/hook", [(2, "dispatch")])
    other_sent: list[float] = []

    class Other(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.host == "other.test":
                other_sent.append(time.monotonic() - began)
                return httpx.Response(200)
            return super().handle_request(request)

    began = time.monotonic()
    with httpx.Client(transport=Other()) as client:
        Webhooks(database, timeout_seconds=0.5).deliver_due(client)
    assert other_sent and other_sent[0] < ATTEMPT_TIMEOUTS * 0.5 + 1, other_sent
    with database.session() as session:
        outcome = {d.case_id: (d.status, d.last_error) for d in session.query(WebhookDelivery)}
        dripping = session.query(WebhookSubscription).filter_by(url=f"http://127.0.0.1:{port}/hook").one()
        assert dripping.resting_until is not None, "an endpoint that does not answer in time rests"
    assert outcome[1][0] == "pending" and "no whole answer within 1.5 s" in outcome[1][1]
    assert outcome[2] == ("delivered", None)
    listener.close()
