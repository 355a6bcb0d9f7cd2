"""The simulated city fleet of `make bench-scale`: thousands of edge nodes, each its own MQTT connection and broker
account, spread over processes so that their publishing runs side by side with the workers it measures.

The fleet stands in for devices that in a city run on their own hardware, yet here it shares this machine's two
cores with the workers it measures: every core-second it spends is one the workers lack, and with two workers the
machine is full. So each node speaks MQTT 5 on the wire itself (CONNECT with its own account, QoS 1 PUBLISH packets
made from the same topics and payloads the edge sends, the broker's PUBACKs counted and checked, its Receive Maximum
kept), all of a process's nodes driven by one thread and an epoll selector. Through paho (a client object and a
network thread per node, later one thread for all) the fleet took 0.15–0.24 of a core; this way a few hundredths.
The broker cannot tell the difference: it is the same protocol, and the edge itself still publishes through paho
(gridwatch.mqtt).
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import selectors
import socket
import time

from tqdm import tqdm

NODES_PER_PROCESS = 250
"""Nodes a fleet process holds: 8 processes publish the 2,000 nodes' messages side by side."""
ACK_TIMEOUT_SECONDS = 120


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(value: str) -> bytes:
    raw = value.encode()
    return len(raw).to_bytes(2, "big") + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + _varint(len(body)) + body


def _read_varint(data: bytes | bytearray, position: int) -> tuple[int, int] | None:
    """(value, position after it) of the variable byte integer at `position`; None if `data` ends first."""
    value, shift = 0, 0
    while position < len(data):
        value |= (data[position] & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if not data[position - 1] & 0x80:
            return value, position
    return None


def _connack_limits(body: bytes) -> tuple[int, int]:
    """(Receive Maximum, Server Keep Alive) from an MQTT 5 CONNACK; raises if the broker refused the node."""
    if body[1] != 0:
        raise ConnectionError(f"the broker refused a fleet node's connection (reason code 0x{body[1]:02x})")
    length, position = _read_varint(body, 2)  # the properties' length
    receive_maximum, keep_alive, end = 65535, 0, position + length
    while position < end:
        identifier = body[position]
        position += 1
        if identifier in (0x13, 0x21, 0x22):  # two-byte integers: keep alive, receive maximum, topic alias maximum
            value = int.from_bytes(body[position:position + 2], "big")
            receive_maximum = value if identifier == 0x21 else receive_maximum
            keep_alive = value if identifier == 0x13 else keep_alive
            position += 2
        elif identifier in (0x11, 0x27):  # four-byte integers: session expiry, maximum packet size
            position += 4
        elif identifier in (0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F):  # a string or binary data
            position += 2 + int.from_bytes(body[position:position + 2], "big")
        elif identifier == 0x26:  # a user property: two strings
            for _ in range(2):
                position += 2 + int.from_bytes(body[position:position + 2], "big")
        else:  # one byte: maximum QoS, retain / wildcard / subscription identifier / shared subscription available
            position += 1
    return receive_maximum, keep_alive


class _Inbox:
    """The bytes a connection received, cut into (first byte, body) packets."""

    def __init__(self) -> None:
        self.data = bytearray()

    def packets(self):  # noqa: ANN201 - a generator of (int, bytes)
        while (header := _read_varint(self.data, 1)) is not None:  # the remaining length
            length, position = header
            if len(self.data) < position + length:
                return
            packet = (self.data[0], bytes(self.data[position:position + length]))
            del self.data[:position + length]
            yield packet


class WireNode:
    """One node's MQTT 5 connection, its QoS 1 publishes written as bytes and the broker's PUBACKs counted."""

    def __init__(self, port: int, client_id: str, username: str, password: str) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port))
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        flags = 0x80 | 0x40 | 0x02  # user name, password, clean start
        keep_alive = 0  # none asked; a broker that wants one says so in its CONNACK
        self.socket.sendall(_packet(0x10, _string("MQTT") + bytes([5, flags]) + keep_alive.to_bytes(2, "big")
                                    + b"\x00" + _string(client_id) + _string(username) + _string(password)))
        self.inbox = _Inbox()
        connack = None
        while connack is None:
            if not (data := self.socket.recv(65536)):
                raise ConnectionError(f"{username}: the broker closed the connection before its CONNACK")
            self.inbox.data += data
            connack = next(self.inbox.packets(), None)
        if connack[0] >> 4 != 2:
            raise ConnectionError(f"{username}: expected a CONNACK, got packet type {connack[0] >> 4}")
        self.receive_maximum, self.keep_alive = _connack_limits(connack[1])
        self.socket.setblocking(False)
        self.outbox = bytearray()
        self.waiting: collections.deque[tuple[int, bytes]] = collections.deque()  # beyond the Receive Maximum
        self.inflight: set[int] = set()
        self.last_id = 0
        self.refused = 0

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue a QoS 1 publish; `write` sends it."""
        self.last_id = self.last_id % 65535 + 1
        packet = _packet(0x32, _string(topic) + self.last_id.to_bytes(2, "big") + b"\x00" + payload)
        self.waiting.append((self.last_id, packet))
        self._release()

    def _release(self) -> None:
        while self.waiting and len(self.inflight) < self.receive_maximum:
            packet_id, packet = self.waiting.popleft()
            self.inflight.add(packet_id)
            self.outbox += packet

    def write(self) -> None:
        if self.outbox:
            try:
                del self.outbox[:self.socket.send(self.outbox)]
            except BlockingIOError:
                pass

    def read(self) -> int:
        """Takes in what arrived; returns how many publishes the broker acknowledged."""
        try:
            data = self.socket.recv(65536)
        except BlockingIOError:
            return 0
        if not data:
            raise ConnectionError("the broker closed a fleet node's connection")
        self.inbox.data += data
        acknowledged = 0
        for first_byte, body in self.inbox.packets():
            kind = first_byte >> 4
            if kind == 4:  # PUBACK: the packet id, then a reason code unless it is success
                self.inflight.discard(int.from_bytes(body[:2], "big"))
                self.refused += len(body) > 2 and body[2] >= 0x80
                acknowledged += 1
            elif kind == 14:  # DISCONNECT
                raise ConnectionError(f"the broker disconnected a fleet node (reason code 0x{body[:1].hex()})")
        self._release()
        return acknowledged

    def ping(self) -> None:
        self.outbox += b"\xc0\x00"

    def close(self) -> None:
        self.socket.setblocking(True)
        self.socket.sendall(bytes(self.outbox) + b"\xe0\x00")  # DISCONNECT, normal
        self.socket.close()


class WireFleet:
    """A process's nodes, driven by one thread: publishes at the times given, reads acknowledgements between."""

    def __init__(self, port: int, passwords: dict[str, str]) -> None:
        self.nodes = {node: WireNode(port, f"{node}-{os.getpid()}", node, password)
                      for node, password in passwords.items()}
        self.selector = selectors.DefaultSelector()
        for node in self.nodes.values():
            self.selector.register(node.socket, selectors.EVENT_READ, node)
        self.keep_alive = min((node.keep_alive for node in self.nodes.values() if node.keep_alive), default=0)
        self.pinged_at = time.monotonic()
        self.unacknowledged = 0

    def run(self, messages, begin: float, interval: float) -> dict[str, float]:
        """Publish [(global index, topic, payload, violation or "")], message i at `begin + i * interval` (all at
        once if 0); returns once the broker acknowledged them all, with the send time of each violation given."""
        sent: dict[str, float] = {}
        position, deadline = 0, None
        while position < len(messages) or self.unacknowledged:
            due = 0.05
            while position < len(messages):
                index, topic, payload, violation = messages[position]
                if (due := begin + index * interval - time.perf_counter() if interval else 0.0) > 0:
                    break
                if violation:
                    sent[violation] = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
                node = self.nodes[topic.split("/")[3]]
                node.publish(topic, payload)
                node.write()
                self.unacknowledged += 1
                position += 1
                if not interval and position % 64 == 0:
                    break  # blasting: take in acknowledgements now and then
            if position == len(messages) and deadline is None:
                deadline = time.monotonic() + ACK_TIMEOUT_SECONDS
            if deadline and time.monotonic() > deadline:
                raise TimeoutError(f"{self.unacknowledged} publishes unacknowledged after {ACK_TIMEOUT_SECONDS} s")
            self.service(min(max(due, 0.0), 0.05))
        if refused := sum(node.refused for node in set(self.nodes.values())):
            raise RuntimeError(f"the broker refused {refused} of the fleet's publishes")
        return sent

    def service(self, timeout: float) -> None:
        """Read acknowledgements (waiting up to `timeout` for some), write what is queued, ping if asked to."""
        for key, _events in self.selector.select(timeout):
            self.unacknowledged -= key.data.read()
        if self.keep_alive and time.monotonic() - self.pinged_at > self.keep_alive / 2:
            self.pinged_at = time.monotonic()
            for node in self.nodes.values():
                node.ping()
        for node in self.nodes.values():
            node.write()

    def close(self) -> None:
        for node in set(self.nodes.values()):
            node.close()


