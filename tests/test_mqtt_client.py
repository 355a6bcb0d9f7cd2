"""gridwatch.mqtt's client, with paho in-process and in a child process alike: a QoS 1 publish counts as delivered
only once the broker says so, and what paho refuses is refused to the caller, not to the network loop."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest

from gridwatch.config_files import ConfigError
from gridwatch.mqtt import MqttClient

OWN = "gw/v1/nodes/node-a/telemetry"
FOREIGN = "gw/v1/nodes/node-b/events/litter"  # node-a may not write another node's topics
MESSAGE_IDS = 65535  # paho's message ids run 1 … 65,535 and then start again


def node_client(running_broker, network_process: bool, **kwargs) -> MqttClient:
    return MqttClient(f"node-a-{'process' if network_process else 'thread'}", "127.0.0.1", running_broker.port,
                      "node-a", running_broker.credentials.nodes["node-a"], network_process=network_process,
                      **kwargs)


@pytest.mark.parametrize("network_process", [False, True], ids=["in-process", "network-process"])
def test_a_qos1_publish_is_acknowledged_by_the_broker_even_after_qos0_publishes_used_every_message_id(
        running_broker, network_process):
    """paho reports a written QoS 0 message through the same callback as a broker's acknowledgement: taken for
    one, it acknowledged the QoS 1 message that later got its id before the broker had it (an edge outbox would
    then delete an event the broker never took)."""
    client = node_client(running_broker, network_process)
    client.start()
    try:
        for number in range(MESSAGE_IDS + 10):  # telemetry goes out at QoS 0
            client.publish(OWN, b'{"n": %d}' % number, qos=0)
        answers: queue.Queue[bool] = queue.Queue()
        client.publish(FOREIGN, b"{}", qos=1, on_ack=answers.put)
        assert answers.get(timeout=30) is False  # the broker's answer (not authorised), not a stale "written"
        assert client.refused and client.refused[-1][0] == FOREIGN
        client.publish(OWN, b"{}", qos=1, on_ack=answers.put)
        assert answers.get(timeout=10) is True
        assert answers.empty() and client.pending == 0
    finally:
        client.stop()


@pytest.mark.parametrize("network_process", [False, True], ids=["in-process", "network-process"])
def test_what_paho_refuses_is_refused_to_the_caller_and_the_client_goes_on(running_broker, network_process):
    client = node_client(running_broker, network_process)
    client.start()
    try:
        with pytest.raises(ValueError, match="wildcards"):
            client.publish("gw/v1/nodes/node-a/events/+", b"{}")
        with pytest.raises(ValueError):
            client.subscribe("gw/v1/#/events", lambda _message: None)
        answers: queue.Queue[bool] = queue.Queue()
        client.publish(OWN, b"{}", qos=1, on_ack=answers.put)
        assert answers.get(timeout=10) is True
    finally:
        client.stop()


@pytest.mark.parametrize("network_process", [False, True], ids=["in-process", "network-process"])
def test_a_missing_ca_file_is_an_error_at_once(running_broker, network_process, tmp_path: Path):
    with pytest.raises(ConfigError, match=r"tls_ca_file .*no-such-ca.pem: cannot load the broker's CA certificate"):
        node_client(running_broker, network_process, tls_ca_file=tmp_path / "no-such-ca.pem")
