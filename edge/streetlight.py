"""Smart streetlights: read lamp state, power, voltage and ambient light through a sensor adapter, and raise
`streetlight_fault` events — lamp off at night, on by day, power or voltage out of range, controller silent —
ended on recovery.

A real controller joins through the `LampAdapter` protocol: one `read()` returning a `LampReading`, raising
`SensorError` when the controller does not answer. `HttpJsonAdapter` reads any controller or gateway (NEMA/Zhaga
node, DALI or Modbus gateway, a vendor's cloud bridge) that answers an HTTP GET with
`{"lamp_on": true, "power_w": 98.5, "voltage_v": 229.1, "ambient_lux": 3.2}`; `SimulatedLamp` plays a lamp with a
photocell and scripted failures, for tests and demos.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np

from edge.faults import FaultTracker, unwatched
from edge.rules.violations import RuleEvent
from edge.schedule import local_time
from edge.streetlight_config import LampAdapterConfig, StreetlightConfig
from edge.sun import sun_elevation
from gridwatch.contract import SCHEMA_VERSION, Box, Category, Event, LampTelemetry, ModelInfo

LAMP_ZONE = "lamp"
STREETLIGHT_MODEL = ModelInfo(name="streetlight-rules", version="1")
"""What `model` names in lamp events: the rules above, not a detector."""

log = logging.getLogger(__name__)


class SensorError(RuntimeError):
    """The controller did not answer, or answered nonsense."""


@dataclass(frozen=True)
class LampReading:
    lamp_on: bool
    power_w: float
    voltage_v: float
    ambient_lux: float | None
    """None where the controller has no light sensor: day and night are then told by the sun at the lamp's location
    (`StreetlightConfig.daylight`), or not judged where that is not known."""


class LampAdapter(Protocol):
    def read(self) -> LampReading: ...


class HttpJsonAdapter:
    def __init__(self, url: str, timeout_seconds: float = 3.0) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds

    def read(self) -> LampReading:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_seconds) as response:  # noqa: S310
                data = json.loads(response.read())
            ambient = data.get("ambient_lux")
            return LampReading(lamp_on=bool(data["lamp_on"]), power_w=_measure(data, "power_w"),
                               voltage_v=_measure(data, "voltage_v"),
                               ambient_lux=None if ambient is None else _measure(data, "ambient_lux"))
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError, KeyError, TypeError,
                AttributeError) as error:  # HTTPException: a cut-off body, a garbled status line
            raise SensorError(f"{self.url}: {type(error).__name__}: {error}") from None


def _measure(data: dict, key: str) -> float:
    """A controller's figure, a finite number not below zero: a NaN or a negative one (JSON takes both) is a sensor
    fault, not a reading the node's telemetry then refused whole."""
    value = float(data[key])
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{key} is {value}, not a measurement")
    return value


class SimulatedLamp:
    """A lamp switched by its photocell (on below `dark_lux`), drawing its rated power on a 230 V supply, with the
    failures of its config played at their times."""

    def __init__(self, config: LampAdapterConfig, light: StreetlightConfig, clock: Callable[[], float] = time.time,
                 seed: int = 0) -> None:
        self.config = config
        self.light = light
        self.clock = clock
        self.started = clock()
        self.rng = np.random.default_rng(seed)

    def failing(self) -> set[str]:
        elapsed = self.clock() - self.started
        return {f.fault for f in self.config.failures
                if f.start_seconds <= elapsed and (f.end_seconds is None or elapsed < f.end_seconds)}

    def ambient(self) -> float:
        if self.config.ambient_lux is not None:
            return self.config.ambient_lux
        hour = datetime.fromtimestamp(self.clock()).hour
        return 2.0 if hour >= 18 or hour < 6 else 800.0

    def read(self) -> LampReading:
        failing = self.failing()
        if "silent" in failing:
            raise SensorError("simulated controller does not answer")
        ambient = self.ambient()
        lamp_on = ambient < self.light.dark_lux
        if "lamp_out" in failing:
            lamp_on = False
        if "stuck_on" in failing:
            lamp_on = True
        power = self.light.rated_power_w * (0.4 if "power_low" in failing else 1.0) if lamp_on else 0.5
        voltage = 260.0 if "overvoltage" in failing else 180.0 if "undervoltage" in failing else 230.0
        return LampReading(lamp_on=lamp_on, power_w=round(power * self.rng.uniform(0.98, 1.02), 1),
                           voltage_v=round(voltage + self.rng.normal(0, 1.0), 1), ambient_lux=ambient)


def make_adapter(config: StreetlightConfig) -> LampAdapter:
    if config.adapter.type == "http":
        return HttpJsonAdapter(config.adapter.url or "", config.adapter.timeout_seconds)
    return SimulatedLamp(config.adapter, config)


