"""A stop asked for by SIGTERM/SIGINT: how long is left, and whether a render can still end."""

from __future__ import annotations

import math
import threading
import time


class Released(Exception):
    """The job was given back because the worker is stopping; not a failure."""


def finish_in_time(seconds_per_frame: float | None, frames_left: int, seconds_left: float) -> bool:
    """Whether a render can end within ``seconds_left``; with no estimate yet, keep going."""
    if seconds_left <= 0:
        return False
    if seconds_per_frame is None:
        return True
    return seconds_per_frame * frames_left <= seconds_left


class Shutdown:
    """Whether the worker was told to stop, and how long it has left then."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.event = threading.Event()
        self.stop_at: float | None = None
        self._abandoned: set[str] = set()
        self._lock = threading.Lock()

    def abandon(self, message_id: str) -> None:
        """The message was released at the stop deadline: its job must not settle it now."""
        with self._lock:
            self._abandoned.add(message_id)

    def abandoned(self, message_id: str) -> bool:
        with self._lock:
            return message_id in self._abandoned

    def request(self) -> None:
        if self.stop_at is None:
            self.stop_at = time.monotonic() + self.deadline
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def left(self) -> float:
        if self.stop_at is None:
            return math.inf
        return self.stop_at - time.monotonic()

    @property
    def reserve(self) -> float:
        """Seconds kept back from the deadline for upload and webhook."""
        return min(10.0, 0.2 * self.deadline)
