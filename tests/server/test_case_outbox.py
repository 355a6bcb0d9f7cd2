"""Case changes on MQTT survive what paho's memory did not: a server restarted while the broker was away, or one that
died between the commit and the publish. Each change is stored in `case_messages` with the change itself and sent
from there; an integrator's persistent session gets every change, in order."""

from __future__ import annotations

import json
import queue
import threading

from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from gridwatch.contract import CaseAction, event_topic
from server.core.security import Role
from server.main import create_app
from server.models import CaseOutboxMessage, CaseRecord
from server.services import case_outbox
from server.services.case_outbox import LEASE_SECONDS, CaseOutbox
from tests.factories import event_payload, wait_until
from tests.server.city import make_city


def actions_until(subscriber, action: str | None, handled: set, timeout: float = 20.0) -> list[str]:
    """The case actions `subscriber` receives, in order, up to and including the first `action` (None: until none
    comes for `timeout`), each change once: as README tells integrators, one whose identity (case, seq) is
    in `handled` already is dropped (QoS 1 delivers at least once: the broker, restarted, sends again what the
    integrator's answer had not reached)."""
    seen: list[str] = []
    while action is None or action not in seen:
        try:
            change = json.loads(subscriber.messages.get(timeout=timeout).payload)
        except queue.Empty:
            if action is None:
                return seen
            raise
        identity = (change["case_id"], change["seq"])
        if identity not in handled:
            handled.add(identity)
            seen.append(change["action"])
    return seen


def unsent_on(api) -> float:  # noqa: ANN001 - a TestClient
    [line] = [line for line in api.get("/metrics").text.splitlines()
              if line.startswith("gridwatch_case_messages_unsent ")]
    return float(line.split()[1])


def test_a_step_taken_while_the_broker_was_away_reaches_the_integrator_after_a_server_restart(
        running_broker, server_settings, api_tokens, mqtt_client):
    """Found by review: the integrator got only ['feedback'] while webhooks had collect, file, dispatch, accept,
    feedback: `accept` waited in paho's memory, which the restart emptied."""
    integrator = mqtt_client("integrator", session_expiry=3600)
    integrator.subscribe("gw/v1/cases/#")
    admin = {"Authorization": f"Bearer {api_tokens['admin']}"}
    with TestClient(create_app(server_settings)) as api:
        wait_until(lambda: api.get("/healthz").json()["mqtt"] == "connected")
        node = mqtt_client("node-a")
        node.publish(event_topic("node-a", "litter"), json.dumps(event_payload(
            category="litter", code="0102", label="garbage", score=0.9)))
        handled: set = set()
        received = actions_until(integrator, "dispatch", handled)
        running_broker.broker.stop()
        assert api.post("/api/v1/cases/1/actions", json={"action": "accept"}, headers=admin).status_code == 200
        assert unsent_on(api) == 1, "/metrics shows the change waiting for the broker"
    threading.Timer(1.0, running_broker.broker.start).start()  # the server starts first, the broker a moment later
    with TestClient(create_app(server_settings)) as api:
        wait_until(lambda: api.get("/healthz").json()["mqtt"] == "connected", timeout=20)
        wait_until(lambda: integrator.client.is_connected(), timeout=20)
        assert api.post("/api/v1/cases/1/actions", json={"action": "feedback"}, headers=admin).status_code == 200
        received += actions_until(integrator, "feedback", handled)
        wait_until(lambda: unsent_on(api) == 0)
        received += actions_until(integrator, None, handled, timeout=0.5)
    assert received == ["collect", "file", "dispatch", "accept", "feedback"]


# ---- the outbox on its own: a stand-in for the MQTT client, the real database ----------------------------------------

class Client:
    """Stands in for the MQTT client: keeps what it is handed, and the broker's answer comes when the test says."""

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.connected.set()
        self.sent: list[str] = []
        self.by_case: dict[int, list[str]] = {}
        self.unanswered: list = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, on_ack=None) -> None:  # noqa: ANN001
        assert qos == 1 and not retain and topic.startswith("gw/v1/cases/")
        change = json.loads(payload)
        self.sent.append(change["action"])
        self.by_case.setdefault(change["case_id"], []).append(change["action"])
        self.unanswered.append(on_ack)

    def answer(self, accepted: bool | None = True) -> None:
        answers, self.unanswered = self.unanswered, []
        for on_ack in answers:
            on_ack(accepted)


