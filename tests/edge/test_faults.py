"""Device faults that come and go (edge/faults.py), on a simulated clock."""

from __future__ import annotations

from edge.faults import FaultTracker
from gridwatch.contract import Category


def test_a_fault_condition_that_began_before_the_clock_stepped_back_is_raised_after_its_hold_time():
    """Found by review: after the clock stepped back two hours, a black lens was raised two hours late."""
    faults = FaultTracker(Category.DEVICE_FAULT, "camera")
    assert faults.track("black", True, 10_000.0, 30, "black", "picture back") == []
    raised = [event for second in range(60)  # the clock goes back two hours; the lens is still black
              for event in faults.track("black", True, 10_001.0 - 7200 + second, 30, "black", "picture back")]
    assert [event.type.value for event in raised] == ["new"]


def test_a_clock_stepped_forward_a_day_raises_no_fault_that_lasted_a_day():
    """Found by review: NTP setting a board's clock forward a day made a lens black for a second a fault at once,
    `black for 86401 s`, and a controller missing one answer a silent one (`no answer for 86410 s`)."""
    faults = FaultTracker(Category.DEVICE_FAULT, "camera")
    assert faults.track("black", True, 10_000.0, 30, "black", "picture back") == []
    assert faults.track("black", True, 10_000.0 + 86_400, 30, "black", "picture back") == [], "the day unwatched"
    assert faults.track("black", False, 10_001.0 + 86_400, 30, "black", "picture back") == []
    held = [event for second in range(40) for event in
            faults.track("black", True, 10_002.0 + 86_400 + second, 30, "black", "picture back")]
    assert [event.type.value for event in held] == ["new"], "a real fault still is one, after its hold"


def test_a_controller_missing_one_answer_after_the_clock_stepped_forward_is_not_silent_for_a_day():
    from edge.streetlight import LampReading, SensorError, StreetlightMonitor
    from edge.streetlight_config import StreetlightConfig

    answers = iter([LampReading(True, 100, 230, 5.0), None, LampReading(True, 100, 230, 5.0)])

    class Adapter:
        def read(self) -> LampReading:
            if (reading := next(answers)) is None:
                raise SensorError("timed out")
            return reading

    config = StreetlightConfig.model_validate({"lamp_id": "lamp-7", "adapter": {"type": "simulated"}})
    monitor = StreetlightMonitor(config, Adapter())
    start = 1_800_000_000.0
    events = monitor.poll(start) + monitor.poll(start + 86_400) + monitor.poll(start + 86_430)
    assert [event.label for event in events if event.type.value == "new"] == []
