"""What the `gridwatch` commands share: a port argument, and a stop on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading


def port_number(text: str) -> int:
    """A TCP port for argparse: 0 (any free one) to 65535."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: a port from 1 to 65535 (0: any free one)")
    return number


def stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
