"""gridwatch.mqtt's topic filters: a compiled pattern must route a message exactly where MQTT's rules (as paho
implements them) would."""

import itertools

import paho.mqtt.client as mqtt

from gridwatch.contract import SUBSCRIBE_ALL_NODES
from gridwatch.mqtt import topic_filter_pattern
from server.services.ingest_service import RETAINED_STATE

FILTERS = ["#", "+", "+/+", "+/#", "a/#", "a/+", "+/b", "a/b", "a/b/#", "a/+/c", "$SYS/#", "a.b/+", "a+b",
           SUBSCRIBE_ALL_NODES, *RETAINED_STATE]
TOPICS = ["a", "a/b", "a/b/c", "a/b/c/d", "a/x/c", "b", "x/b", "a/", "/a", "/", "$SYS", "$SYS/broker/uptime",
          "a.b/c", "axb/c", "a+b", "a\nb", "gw/v1/nodes/n-1/status", "gw/v1/nodes/n-1/config/status",
          "gw/v1/nodes/n-1/snapshot/cam-1", "gw/v1/nodes/n-1/snapshot", "gw/v1/nodes/n-1/events/parking",
          "gw/v1/nodes", "gw/v1/nodes/n-1/statusx"]


def test_each_filter_matches_exactly_the_topics_paho_says_it_does():
    for topic_filter, topic in itertools.product(FILTERS, TOPICS):
        assert bool(topic_filter_pattern(topic_filter).fullmatch(topic)) == mqtt.topic_matches_sub(
            topic_filter, topic), (topic_filter, topic)


def test_several_filters_match_what_any_of_them_does_and_a_shared_prefix_is_dropped():
    retained = topic_filter_pattern(*RETAINED_STATE)
    for topic in TOPICS:
        assert bool(retained.fullmatch(topic)) == any(mqtt.topic_matches_sub(f, topic) for f in RETAINED_STATE)
    assert topic_filter_pattern(f"$share/workers/{SUBSCRIBE_ALL_NODES}").fullmatch("gw/v1/nodes/n-1/events/litter")
    assert not topic_filter_pattern(f"$share/workers/{SUBSCRIBE_ALL_NODES}").fullmatch("gw/v1/cases/litter/7")
