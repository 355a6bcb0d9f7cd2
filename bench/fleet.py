"""The simulated city fleet of `make bench-scale`: thousands of edge nodes, each its own MQTT connection and broker
account, spread over processes so that their publishing runs side by side with the workers it measures."""

from __future__ import annotations

import multiprocessing
import os
import selectors
import socket
import threading
import time

import paho.mqtt.client as mqtt
from tqdm import tqdm

NODES_PER_PROCESS = 250
"""Nodes a fleet process holds: 8 processes publish the 2,000 nodes' messages side by side."""


class OneLoopFleet:
    """Many nodes' MQTT clients (one connection and account each, as in the field) driven by one network thread,
    through paho's external event loop (`socket()`, `loop_read()`, `loop_write()`, `loop_misc()`) and an epoll
    selector: with a `loop_start()` thread per client, a process of 250 nodes ran 250 threads, and the fleet spent
    most of a core switching between them, a core the workers it measures then lacked on this 2-core machine."""

    def __init__(self, port: int, passwords: dict[str, str]) -> None:
        self.clients: dict[str, mqtt.Client] = {}
        self._wake_read, self._wake_write = socket.socketpair()
        for end in (self._wake_read, self._wake_write):
            end.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        for node, password in passwords.items():
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{node}-{os.getpid()}",
                                 protocol=mqtt.MQTTv5)
            client.username_pw_set(node, password)
            client.max_inflight_messages_set(1000)
            client.on_socket_register_write = self._wake  # publish() queues; the network thread writes
            client.connect("127.0.0.1", port)
            self._selector.register(client.socket(), selectors.EVENT_READ, client)
            self.clients[node] = client
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="fleet-network", daemon=True)
        self._thread.start()

    def _wake(self, *_args: object) -> None:
        try:
            self._wake_write.send(b"!")
        except BlockingIOError:  # already awake
            pass

    def _loop(self) -> None:
        misc_at = time.monotonic()
        while self._running:
            for key, _events in self._selector.select(timeout=0.05):
                if key.data is None:
                    try:
                        while self._wake_read.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    key.data.loop_read()
            for client in self.clients.values():
                if client.want_write():
                    client.loop_write()
            if time.monotonic() - misc_at >= 1:  # keepalive pings
                misc_at = time.monotonic()
                for client in self.clients.values():
                    client.loop_misc()

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        return self.clients[topic.split("/")[3]].publish(topic, payload, qos=1)

    def close(self) -> None:
        for client in self.clients.values():
            client.disconnect()
        time.sleep(0.5)  # the network thread writes the disconnects
        self._running = False
        self._thread.join(5)


def _fleet_process(port: int, passwords: dict[str, str], conn) -> None:  # noqa: ANN001 - a Pipe end
    """One slice of the fleet: a client per node; publishes what it is sent, at the times it is told."""
    fleet = OneLoopFleet(port, passwords)
    acked = threading.Semaphore(0)
    for client in fleet.clients.values():
        client.on_publish = lambda *_args: acked.release()
    conn.send("ready")
    while (order := conn.recv()) is not None:
        messages, begin, interval = order  # [(global index, topic, payload, violation or "")], perf_counter, s
        sent = {}
        for index, topic, payload, violation in messages:
            if interval:
                pause = begin + index * interval - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            if violation:
                sent[violation] = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
            fleet.publish(topic, payload)
        for _ in messages:
            acked.acquire(timeout=120)
        conn.send(sent)
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
