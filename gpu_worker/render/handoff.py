"""Handing work from one thread to another through a bounded queue that may be abandoned."""

from __future__ import annotations

import queue
import threading


def put_unless_stopped(q: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    """Put ``item`` on ``q``, waiting for room until ``stop`` is set; False when it was."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
