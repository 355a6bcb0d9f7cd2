"""paho-mqtt's socket reads, a buffer at a time.

paho reads each packet from the socket in three or more `recv` calls (its type byte, each byte of its remaining
length, then the rest), and after each `select` it reads one packet and selects again: for a server receiving
thousands of small PUBLISHes a second, four or five system calls and a turn of paho's loop a message. Here the socket
is read up to `READ_SIZE` bytes at once and paho takes its bytes from that buffer; after a `select` paho reads every
packet the buffer holds before selecting again (otherwise a packet already read from the socket would wait for the
socket's next bytes). A packet only partly received leaves the buffer empty, as paho's own reads do: paho keeps
its part and reads the rest when the socket has it.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt import _packet

READ_SIZE = 65536


class BufferedClient(mqtt.Client):
    """paho's `Client`, reading its socket a buffer at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._received = bytearray()
        """Read from the socket, not yet taken by paho's packet reader."""

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._received:
            data = super()._sock_recv(READ_SIZE)  # BlockingIOError when the socket has nothing: paho waits
            if not data:
                return data  # the broker closed the connection
            self._received += data
        taken = bytes(self._received[:bufsize])
        del self._received[:bufsize]  # cheap: a bytearray drops its head without moving the rest
        return taken

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == mqtt.MQTT_ERR_SUCCESS and self._sock is not None and (self._received or self._read_whole()):
            rc = super().loop_read(max_packets)  # each turn takes a whole packet, or empties the buffer
        return rc

    def _read_whole(self) -> bool:
        """A packet read to its last byte but not yet handled: paho stops after 100 reads of one packet (a
        6.4 MB one, here), even when the hundredth completed it, and would leave it for the socket's next bytes."""
        return bool(self._in_packet["have_remaining"]) and self._in_packet["to_process"] == 0

    def _handle_pubrec(self) -> mqtt.MQTTErrorCode:
        """MQTT 5: a PUBREC with a reason code of 0x80 or more (not authorised, quota exceeded …) refuses a QoS 2
        message, whose exchange then ends there. paho ignores the code and sends PUBREL, Mosquitto answers with
        PUBCOMP, and the refused message looked delivered; here `on_publish` gets the refusal."""
        result = _packet.decode_pubrec(self._in_packet["command"], self._in_packet["packet"], self._protocol)
        if not result.reason.is_failure:
            return super()._handle_pubrec()
        with self._out_message_mutex:
            if result.mid in self._out_messages:
                return self._do_on_publish(result.mid, result.reason, result.properties)
        return mqtt.MQTT_ERR_SUCCESS

    def acknowledges(self, mid: int) -> bool:
        """Whether an `on_publish` of `mid` is the broker's acknowledgement of a QoS 1 or 2 message. paho calls
        `on_publish` for a QoS 0 message as well, once written, and message ids wrap at 65,535: taken for an
        acknowledgement, a QoS 0 message's id would later acknowledge the QoS 1 message that gets the same id,
        before the broker has it. paho keeps a QoS 1 or 2 message among `_out_messages` until its `on_publish`
        has run; a QoS 0 message is never there."""
        return mid in self._out_messages

    def _sock_close(self) -> None:
        super()._sock_close()
        self._received.clear()  # what was left belongs to the closed connection
