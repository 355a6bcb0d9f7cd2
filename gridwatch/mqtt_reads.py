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
        while rc == mqtt.MQTT_ERR_SUCCESS and self._received and self._sock is not None:
            rc = super().loop_read(max_packets)  # each turn takes a whole packet, or empties the buffer
        return rc

    def _sock_close(self) -> None:
        super()._sock_close()
        self._received.clear()  # what was left belongs to the closed connection
