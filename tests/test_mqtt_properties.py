"""gridwatch.mqtt_properties: paho's MQTT 5 properties with shared tables must read, write, check and refuse exactly
as paho's own do, for every property in every packet type, and not be rebuilt for each message."""

import itertools

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

from gridwatch import mqtt_properties

mqtt_properties.install()


class PahoProperties(Properties):
    """paho's own methods, as shipped."""


for _name, _method in mqtt_properties.PAHO.items():
    setattr(PahoProperties, _name, _method)

PACKETS = [*PacketTypes.indexes, PacketTypes.WILLMESSAGE]
VALUES = {0: 0, 1: 1, 2: 3600, 3: 0, 4: b"\x00\x01", 5: "text", 6: ("key", "value")}  # by paho's wire type
EDGES = [-1, 0, 1, 2, 65535, 65536, 268435455, 268435456, [5, 6]]


def outcome(kind: type[Properties], packet: int, name: str, values: list) -> tuple:
    """What setting each value does: the properties it leaves (and their bytes), or paho's error."""
    properties = kind(packet)
    try:
        for value in values:
            setattr(properties, name, value)
        wire = properties.pack()
    except Exception as error:  # noqa: BLE001 - paho's errors, whatever they are, compared
        return type(error).__name__, str(error)
    received = kind(packet)
    received.unpack(wire)
    return properties.json(), wire, received.json(), str(received), received.isEmpty()


def test_every_property_in_every_packet_behaves_as_paho_says():
    names = list(Properties(PacketTypes.PUBLISH).names)
    for packet, name in itertools.product(PACKETS, names):
        ident = Properties(packet).names[name]
        typical = VALUES[Properties(packet).properties[ident][0]]
        for values in ([typical], [typical, typical], *([edge] for edge in EDGES)):
            for spelling in (name, name.replace(" ", "")):
                assert outcome(Properties, packet, spelling, values) == \
                    outcome(PahoProperties, packet, spelling, values), (packet, spelling, values)
    for kind in (Properties, PahoProperties):
        with pytest.raises(MQTTException, match="Property name must be one of"):
            kind(PacketTypes.PUBLISH).NoSuchProperty = 1


def test_a_received_publish_reads_the_same_and_properties_share_their_tables():
    sent = PahoProperties(PacketTypes.PUBLISH)
    sent.MessageExpiryInterval = 60
    sent.ContentType = "json"
    sent.SubscriptionIdentifier = 3
    sent.UserProperty = ("camera", "cam-1")
    sent.UserProperty = ("zone", "z-1")
    wire = sent.pack() + b"payload"
    ours, theirs = Properties(PacketTypes.PUBLISH), PahoProperties(PacketTypes.PUBLISH)
    assert ours.unpack(wire)[1] == theirs.unpack(wire)[1] == len(wire) - len(b"payload")
    assert ours.json() == theirs.json() == {"MessageExpiryInterval": 60, "ContentType": "json",
                                            "SubscriptionIdentifier": [3],
                                            "UserProperty": [("camera", "cam-1"), ("zone", "z-1")]}
    ours.clear()
    assert ours.isEmpty() and ours.json() == {}
    other = Properties(PacketTypes.CONNECT)
    assert other.properties is ours.properties and other.names is ours.names  # built once, not per message
    assert other.json() == {}  # values stay each instance's own