def _fleet_process(port: int, passwords: dict[str, str], conn) -> None:  # noqa: ANN001 - a Pipe end
    """One slice of the fleet: a connection per node; publishes what it is sent, at the times it is told."""
    fleet = WireFleet(port, passwords)
    conn.send("ready")
    while True:
        while not conn.poll(0.5):
            fleet.service(0)  # PINGRESPs, and pings where the broker wants them
        if (order := conn.recv()) is None:
            break
        messages, begin, interval = order  # [(global index, topic, payload, violation or "")], perf_counter, s
        conn.send(fleet.run(messages, begin, interval))
    fleet.close()


class FleetProcesses:
    """The fleet spread over processes of `NODES_PER_PROCESS` nodes; each node's messages keep their order."""

    def __init__(self, port: int, passwords: dict[str, str]) -> None:
        context = multiprocessing.get_context("spawn")
        nodes = sorted(passwords)
        self.owner: dict[str, int] = {}
        self.pipes, self.processes = [], []
        for first in range(0, len(nodes), NODES_PER_PROCESS):
            part = nodes[first:first + NODES_PER_PROCESS]
            self.owner |= {node: len(self.pipes) for node in part}
            parent, child = context.Pipe()
            process = context.Process(target=_fleet_process, args=(port, {n: passwords[n] for n in part}, child),
                                      daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        for pipe in tqdm(self.pipes, desc="fleet processes connect"):
            assert pipe.recv() == "ready"

    def publish(self, messages, interval: float = 0.0) -> dict[str, float]:
        """Publish (topic, payload, is_new, violation) messages, all at once or one every `interval` seconds in
        their order; returns when the broker acknowledged all, with the send time of each `new` violation."""
        parts: list[list] = [[] for _ in self.pipes]
        for index, (topic, payload, is_new, violation) in enumerate(messages):
            parts[self.owner[topic.split("/")[3]]].append((index, topic, payload, violation if is_new else ""))
        begin = time.perf_counter() + 0.2
        for pipe, part in zip(self.pipes, parts, strict=True):
            pipe.send((part, begin, interval))
        sent: dict[str, float] = {}
        for pipe in self.pipes:
            sent |= pipe.recv()
        return sent

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for process in self.processes:
            process.join(30)