class StreetlightMonitor:
    """One lamp: `poll(now)` reads it and returns the fault events that began or ended."""

    def __init__(self, config: StreetlightConfig, adapter: LampAdapter) -> None:
        self.config = config
        self.adapter = adapter
        self.faults = FaultTracker(Category.STREETLIGHT_FAULT, LAMP_ZONE)
        self.reading: LampReading | None = None
        self.read_at: float | None = None
        self.controller_ok = True
        self._answered_at: float | None = None
        self._polled_at: float | None = None

    def poll(self, now: float) -> list[RuleEvent]:
        if self._answered_at is not None and \
                unwatched(self._polled_at, now, self.config.silent_seconds, self.config.poll_seconds):
            self._answered_at = now  # the clock stepped forward: silence is timed from now, not from before the step
        elif self._answered_at is not None and self._polled_at is not None and now < self._polled_at:
            self._answered_at -= self._polled_at - now  # stepped back: the silence so far is kept, not undone
        self._polled_at = now
        try:
            reading = self.adapter.read()
        except Exception as error:  # any adapter's failure is a controller that did not answer, never a dead loop
            if not isinstance(error, SensorError):
                log.exception("lamp %s: its adapter failed", self.config.lamp_id)
            elif self.controller_ok:  # once as it stops answering, not at every poll
                log.warning("lamp %s: no reading from its controller: %s", self.config.lamp_id, error)
            self.controller_ok = False
            since = self._answered_at if self._answered_at is not None else now
            # once raised, only an answer ends it: a clock stepped back is no sign the controller is back
            silent = now - since >= self.config.silent_seconds or "controller_silent" in self.faults.active
            if self._answered_at is None:
                self._answered_at = now  # never answered: count the silence from the first try
            return self.faults.track_timed("controller_silent", silent, now, since,
                                           f"no answer from the controller for {now - since:.0f} s",
                                           "the controller answers again")
        self.controller_ok, self._answered_at, self.reading, self.read_at = True, now, reading, now
        events = self.faults.track_timed("controller_silent", False, now, now, "", "the controller answers again")
        return events + self.judge(reading, now)

    def daylight(self, reading: LampReading, now: float) -> tuple[bool, bool, str]:
        """(night, day, what told): by the light sensor's lux or by the sun at the lamp's place (`daylight`); in the
        twilight between, or with neither known, it is neither, and neither lamp check is made."""
        c = self.config
        if reading.ambient_lux is not None and c.daylight != "sun":
            return reading.ambient_lux < c.dark_lux, reading.ambient_lux > c.bright_lux, f"{reading.ambient_lux} lux"
        if c.location is None or c.daylight == "lux":
            return False, False, ""
        elevation = sun_elevation(c.location.lat, c.location.lon, now)
        return (elevation < c.night_sun_elevation, elevation > c.day_sun_elevation,
                f"the sun {abs(elevation):.0f}° {'below' if elevation < 0 else 'above'} the horizon")

    def judge(self, reading: LampReading, now: float) -> list[RuleEvent]:
        c = self.config
        night, day, told = self.daylight(reading, now)
        low, high = c.rated_power_w * (1 - c.power_tolerance), c.rated_power_w * (1 + c.power_tolerance)
        # each check only where the reading can show it (None: not now): by day a dead lamp and a working one are
        # both dark, and a lamp off at night that "cleared" every dawn was a fault reported fixed every morning
        checks = (
            ("lamp_off_at_night", not reading.lamp_on if night else None, f"lamp off at {told}", "lamp on again"),
            ("lamp_on_by_day", reading.lamp_on if day else None, f"lamp on at {told}", "lamp off by day"),
            ("power_out_of_range", not low <= reading.power_w <= high if reading.lamp_on else None,
             f"power {reading.power_w} W outside {low:.0f}-{high:.0f} W", "power back in range"),
            ("voltage_out_of_range", not c.min_voltage_v <= reading.voltage_v <= c.max_voltage_v,
             f"supply {reading.voltage_v} V outside {c.min_voltage_v:.0f}-{c.max_voltage_v:.0f} V",
             "voltage back in range"),
        )
        events = []
        for kind, present, raised, cleared in checks:
            events.extend(self.faults.track(kind, present, now, c.fault_seconds, raised, cleared, c.poll_seconds))
        return events

    def telemetry(self) -> LampTelemetry:
        reading = self.reading
        return LampTelemetry(
            lamp_id=self.config.lamp_id, controller_ok=self.controller_ok,
            lamp_on=reading.lamp_on if reading else None, power_w=reading.power_w if reading else None,
            voltage_v=reading.voltage_v if reading else None, ambient_lux=reading.ambient_lux if reading else None,
            read_at=datetime.fromtimestamp(self.read_at, UTC) if self.read_at is not None else None,
            faults=self.faults.active)


def lamp_event(rule_event: RuleEvent, node_id: str, code: str, lamp: StreetlightConfig,
               timezone: ZoneInfo | None) -> Event:
    """The contract's event for a lamp fault: the lamp stands where a camera would, the fault is the label."""
    return Event(schema_version=SCHEMA_VERSION, event_id=uuid.uuid4(), violation_id=rule_event.violation_id,
                 type=rule_event.type, node_id=node_id, camera_id=lamp.lamp_id, zone_id=LAMP_ZONE,
                 category=Category.STREETLIGHT_FAULT, code=code, label=rule_event.label,
                 started_at=local_time(rule_event.started_at, timezone),
                 observed_at=local_time(rule_event.observed_at, timezone),
                 dwell_seconds=round(rule_event.dwell_seconds, 3), score=1.0, box=Box(x1=0, y1=0, x2=1, y2=1),
                 location=lamp.location, model=STREETLIGHT_MODEL, interrupted=rule_event.interrupted or None)