def worker(city, sender: str, client: Client | None = None) -> CaseOutbox:  # noqa: ANN001 - tests/server/city.py
    """A worker's outbox on the city's database and clock, sending through `client` (None: one that dies right after
    its commits, so that what it handed to MQTT never reached the broker)."""
    outbox = CaseOutbox(city.database, sender, clock=city.clock, poll_seconds=0)  # every round looks
    outbox.attach(client if client is not None else Client())
    outbox._closed = False  # sends, without the thread: the test runs its rounds
    city.ingest.outbox = outbox
    return outbox


def step(city, action: str) -> None:  # noqa: ANN001
    """An operator's step on case 1, stored and announced as the API does."""
    with city.database.session() as session:
        case = session.get(CaseRecord, 1)
        messages = city.ingest.cases.act(case, CaseAction(action), "test admin", Role.ADMIN, city.clock.now)
        outgoing = city.ingest.record_changes(session, messages)
        session.commit()
    city.ingest.announce(messages, outgoing)


def unsent(city) -> int:  # noqa: ANN001
    with city.database.session() as session:
        return session.scalar(select(func.count()).select_from(CaseOutboxMessage))


def test_messages_go_at_once_and_leave_the_table_once_the_broker_has_them(city):
    client = Client()
    outbox = worker(city, "worker-1", client)
    city.detect()
    assert client.sent == ["collect", "file", "dispatch"], "sent right after the commit, by the live path"
    outbox.run_round()
    assert unsent(city) == 3 and client.sent == ["collect", "file", "dispatch"], "not sent twice while unanswered"
    client.answer()
    outbox.run_round()
    assert unsent(city) == 0 and outbox.in_hand == 0


def test_what_the_broker_has_is_deleted_by_the_next_change_written_not_a_transaction_of_its_own(city):
    """Under load SQLite's one writer took a transaction of the sender's own every few milliseconds to delete what
    the broker had acknowledged, between the ingest batches: the next transaction that records case changes
    deletes them instead, with its own writes."""
    client = Client()
    outbox = worker(city, "worker-1", client)
    city.detect()
    client.answer()
    assert unsent(city) == 3, "no sender round ran"
    city.detect(camera_id="cam-2", zone_id="footpath", location={"lat": 30.2745, "lon": 120.1656})  # another case
    assert unsent(city) == 3, "the first three deleted with the new case's writes"
    assert outbox.in_hand == 3, "only the new ones wait for their answers"


def test_the_overdue_sweeps_escalation_is_stored_and_sent_like_a_step(city):
    client = Client()
    outbox = worker(city, "worker-1", client)
    city.detect(category="illegal_parking", code="0505", label="car")  # due in 30 minutes
    assert city.ingest.sweep(city.clock.advance(minutes=31)) == 1
    assert client.sent == ["collect", "file", "dispatch", "escalate"] and unsent(city) == 4
    client.answer()
    outbox.run_round()
    assert unsent(city) == 0


def test_a_worker_that_died_before_publishing_sends_what_it_committed_when_it_starts_again(city):
    worker(city, "worker-1")  # committed its changes, then died before handing them to MQTT
    city.detect()
    step(city, "accept")
    assert unsent(city) == 4
    client = Client()
    restarted = worker(city, "worker-1", client)  # the same client id: what it held is its own at once
    restarted.run_round()
    assert client.sent == ["collect", "file", "dispatch", "accept"]
    client.answer()
    restarted.run_round()
    assert unsent(city) == 0


def test_a_gone_workers_messages_are_taken_over_after_its_lease_and_a_later_change_waits_behind_them(city):
    worker(city, "worker-1")  # died, and does not come back
    city.detect()
    client = Client()
    other = worker(city, "worker-2", client)
    step(city, "accept")
    assert client.sent == [], "accept waits behind the case's earlier changes, held by a worker that may be alive"
    other.run_round()
    assert client.sent == [], "worker-1's hold has not run out"
    city.clock.advance(seconds=LEASE_SECONDS + 1)
    other.run_round()
    assert client.sent == ["collect", "file", "dispatch", "accept"], "taken over, in the order they were made"
    step(city, "feedback")
    assert client.sent[-1] == "feedback", "behind messages in this worker's hand: sent at once"
    client.answer()
    other.run_round()
    assert unsent(city) == 0


