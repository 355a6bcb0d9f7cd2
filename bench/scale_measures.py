"""How `make bench-scale` measures a phase: who took the cores, how fast the events were stored, whether the workers
waited for each other's locks, and each worker count's figures over the rounds."""

from __future__ import annotations

import itertools
import os
import statistics
import threading
import time
from pathlib import Path

from sqlalchemy import text
from tqdm import tqdm

CPU_GROUPS = {"workers": "-m gridwatch", "fleet": "multiprocessing", "broker": "mosquitto", "postgresql": "postgres",
              "bench": "scale_bench.py"}
"""Who takes the cores during a run, by the command lines of the machine's processes."""


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far by each group's live processes, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    used = dict.fromkeys(CPU_GROUPS, 0.0)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        for group, marker in CPU_GROUPS.items():
            if marker in command:
                used[group] += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
                break
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]  # the whole machine, kernel time included
    used["machine"] = (sum(map(int, cpu)) - int(cpu[3]) - int(cpu[4])) / tick  # all but idle and iowait
    return used


def follow(engine, target: int, label: str, start: float, every: float = 0.2,
           timeout: float = 900) -> list[tuple[float, int]]:
    """(time, events stored) every `every` seconds from `start` until `target` are stored."""
    samples = [(start, 0)]
    with tqdm(total=target, desc=label, unit="event", leave=False) as bar:
        while samples[-1][1] < target:
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"{label}: {samples[-1][1]} of {target} after {timeout} s")
            time.sleep(every)
            samples.append((time.perf_counter(), stored_events(engine)))
            bar.update(samples[-1][1] - bar.n)
    return samples


def sustained_rate(samples: list[tuple[float, int]], total: int, low: float = 0.1, high: float = 0.9) -> float:
    """Events/s between the moments `low` and `high` of the events were stored (linear between samples): the
    steady rate, without the first batches' start nor the drain at the end, when the last batch of one worker may
    still be writing while the others have nothing left."""

    def moment(count: float) -> float:
        for (before, had), (after, has) in itertools.pairwise(samples):
            if has >= count:
                return before + (after - before) * (count - had) / (has - had)
        raise ValueError(f"never reached {count}")

    return (high - low) * total / (moment(high * total) - moment(low * total))


def stored_events(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM events")).scalar_one()


class LockWaits:
    """Samples PostgreSQL's `pg_stat_activity` every 50 ms while the workers write: how many of their connections
    are in a transaction, how many are running a statement and how many of those wait for a lock another
    transaction holds, by the lock's kind (`advisory`: a new violation another worker is making the case of;
    `transactionid` / `tuple`: a case row another worker has locked). Many waits: the workers take turns
    instead of writing side by side."""

    def __init__(self, engine) -> None:
        self.engine, self.samples, self.active, self.open = engine, 0, 0, 0
        self.waits: dict[str, int] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        query = text("SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client "
                     "backend'")
        with self.engine.connect() as connection:
            while not self.stopping.wait(0.05):
                self.samples += 1
                for state, kind, name in connection.execute(query):
                    self.open += state in ("active", "idle in transaction")
                    if state != "active":
                        continue
                    self.active += 1
                    if kind == "Lock":
                        self.waits[name] = self.waits.get(name, 0) + 1
                connection.rollback()

    def stop(self) -> dict:
        self.stopping.set()
        self.thread.join(5)
        waiting = sum(self.waits.values())
        return {"in_transaction": round(self.open / max(self.samples, 1), 2),
                "statements_running": round(self.active / max(self.samples, 1), 2),
                "waiting_for_locks": round(waiting / max(self.samples, 1), 2),
                "by_lock": dict(sorted(self.waits.items(), key=lambda item: -item[1]))}


def summarise(phases: list[dict], counts: list[int]) -> list[dict]:
    """Per worker count, the median of its rounds; `speedup_rounds`: each round's rate against the first count's in
    the same round, minutes apart, not the hour the machine's load may drift by."""
    rounds = sorted({phase["round"] for phase in phases})
    of = {(phase["round"], phase["workers"]): phase for phase in phases}

    def median(count: int, key: str) -> float:
        return statistics.median(of[round_, count][key] for round_ in rounds)

    runs = []
    for count in counts:
        latencies = [(of[round_, count]["latency_p50_ms"], of[round_, count]["latency_p99_ms"]) for round_ in rounds
                     if of[round_, count]["latency_p99_ms"] is not None]
        runs.append({
            "workers": count, "events_per_s": round(median(count, "events_per_s"), 1),
            "events_per_s_rounds": [of[round_, count]["events_per_s"] for round_ in rounds],
            "speedup": round(median(count, "events_per_s") / median(counts[0], "events_per_s"), 2),
            "speedup_rounds": [round(of[round_, count]["events_per_s"] / of[round_, counts[0]]["events_per_s"], 2)
                               for round_ in rounds],
            "events_per_s_sustained": round(median(count, "events_per_s_sustained"), 1),
            "speedup_sustained": round(median(count, "events_per_s_sustained")
                                       / median(counts[0], "events_per_s_sustained"), 2),
            "cores_used_machine": round(statistics.median(of[round_, count]["cores_used"]["machine"]
                                                          for round_ in rounds), 2),
            "latency_p50_ms": statistics.median(p50 for p50, _ in latencies) if latencies else None,
            "latency_p99_ms": max(p99 for _, p99 in latencies) if latencies else None,
        })
    return runs
