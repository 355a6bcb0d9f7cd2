"""gridwatch.mqtt_reads: paho reading its socket a buffer at a time must deliver every packet whole, in order and at
once, whatever the sizes and however the bytes arrive, with far fewer socket reads than packets."""

from __future__ import annotations

import queue
import threading
import time

import paho.mqtt.client as mqtt

from gridwatch.broker import SERVER_USER
from gridwatch.mqtt import MqttClient
from gridwatch.mqtt_reads import READ_SIZE, BufferedClient

TOPIC = "gw/v1/nodes/node-a/events/litter"
# around the remaining-length boundaries (one to four bytes) and the read size, empty and tiny
SIZES = [0, 1, 2, 100, 115, 116, 127, 128, 300, 16370, 16384, 20000, READ_SIZE - 40, READ_SIZE, READ_SIZE + 1,
         3 * READ_SIZE + 7, 2_100_000]


def payloads() -> list[bytes]:
    """Each size once, then a burst of small ones, each payload telling its own number."""
    out = [bytes([index % 251]) * size for index, size in enumerate(SIZES)]
    return out + [f"small-{index:04d}".encode() * (1 + index % 7) for index in range(600)]


def publish_all(publisher, items: list[bytes]) -> None:
    infos = [publisher.client.publish(TOPIC, payload, qos=1) for payload in items]
    for info in infos:
        info.wait_for_publish(30)


class CountingSocket:
    """The client's socket, counting the reads paho makes of it."""

    def __init__(self, sock) -> None:
        self.sock, self.reads = sock, 0

    def recv(self, size: int) -> bytes:
        self.reads += 1
        return self.sock.recv(size)

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


def test_every_packet_arrives_whole_in_order_and_at_once(running_broker, mqtt_client):
    received: queue.Queue[bytes] = queue.Queue()
    client = MqttClient("reads-test", "127.0.0.1", running_broker.port, SERVER_USER,
                        running_broker.credentials.server_password)
    client.subscribe(TOPIC, lambda message: received.put(bytes(message.payload)))
    client.start()
    try:
        items = payloads()
        publish_all(mqtt_client("node-a"), items)
        # nothing may wait in the buffer for the socket's next bytes: the broker sends nothing more (its next
        # packet would be a PINGRESP, 30 s away), so each message must come from what was already read
        got = [received.get(timeout=10) for _ in items]
        assert [len(payload) for payload in got] == [len(payload) for payload in items]
        assert got == items
    finally:
        client.stop()


def test_a_burst_is_read_in_far_fewer_socket_reads_than_packets(running_broker, mqtt_client):
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="reads-count", protocol=mqtt.MQTTv5)
    client.username_pw_set(SERVER_USER, running_broker.credentials.server_password)
    arrived, done = [], threading.Event()
    small = [f"m{index}".encode() for index in range(2000)]

    def on_message(_client, _userdata, message) -> None:
        arrived.append(message.payload)
        if len(arrived) == len(small):
            done.set()

    client.on_message = on_message
    client.connect("127.0.0.1", running_broker.port)
    client._sock = counting = CountingSocket(client._sock)
    client.subscribe(TOPIC, qos=1)
    client.loop_start()
    try:
        time.sleep(0.5)  # subscribed
        publish_all(mqtt_client("node-a"), small)
        assert done.wait(20)
        assert arrived == small
        # paho alone reads each packet in three or more reads (type, length, the rest: 6,000 here); buffered, a read
        # takes whatever has arrived, several packets (about 4 here when the machine is idle, fewer when it is busy
        # and the reader keeps pace with the broker: 530 reads seen in a loaded CI run)
        assert counting.reads < len(small) / 2, counting.reads
    finally:
        client.disconnect()
        client.loop_stop()


class ScriptedSocket:
    """Hands out the given chunks one recv at a time, then has nothing (as a non-blocking socket would)."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def recv(self, size: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        chunk, self.chunks[0] = self.chunks[0][:size], self.chunks[0][size:]
        if not self.chunks[0]:
            self.chunks.pop(0)
        return chunk

    def close(self) -> None:
        pass


def fresh_client(sock) -> BufferedClient:
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="reads-unit", protocol=mqtt.MQTTv5)
    client._sock = sock
    return client


def test_reads_hand_out_the_bytes_in_order_across_socket_reads():
    client = fresh_client(ScriptedSocket(b"abcdef", b"ghij"))
    assert client._sock_recv(1) == b"a"
    assert client._sock_recv(2) == b"bc"
    assert client._sock_recv(10) == b"def"  # what the buffer holds; the next read goes to the socket
    assert client._sock_recv(10) == b"ghij"
    try:
        client._sock_recv(1)
    except BlockingIOError:
        pass  # paho's cue to wait for the socket
    else:
        raise AssertionError("an empty socket must raise BlockingIOError")


def test_a_closed_connection_says_so_and_leaves_nothing_for_the_next():
    class Closed(ScriptedSocket):
        def recv(self, size: int) -> bytes:
            return b""

    assert fresh_client(Closed())._sock_recv(1) == b""  # paho's sign the broker closed the connection
    client = fresh_client(ScriptedSocket(b"\x30\x05stale"))
    assert client._sock_recv(1) == b"\x30"
    client._sock_close()  # connection lost with bytes of its packet still buffered
    client._sock = ScriptedSocket(b"\x20\x03new")
    assert client._sock_recv(1) == b"\x20"  # the new connection's bytes, not the old one's
