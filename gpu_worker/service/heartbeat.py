"""The heartbeat of one job: a thread that keeps its SQS message invisible while it runs.

Every ``interval`` seconds it calls ``beat`` (which extends the message's visibility timeout
and renews task protection), so a long render is never handed to a second worker. If the
worker dies, the beats stop and SQS hands the message out again after the timeout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds from a daemon thread, inside a ``with``."""

    def __init__(self, beat: Callable[[], None], interval: float, name: str = "heartbeat") -> None:
        self.beat = beat
        self.interval = max(0.05, interval)
        self.name = name
        self.beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop beating; returns once no beat is running any more."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
                self.beats += 1
            except Exception as exc:
                log.warning("%s: beat failed: %s", self.name, exc)
