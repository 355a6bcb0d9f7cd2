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
