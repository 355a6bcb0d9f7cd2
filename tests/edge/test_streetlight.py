"""Smart streetlights: faults raised after they last, ended on recovery; read through adapters; on a real node."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from edge.config import NodeConfig
from edge.node import EdgeNode
from edge.streetlight import HttpJsonAdapter, SensorError, SimulatedLamp, StreetlightMonitor
from edge.streetlight_config import StreetlightConfig
from gridwatch.contract import SUBSCRIBE_EVENTS, telemetry_topic

NIGHT, DAY = 2.0, 800.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def lamp(ambient: float, fault: str, clock: Clock) -> StreetlightMonitor:
    config = StreetlightConfig.model_validate({
        "lamp_id": "lamp-7", "fault_seconds": 30, "silent_seconds": 30, "adapter": {
            "type": "simulated", "ambient_lux": ambient,
            "failures": [{"fault": fault, "start_seconds": 100, "end_seconds": 300}]}})
    return StreetlightMonitor(config, SimulatedLamp(config.adapter, config, clock=clock))


@pytest.mark.parametrize(("ambient", "failure", "fault"), [
    (NIGHT, "lamp_out", "lamp_off_at_night"),
    (DAY, "stuck_on", "lamp_on_by_day"),
    (NIGHT, "power_low", "power_out_of_range"),
    (NIGHT, "overvoltage", "voltage_out_of_range"),
    (DAY, "undervoltage", "voltage_out_of_range"),
    (NIGHT, "silent", "controller_silent"),
])
def test_a_failure_becomes_one_fault_after_it_lasts_and_ends_on_recovery(ambient, failure, fault):
    clock = Clock()
    monitor = lamp(ambient, failure, clock)
    start = clock.now
    events = []
    for second in range(0, 600, 5):  # read every 5 s for 10 minutes
        clock.now = start + second
        events.extend((second, event) for event in monitor.poll(clock.now))
    assert [(e.type.value, e.label) for _, e in events] == [("new", fault), ("end", fault)]
    (raised_at, raised), (ended_at, ended) = events
    # one 5-second read either way: silence counts from the last answer, before the failure began
    assert 100 + 30 - 5 <= raised_at <= 100 + 30 + 5, "raised once it has lasted fault_seconds"
    assert 300 <= ended_at <= 300 + 30 + 5, "ended once it has been gone as long"
    assert raised.category.value == "streetlight_fault" and raised.violation_id == ended.violation_id
    assert raised.started_at == pytest.approx(start + 100, abs=5)


def test_a_lamp_that_works_raises_nothing_night_or_day():
    for ambient in (NIGHT, DAY):
        clock = Clock()
        monitor = lamp(ambient, "lamp_out", clock)
        monitor.config.adapter.failures.clear()
        start = clock.now
        events = []
        for second in range(0, 600, 5):
            clock.now = start + second
            events.extend(monitor.poll(clock.now))
        assert events == []
        assert monitor.telemetry().lamp_on is (ambient == NIGHT)


class Controller(BaseHTTPRequestHandler):
    reading = {"lamp_on": True, "power_w": 97.0, "voltage_v": 231.0, "ambient_lux": 3.5}

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        body = json.dumps(self.reading).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_controller_that_answers_json_over_http_is_read_and_one_that_does_not_is_silent():
    server = HTTPServer(("127.0.0.1", 0), Controller)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/reading"
    try:
        reading = HttpJsonAdapter(url).read()
        assert (reading.lamp_on, reading.power_w, reading.voltage_v, reading.ambient_lux) == (True, 97.0, 231.0, 3.5)
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(SensorError, match="reading"):
        HttpJsonAdapter(url, timeout_seconds=0.5).read()


@pytest.mark.parametrize("url", ["htp:/typo.example/lamp", "192.0.2.7/reading", "http:///reading"])
def test_a_controller_url_that_is_no_http_url_is_refused_in_the_config_by_name(url):
    """Found by review: a mistyped URL was taken, and minutes later the lamp was reported as a silent controller."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"adapter\.url|url '") as refused:
        StreetlightConfig.model_validate({"lamp_id": "l1", "adapter": {"type": "http", "url": url}})
    assert "an http:// or https:// URL with a host" in str(refused.value)