def test_a_message_the_broker_lost_with_its_session_goes_again_before_the_later_ones(city):
    client = Client()
    outbox = worker(city, "worker-1", client)
    city.detect()
    client.answer(None)  # the broker came back without our session: nothing of it delivered
    step(city, "accept")
    assert client.sent == ["collect", "file", "dispatch", "collect", "file", "dispatch", "accept"]
    client.answer()
    outbox.run_round()
    assert unsent(city) == 0


def test_two_workers_send_each_waiting_message_once(city):
    worker(city, "worker-gone")
    for n in range(20):  # twenty cases, three changes each, left by a worker gone for good
        city.detect(camera_id=f"cam-{n}", location={"lat": 30.2 + n * 0.01, "lon": 120.16})
    city.clock.advance(seconds=LEASE_SECONDS + 1)
    clients = [Client(), Client()]
    outboxes = [worker(city, f"worker-{n}", client) for n, client in enumerate(clients)]
    barrier = threading.Barrier(2)

    def rounds(outbox: CaseOutbox) -> None:
        barrier.wait()
        for _ in range(5):
            outbox.run_round()

    threads = [threading.Thread(target=rounds, args=(outbox,)) for outbox in outboxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    sent = clients[0].sent + clients[1].sent
    assert len(sent) == 60 and sent.count("collect") == sent.count("file") == sent.count("dispatch") == 20
    assert not set(clients[0].by_case) & set(clients[1].by_case), "a case's messages sent by one worker"
    for client in clients:
        assert all(actions == ["collect", "file", "dispatch"] for actions in client.by_case.values())
    for client, outbox in zip(clients, outboxes, strict=True):
        client.answer()
        outbox.run_round()
    assert unsent(city) == 0


def test_a_worker_cut_off_from_the_broker_leaves_its_cases_messages_to_a_connected_worker(city):
    """Found by review: a worker whose MQTT client was cut off (expired credentials, an ACL change for its client
    id, one broker node down) renewed its hold whenever the database answered and kept holding its new rows: ten
    minutes on, worker-2 had sent nothing, the case's accept waiting behind worker-1's rows."""
    cut_off, connected = Client(), Client()
    cut_off.connected.clear()
    first, second = worker(city, "worker-1", cut_off), worker(city, "worker-2", connected)
    city.ingest.outbox = first
    city.detect()
    city.ingest.outbox = second
    step(city, "accept")
    for _ in range(10):
        first.run_round()
        second.run_round()
        city.clock.advance(seconds=60)
    assert connected.sent == ["collect", "file", "dispatch", "accept"], "sent by the connected worker, in order"
    assert cut_off.sent == []
    connected.answer()
    second.run_round()
    assert unsent(city) == 0


def test_a_worker_cut_off_after_handing_its_messages_over_releases_them_about_a_lease_later(city):
    """Found by review: the lease of a worker cut off from the broker was renewed every 15 s for as long as its
    database answered, so what it had handed to MQTT before the cut waited for it for ever."""
    cut_off, connected = Client(), Client()
    first, second = worker(city, "worker-1", cut_off), worker(city, "worker-2", connected)
    city.ingest.outbox = first
    city.detect()
    assert cut_off.sent == ["collect", "file", "dispatch"]
    cut_off.connected.clear()  # handed over, never acknowledged: the broker did not get them
    city.ingest.outbox = second
    step(city, "accept")
    for _ in range(3):  # 45 s cut off: a broker restarting, say
        first.run_round()
        second.run_round()
        assert connected.sent == [], "within its lease: worker-1's client may still get them through"
        city.clock.advance(seconds=15)
    for _ in range(3):
        first.run_round()
        second.run_round()
        city.clock.advance(seconds=15)
    assert connected.sent == ["collect", "file", "dispatch", "accept"], "taken over, in the order they were made"
    with city.database.session() as session:
        assert session.scalars(select(CaseOutboxMessage.held_by)).all() == ["worker-2"] * 4


def test_a_stopped_workers_messages_and_those_written_as_and_after_it_stopped_go_out_through_its_replacement_at_once(
        city):
    """Found by review: a clean stop left the unacknowledged rows leased to the stopped worker for a minute, and a
    change committed after the stop (a sweep already running) was leased to it too: a replacement with a new client
    id (a pod's name) sent neither, nor any later change of the case, for that minute."""
    stopped = worker(city, "gridwatch-7f9c", Client())
    city.detect()  # handed to MQTT, not yet acknowledged when the stop comes
    with city.database.session() as session:  # a sweep's step, its transaction open as the stop comes
        messages = city.ingest.cases.act(session.get(CaseRecord, 1), CaseAction.ACCEPT, "test admin", Role.ADMIN,
                                         city.clock.now)
        outgoing = city.ingest.record_changes(session, messages)
        stopping = threading.Thread(target=stopped.stop)
        stopping.start()
        stopping.join(1.0)  # PostgreSQL: stopped, this row unseen; SQLite: waiting for this transaction to commit
        session.commit()
    stopping.join(30)
    city.ingest.announce(messages, outgoing)
    step(city, "feedback")  # committed after the stop
    client = Client()
    replacement = worker(city, "gridwatch-b2d4", client)
    replacement.run_round()
    assert client.sent == ["collect", "file", "dispatch", "accept", "feedback"]
    client.answer()
    replacement.run_round()
    assert unsent(city) == 0


def test_a_broker_outages_case_messages_wait_in_the_table_not_in_memory_and_go_a_window_at_a_time(city, monkeypatch):
    """Found by review: while the broker was away every live message was still handed to paho, whose queue has no
    limit: 400 detections during an outage held 1,200 messages in memory, past the sender's window of 1,000."""
    monkeypatch.setattr(case_outbox, "WINDOW", 10)
    client = Client()
    outbox = worker(city, "worker-1", client)
    record = outbox.record

    def record_as_the_connection_drops(session, messages):  # noqa: ANN001, ANN202
        rows = record(session, messages)
        client.connected.clear()  # the first case's messages written held by this worker, committed cut off
        return rows

    monkeypatch.setattr(outbox, "record", record_as_the_connection_drops)
    for n in range(8):
        city.detect(camera_id=f"cam-{n}", location={"lat": 30.2 + n * 0.01, "lon": 120.16})
    outbox.run_round()
    assert client.sent == [] and outbox.in_hand == 0 and unsent(city) == 24, "the outage's changes wait in the table"
    client.connected.set()
    outbox.run_round()
    assert len(client.sent) == 10 and outbox.in_hand == 10, "a window at a time once connected again"
    for _ in range(5):
        client.answer()
        outbox.run_round()
    assert unsent(city) == 0
    assert all(actions == ["collect", "file", "dispatch"] for actions in client.by_case.values())
    assert len(client.by_case) == 8


def test_a_workers_hold_is_renewed_and_released_through_an_index_not_a_scan_of_the_backlog(tmp_path):
    """Found by review: nothing indexed `held_by`, so each worker's renewal every 15 s read the whole backlog."""
    city = make_city(tmp_path, f"sqlite:///{tmp_path / 'gridwatch.db'}")
    statements: list[tuple[str, tuple]] = []

    def seen(_connection, _cursor, statement, parameters, _context, _executemany) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("UPDATE CASE_MESSAGES"):
            statements.append((statement, parameters))

    event.listen(city.database.engine, "before_cursor_execute", seen)
    client = Client()
    outbox = worker(city, "worker-1", client)
    city.detect()
    outbox.run_round()  # renews
    client.connected.clear()
    outbox.run_round()
    city.clock.advance(seconds=LEASE_SECONDS + 1)
    outbox.run_round()  # releases
    event.remove(city.database.engine, "before_cursor_execute", seen)
    assert len(statements) == 2
    with city.database.engine.connect() as connection:
        for statement, parameters in statements:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            assert [row[3] for row in plan] == [
                "SEARCH case_messages USING INDEX ix_case_messages_held_by (held_by=?)"], statement
