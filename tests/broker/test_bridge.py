"""Site brokers bridged to the city's core broker (Mosquitto bridges from broker_config/): nodes connect to their
site's broker, the server reads from the core one. What nodes publish reaches the core once; what the server sends to
nodes and field apps reaches the site; the link going down loses nothing; the bridge account can do nothing else."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from gridwatch.contract import case_topic, config_topic, event_topic, status_topic
from tests.bridges import City, start_city, stop_city
from tests.factories import wait_until


@pytest.fixture
def city(tmp_path) -> Iterator[City]:
    city = start_city(tmp_path, [["node-a"], ["node-b"]])
    yield city
    stop_city(city)


def test_nodes_at_two_sites_reach_the_server_and_what_it_sends_reaches_them(city):
    server = city.client(city.core, city.core_accounts, "gridwatch-server")
    server.subscribe("gw/#")
    (site_a, accounts_a), (site_b, accounts_b) = city.sites
    node_a = city.client(site_a, accounts_a, "node-a")
    node_a.subscribe(config_topic("node-a"))
    field_app = city.client(site_b, accounts_b, "integrator")
    field_app.subscribe("gw/v1/cases/#")

    def delivered_to_server() -> bool:  # the bridges connect a moment after their brokers start
        node_a.publish(status_topic("node-a"), b"online")
        return any(m.topic == status_topic("node-a") for m in server.collect(0.3))

    wait_until(delivered_to_server, timeout=20)
    node_b = city.client(site_b, accounts_b, "node-b")
    for n in range(20):
        assert not node_a.publish(event_topic("node-a", "litter"), f"a{n}").is_failure
        assert not node_b.publish(event_topic("node-b", "litter"), f"b{n}").is_failure
    arrived = Counter(m.payload.decode() for m in server.collect(1.0) if "/events/" in m.topic)
    assert arrived == Counter({f"{side}{n}": 1 for side in "ab" for n in range(20)}), "each event once at the core"

    server.publish(config_topic("node-a"), b"zones", retain=True)
    assert node_a.wait_for(lambda m: m.topic == config_topic("node-a")).payload == b"zones"
    server.publish(case_topic("litter", 7), b"dispatched")
    assert field_app.wait_for(lambda m: m.topic == case_topic("litter", 7)).payload == b"dispatched"
    echoes = Counter(m.topic for m in server.collect(0.7))  # its own subscription to gw/# delivers each once
    assert (echoes[config_topic("node-a")], echoes[case_topic("litter", 7)]) == (1, 1), \
        "nothing the server sent comes back to the core a second time through a bridge"


def test_the_site_keeps_what_its_nodes_publish_while_the_core_is_down(city):
    server = city.client(city.core, city.core_accounts, "gridwatch-server", session_expiry=3600)
    server.subscribe("gw/v1/nodes/+/events/#")
    site, accounts = city.sites[0]
    node = city.client(site, accounts, "node-a")
    wait_until(lambda: not node.publish(event_topic("node-a", "litter"), b"hello").is_failure
               and any(m.payload == b"hello" for m in server.collect(0.3)), timeout=20)

    city.core.stop()
    for n in range(300):  # the site's broker acknowledges them: the node's outbox would otherwise keep them
        assert not node.publish(event_topic("node-a", "litter"), f"offline-{n}").is_failure
    city.core.start()  # same port, same data: the server's session and the bridge's come back

    received: Counter[str] = Counter()
    wait_until(lambda: received.update(m.payload.decode() for m in server.collect(0.5)) or
               {f"offline-{n}" for n in range(300)} <= set(received), timeout=60)
    assert {name for name, count in received.items() if name.startswith("offline-") and count > 1} == set(), \
        "each once (QoS 1 may repeat only across a cut, and none was cut here mid-delivery)"