@pytest.mark.parametrize("odd", [{"power_w": float("nan")}, {"ambient_lux": -1.0}, {"voltage_v": float("inf")}])
def test_a_controller_reading_nan_or_below_zero_is_a_sensor_fault_and_telemetry_goes_on(odd):
    """Found by review: JSON takes NaN and negative figures, the reading took them, and the node's telemetry (every
    camera's figures with it) was refused whole for as long as the lamp read so."""
    class Odd(Controller):
        reading = {**Controller.reading, **odd}

    server = HTTPServer(("127.0.0.1", 0), Odd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/reading"
    try:
        with pytest.raises(SensorError, match=f"{next(iter(odd))} is"):
            HttpJsonAdapter(url).read()
        light = StreetlightConfig.model_validate({"lamp_id": "gate", "adapter": {"type": "http", "url": url}})
        monitor = StreetlightMonitor(light, HttpJsonAdapter(url))
        monitor.poll(0.0)
        assert monitor.telemetry().model_dump_json(), "the lamp's telemetry still goes out, without the odd figure"
    finally:
        server.shutdown()
        server.server_close()


def test_a_lamp_failure_at_night_reaches_the_broker_and_ends_on_recovery(running_broker, mqtt_client, tmp_path):
    integrator = mqtt_client("integrator")
    integrator.subscribe(SUBSCRIBE_EVENTS)
    server = mqtt_client("gridwatch-server")
    server.subscribe(telemetry_topic("node-a"))
    config = NodeConfig.model_validate({
        "node_id": "node-a", "state_dir": str(tmp_path), "telemetry_seconds": 0.5,
        "mqtt": {"port": running_broker.port, "password": running_broker.credentials.nodes["node-a"]},
        "streetlights": [{"lamp_id": "lamp-7", "poll_seconds": 0.2, "fault_seconds": 1, "adapter": {
            "type": "simulated", "ambient_lux": NIGHT,
            "failures": [{"fault": "lamp_out", "start_seconds": 1, "end_seconds": 3}]}}]})
    node = EdgeNode.build(config)
    stop = threading.Event()
    thread = threading.Thread(target=node.run, args=(stop,), daemon=True)
    thread.start()
    try:
        new = json.loads(integrator.wait_for(lambda m: b'"new"' in m.payload, timeout=15).payload)
        assert (new["category"], new["code"], new["label"], new["camera_id"]) == (
            "streetlight_fault", "DEV-LAMP", "lamp_off_at_night", "lamp-7")
        telemetry = json.loads(server.wait_for(lambda m: b"lamp_off_at_night" in m.payload, timeout=10).payload)
        assert telemetry["lamps"][0]["lamp_on"] is False and telemetry["lamps"][0]["controller_ok"]
        end = json.loads(integrator.wait_for(lambda m: b'"end"' in m.payload, timeout=15).payload)
        assert end["violation_id"] == new["violation_id"] and end["label"] == "lamp_off_at_night"
    finally:
        stop.set()
        thread.join(15)


class CutOff(BaseHTTPRequestHandler):
    """A gateway that promises 500 bytes and sends 10: http.client raises IncompleteRead, not an OSError."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_response(200)
        self.send_header("Content-Length", "500")
        self.end_headers()
        self.wfile.write(b'{"lamp_on"')

    def log_message(self, *args) -> None:
        pass


class Broken:
    """A third-party adapter with a bug of its own."""

    def read(self):  # noqa: ANN201
        raise RuntimeError("driver bug")


def test_a_controller_that_cuts_its_answer_or_an_adapter_that_breaks_is_a_silent_controller():
    server = HTTPServer(("127.0.0.1", 0), CutOff)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(SensorError, match="IncompleteRead"):  # it escaped, and ended the lamps' thread
            HttpJsonAdapter(f"http://127.0.0.1:{server.server_address[1]}/reading").read()
    finally:
        server.shutdown()
        server.server_close()
    config = StreetlightConfig.model_validate({"lamp_id": "lamp-7", "silent_seconds": 30,
                                               "adapter": {"type": "simulated"}})
    monitor = StreetlightMonitor(config, Broken())
    events = [event for second in range(0, 60, 5) for event in monitor.poll(1_000_000.0 + second)]
    assert [(e.type.value, e.label) for e in events] == [("new", "controller_silent")]
    assert monitor.controller_ok is False


def test_a_fault_that_clears_after_the_clock_stepped_back_still_ends():
    """Found by review: NTP stepped the clock back past a fault's start, the fault then cleared, and its `end` was
    dated before its start: the contract refused it, the fault was forgotten unsent, and its case never closed."""
    from edge.streetlight import LampReading, lamp_event

    readings = iter([LampReading(True, 100, 260, NIGHT)] * 2 + [LampReading(True, 100, 230, NIGHT)] * 4)

    class Adapter:
        def read(self) -> LampReading:
            return next(readings)

    config = StreetlightConfig.model_validate({"lamp_id": "lamp-7", "fault_seconds": 0,
                                               "adapter": {"type": "simulated"}})
    monitor = StreetlightMonitor(config, Adapter())
    start = 1_800_000_000.0
    events = monitor.poll(start) + monitor.poll(start + 60)  # overvoltage: raised
    events += monitor.poll(start + 120 - 3600)  # an hour back, and the voltage is right again
    contract = [lamp_event(event, "node-a", "DEV-LAMP", config, None) for event in events]  # each one valid
    assert [(event.type.value, event.label) for event in contract] == [("new", "voltage_out_of_range"),
                                                                      ("end", "voltage_out_of_range")]
    assert contract[1].observed_at == contract[0].started_at, "dated at its start, not before it"
    assert monitor.faults.active == []


def test_a_dead_lamp_stays_one_fault_through_the_day_and_a_repaired_one_clears_at_dusk():
    """Found by review: by day a dead lamp is dark like a working one, and `lamp off at night` ended every dawn as
    `lamp on again` (a case in feedback then verified as fixed), and came back as a new fault every dusk."""
    from edge.streetlight import LampReading

    class Lamp:
        lit_from_hour = None  # repaired at this hour of the run (None: dead all along)
        lux = NIGHT

        def __init__(self) -> None:
            self.hour = 0.0

        def read(self) -> LampReading:
            lit = self.lit_from_hour is not None and self.hour >= self.lit_from_hour and self.lux < 10
            return LampReading(lamp_on=lit, power_w=100.0 if lit else 0.0, voltage_v=230.0, ambient_lux=self.lux)

    def night_and_day(adapter: Lamp) -> list:
        config = StreetlightConfig.model_validate({"lamp_id": "lamp-7", "adapter": {"type": "simulated"}})
        monitor, events = StreetlightMonitor(config, adapter), []
        for minute in range(36 * 60):  # from 18:00, a day and a half, read once a minute; dark 18:00-06:00
            adapter.hour = minute / 60
            adapter.lux = NIGHT if (18 + adapter.hour) % 24 >= 18 or (18 + adapter.hour) % 24 < 6 else DAY
            events += [(adapter.hour, e.type.value, e.label) for e in monitor.poll(1_000_000.0 + 60 * minute)]
        return events

    dead = night_and_day(Lamp())
    assert [(kind, label) for _, kind, label in dead] == [("new", "lamp_off_at_night")], "one fault, kept open"
    repaired = Lamp()
    repaired.lit_from_hour = 20  # fixed by the day crew: it lights at the next dusk (hour 24 of the run)
    fixed = night_and_day(repaired)
    assert [(kind, label) for _, kind, label in fixed] == [("new", "lamp_off_at_night"), ("end", "lamp_off_at_night")]
    assert fixed[1][0] >= 24, "cleared when it was seen lit, at dusk"


@pytest.mark.parametrize(("local", "below"), [("04:38", True), ("04:48", False), ("21:16", False), ("21:26", True)])
def test_the_sun_rises_and_sets_as_the_almanac_says(local, below):
    """London on 2026-06-21: sunrise 04:43, sunset 21:21 (BST), when the sun's upper edge meets the horizon with the
    air's refraction, its centre 0.83° below."""
    from datetime import datetime, timedelta, timezone

    from edge.sun import sun_elevation

    hour, minute = map(int, local.split(":"))
    moment = datetime(2026, 6, 21, hour, minute, tzinfo=timezone(timedelta(hours=1))).timestamp()
    assert (sun_elevation(51.5074, -0.1278, moment) < -0.833) is below


def test_a_controller_without_a_light_sensor_is_judged_by_the_sun_at_the_lamp():
    """Before: with no `ambient_lux` in its readings, a lamp dark all night (or lit all day) raised nothing."""
    from datetime import datetime, timedelta, timezone

    from edge.streetlight import LampReading

    class NoSensor:
        lit = False

        def read(self) -> LampReading:
            return LampReading(lamp_on=self.lit, power_w=100.0 if self.lit else 0.0, voltage_v=230.0, ambient_lux=None)

    hangzhou = timezone(timedelta(hours=8))
    config = StreetlightConfig.model_validate({"lamp_id": "lamp-7", "adapter": {"type": "http", "url": "http://c/r"},
                                               "location": {"lat": 30.2741, "lon": 120.1551}})
    adapter = NoSensor()
    monitor = StreetlightMonitor(config, adapter)
    evening = datetime(2026, 12, 7, 16, 0, tzinfo=hangzhou).timestamp()  # sunset there about 17:00
    events = [(minute, event) for minute in range(0, 6 * 60, 2)  # 16:00-22:00, the lamp dark throughout
              for event in monitor.poll(evening + 60 * minute)]
    [(minute, fault)] = events
    assert (fault.type.value, fault.label) == ("new", "lamp_off_at_night")
    assert 60 <= minute <= 110, "once dusk has come (the sun 6° down about 17:25), not by day"
    assert fault.reason.startswith("lamp off at the sun") and "below the horizon" in fault.reason

    adapter.lit = True
    noon = datetime(2026, 12, 8, 12, 0, tzinfo=hangzhou).timestamp()
    later = [event for minute in range(0, 10, 1) for event in monitor.poll(noon + 60 * minute)]
    assert [(e.type.value, e.label) for e in later] == [("new", "lamp_on_by_day")], \
        "lit at noon; its night fault waits for dusk to be seen fixed"

    no_place = StreetlightMonitor(StreetlightConfig.model_validate(
        {"lamp_id": "lamp-8", "adapter": {"type": "http", "url": "http://c/r"}}), NoSensor())
    assert [e for minute in range(0, 600, 10) for e in no_place.poll(evening + 60 * minute)] == [], \
        "with neither a sensor nor a location, day and night are not guessed"


def test_daylight_by_the_sun_needs_the_lamps_location():
    with pytest.raises(ValueError, match="daylight: sun needs the lamp's location"):
        StreetlightConfig.model_validate({"lamp_id": "lamp-7", "daylight": "sun",
                                          "adapter": {"type": "http", "url": "http://c/r"}})


def test_a_silent_controller_stays_silent_when_the_clock_steps_back():
    """Found by review: NTP stepping the clock back five minutes made the silence negative: the fault ended as
    "the controller answers again" while it was still dead (the case verified), and a new case opened a minute
    later."""
    from edge.streetlight import LampReading

    class Dead:
        answering = True

        def read(self) -> LampReading:
            if self.answering:
                return LampReading(lamp_on=True, power_w=100, voltage_v=230, ambient_lux=5)
            raise SensorError("no answer")

    controller = Dead()
    monitor = StreetlightMonitor(StreetlightConfig(lamp_id="l1", adapter={"type": "simulated"}, silent_seconds=60),
                                 controller)
    start = 1_700_000_000.0
    monitor.poll(start)
    controller.answering = False
    moments = [start + 10 * step for step in range(1, 8)] + [start - 230 + 60 * step for step in range(7)]
    events = [(event.type.value, event.label) for moment in moments for event in monitor.poll(moment)]
    assert events == [("new", "controller_silent")], "raised once, and still raised"
    assert monitor.faults.active == ["controller_silent"]
    controller.answering = True
    assert [event.type.value for event in monitor.poll(start + 200)] == ["end"], "an answer ends it"


@pytest.mark.parametrize("poll_seconds", [300, 900, 3600])
def test_a_lamp_read_every_quarter_hour_or_hour_still_raises_its_faults(poll_seconds):
    """Found by review: any gap between two readings over 600 s was taken for a step of the clock, and timing began
    again at every reading: a lamp read every 15 minutes, dark all night, and a controller that never answered
    raised nothing in 24 hours. The gap that counts as a step now follows the poll period."""
    clock = Clock()
    raised = []
    for fault in ("lamp_out", "silent"):
        light = StreetlightConfig.model_validate({
            "lamp_id": "lamp-7", "poll_seconds": poll_seconds, "adapter": {
                "type": "simulated", "ambient_lux": NIGHT, "failures": [{"fault": fault, "start_seconds": 0}]}})
        monitor = StreetlightMonitor(light, SimulatedLamp(light.adapter, light, clock=clock))
        for _ in range(3):  # the lamp dark at night, or its controller silent, from the first reading on
            raised += [(event.label, event.type.value) for event in monitor.poll(clock.now)]
            clock.now += poll_seconds
    assert raised == [("lamp_off_at_night", "new"), ("controller_silent", "new")]
