"""paho-mqtt's MQTT 5 `Properties`, made cheap to receive.

For every `Properties` it makes, paho builds its tables of all 26 MQTT 5 properties anew (names, wire types, the
packets each may travel in), and it finds a property by name or identifier by scanning those tables with a string
replace per entry, several times for each property read or written. It makes one for every PUBLISH it receives and
reads the subscription identifier into it: about 50 µs a message, a tenth to a fifth of a busy server worker's CPU
(py-spy). Here the tables are built once, by paho's own constructor, and shared (they are only read), and the
lookups are dictionary lookups; every check paho makes, and its error, is kept. `PAHO` keeps paho's own methods:
tests/test_mqtt_properties.py holds each replacement to its original over every property and packet type.
"""

from __future__ import annotations

from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

REPLACED = ("__init__", "__setattr__", "getIdentFromName", "getNameFromIdent", "allowsMultiple", "clear", "isEmpty")
PAHO: dict[str, Any] = {name: Properties.__dict__[name] for name in REPLACED}
"""paho's own methods, as they were before `install()`."""

_PRIVATE = frozenset({"packetType", "types", "names", "properties"})
_MULTIPLE = (11, 38)  # Subscription Identifier, User Property: a list of values
_RANGES = {"ReceiveMaximum": (1, 65535), "TopicAlias": (1, 65535), "TopicAliasMaximum": (0, 65535),
           "MaximumPacketSize": (1, 268435455), "SubscriptionIdentifier": (1, 268435455)}
_FLAGS = ("RequestResponseInformation", "RequestProblemInformation", "PayloadFormatIndicator")


def install() -> None:
    """Replace paho's `Properties` methods with the table-sharing ones (once per process)."""
    if Properties.__init__ is not PAHO["__init__"]:
        return
    tables = Properties(PacketTypes.PUBLISH)
    shared = {"types": tables.types, "names": tables.names, "properties": tables.properties}
    ident_of = {name.replace(" ", ""): ident for name, ident in tables.names.items()}
    name_of = {ident: name for name, ident in tables.names.items()}

    def __init__(self: Properties, packetType: int) -> None:  # noqa: N803 - paho's names
        object.__setattr__(self, "packetType", packetType)
        self.__dict__.update(shared)

    def getIdentFromName(self: Properties, compressedName: str) -> int:  # noqa: N802, N803
        return ident_of.get(compressedName, -1)

    def getNameFromIdent(self: Properties, identifier: int) -> str | None:  # noqa: N802
        return name_of.get(identifier)

    def allowsMultiple(self: Properties, compressedName: str) -> bool:  # noqa: N802, N803
        return ident_of.get(compressedName, -1) in _MULTIPLE

    def clear(self: Properties) -> None:
        for name in [name for name in self.__dict__ if name in ident_of]:
            delattr(self, name)

    def isEmpty(self: Properties) -> bool:  # noqa: N802
        return not any(name in ident_of for name in self.__dict__)

    def __setattr__(self: Properties, name: str, value: Any) -> None:
        name = name.replace(" ", "")
        if name in _PRIVATE:
            object.__setattr__(self, name, value)
            return
        ident = ident_of.get(name)
        if ident is None:
            raise MQTTException(f"Property name must be one of {self.names.keys()}")
        if self.packetType not in self.properties[ident][1]:
            raise MQTTException(f"Property {name} does not apply to packet type "
                                f"{PacketTypes.Names[self.packetType]}")
        if not isinstance(value, list):
            if name in _RANGES and not _RANGES[name][0] <= value <= _RANGES[name][1]:
                raise MQTTException(f"{name} property value must be in the range {_RANGES[name][0]}-"
                                    f"{_RANGES[name][1]}")
            if name in _FLAGS and value != 0 and value != 1:
                raise MQTTException(f"{name} property value must be 0 or 1")
        if ident in _MULTIPLE:
            if not isinstance(value, list):
                value = [value]
            if name in self.__dict__:
                value = self.__dict__[name] + value
        object.__setattr__(self, name, value)

    for method in (__init__, __setattr__, getIdentFromName, getNameFromIdent, allowsMultiple, clear, isEmpty):
        setattr(Properties, method.__name__, method)
