"""The broker's TLS listener, with a certificate authority and broker certificate the test makes: a node and the
server talk over it; plain MQTT on that port, or a broker certificate from a CA the client does not trust, gets no
connection."""

from __future__ import annotations

import json

from gridwatch.broker import Broker, generate_tls, generate_users
from gridwatch.contract import event_topic
from gridwatch.mqtt import MqttClient
from tests.factories import event_payload, wait_until


def test_a_node_and_the_server_talk_over_tls_and_nothing_else_gets_in(tmp_path):
    tls = generate_tls(tmp_path / "tls")
    assert oct(tls.key.stat().st_mode & 0o777) == "0o600"
    creds = generate_users(tmp_path / "broker", ["node-a"], ["integrator"])
    with Broker(tmp_path / "broker" / "data", tmp_path / "broker" / "passwd", tls=tls) as broker:
        received = []
        server = MqttClient("server", "127.0.0.1", broker.tls_port, "gridwatch-server", creds.server_password,
                            tls_ca_file=tls.ca_cert)
        server.subscribe("gw/v1/nodes/+/events/+", received.append)
        server.start(wait_seconds=10)
        node = MqttClient("node-a", "127.0.0.1", broker.tls_port, "node-a", creds.nodes["node-a"],
                          tls_ca_file=tls.ca_cert)
        node.start(wait_seconds=10)
        try:
            assert server.connected.is_set() and node.connected.is_set()
            payload = event_payload(node_id="node-a")
            node.publish(event_topic("node-a", "illegal_parking"), json.dumps(payload), qos=1)
            wait_until(lambda: received)
            assert json.loads(received[0].payload)["event_id"] == payload["event_id"]
        finally:
            node.stop()
            server.stop()

        stranger_ca = generate_tls(tmp_path / "other-ca").ca_cert
        for name, ca in (("plain MQTT on the TLS port", None), ("a broker certificate it does not trust", stranger_ca)):
            client = MqttClient(f"probe-{ca is None}", "127.0.0.1", broker.tls_port, "node-a", creds.nodes["node-a"],
                                tls_ca_file=ca)
            client.start(wait_seconds=3)
            try:
                assert not client.connected.is_set(), name
            finally:
                client.stop()


def test_a_node_on_the_tls_listener_cannot_take_over_the_servers_session(tmp_path):
    """Found by review: a node logging in with the server's client id was handed the server's kept session, and the
    events queued for the server were dropped (the node may not read them)."""
    tls = generate_tls(tmp_path / "tls")
    creds = generate_users(tmp_path / "broker", ["node-a", "node-b"], ["integrator"])
    with Broker(tmp_path / "broker" / "data", tmp_path / "broker" / "passwd", tls=tls) as broker:
        received = []

        def server() -> MqttClient:
            client = MqttClient("gridwatch-server", "127.0.0.1", broker.port, "gridwatch-server",
                                creds.server_password, session_expiry_seconds=3600)
            client.subscribe("gw/v1/nodes/+/events/+", received.append)
            client.start(wait_seconds=10)
            return client

        server().stop()  # its session stays, and collects what comes meanwhile
        node_b = MqttClient("node-b", "127.0.0.1", broker.port, "node-b", creds.nodes["node-b"])
        node_b.start(wait_seconds=10)
        for _ in range(3):
            node_b.publish(event_topic("node-b", "litter"), json.dumps(event_payload(node_id="node-b")), qos=1)
        assert node_b.flush(5)
        node_b.stop()
        thief = MqttClient("gridwatch-server", "127.0.0.1", broker.tls_port, "node-a", creds.nodes["node-a"],
                           session_expiry_seconds=3600, tls_ca_file=tls.ca_cert)
        thief.start(wait_seconds=10)
        thief.stop()
        back = server()
        try:
            wait_until(lambda: len(received) == 3)
        finally:
            back.stop()
