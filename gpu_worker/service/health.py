"""Whether a serving worker is fit to take jobs, told through a file the health check reads.

The worker's main thread writes the file every few seconds (``{"status": "ok" | "unhealthy",
"reason", "time", "pid"}``); ``gpu-worker doctor --serving`` reads it, so the image's health
check looks at the serving process itself instead of starting an encoder of its own. The
worker is unhealthy when a poll loop has waited on the queue for longer than the poll wait
plus a margin, or when the GPU failed on :data:`FALLBACKS_IN_A_ROW` jobs in a row (each of
them rendered again on the CPU: no job is failed or lost for it). A file that stops changing
means the main thread is stuck or gone: unhealthy too.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

FALLBACKS_IN_A_ROW = 3  # GPU faults on consecutive jobs after which the worker gives up
STUCK_MARGIN = 30.0  # seconds a receive may outlast the long-poll wait before it counts as stuck
WRITE_EVERY = 2.0  # seconds between writes of the health file
STALE_AFTER = 30.0  # a health file older than this means the worker stopped writing it


class Health:
    """What the worker's threads report about themselves; thread-safe."""

    def __init__(
        self,
        path: Path | None,
        poll_wait: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.stuck_after = poll_wait + STUCK_MARGIN
        self.clock = clock
        self.fallbacks_in_a_row = 0
        self._gave_up: str | None = None
        self._polling: dict[str, float] = {}
        self._lock = threading.Lock()
        self._written = -float("inf")

    @contextmanager
    def polling(self, name: str) -> Iterator[None]:
        """Mark thread ``name`` as waiting on the queue for the duration of the block."""
        with self._lock:
            self._polling[name] = self.clock()
        try:
            yield
        finally:
            with self._lock:
                self._polling.pop(name, None)

    def rendered(self, *, fallback: bool, why: str = "") -> None:
        """Count a finished render: on the GPU path (resets the count) or after a fallback."""
        with self._lock:
            if not fallback:
                self.fallbacks_in_a_row = 0
                return
            self.fallbacks_in_a_row += 1
            if self.fallbacks_in_a_row >= FALLBACKS_IN_A_ROW and self._gave_up is None:
                self._gave_up = (
                    f"the GPU failed on {self.fallbacks_in_a_row} jobs in a row "
                    f"(last: {why}); each was rendered on the CPU"
                )

    @property
    def gave_up(self) -> str | None:
        """Why the worker stops taking jobs for good, or None."""
        return self._gave_up

    def problem(self) -> str | None:
        """Why the worker is unhealthy now, or None when it is healthy."""
        if self._gave_up is not None:
            return self._gave_up
        now = self.clock()
        with self._lock:
            waits = {name: now - since for name, since in self._polling.items()}
        for name, waited in sorted(waits.items()):
            if waited > self.stuck_after:
                return f"{name} has waited on the queue for {waited:.0f} s"
        return None

    def write(self, force: bool = False) -> None:
        """Write the health file (every :data:`WRITE_EVERY` seconds unless ``force``)."""
        if self.path is None:
            return
        now = self.clock()
        if not force and now - self._written < WRITE_EVERY:
            return
        self._written = now
        problem = self.problem()
        state = {
            "status": "unhealthy" if problem else "ok",
            "reason": problem,
            "time": time.time(),
            "pid": os.getpid(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(temp, self.path)

    def clear(self) -> None:
        """Remove the health file: the worker stopped serving as it was asked to."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def read_health(path: Path, now: float | None = None) -> tuple[bool, str]:
    """(healthy, one line) from the health file a serving worker writes."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False, f"no health file at {path}: the worker is not serving (yet)"
    except (OSError, ValueError) as exc:
        return False, f"the health file {path} cannot be read ({exc})"
    age = (time.time() if now is None else now) - float(state.get("time", 0))
    if age > STALE_AFTER:
        return False, f"the worker has not written its health for {age:.0f} s"
    if state.get("status") != "ok":
        return False, str(state.get("reason") or "unhealthy")
    return True, f"serving (pid {state.get('pid')}, {age:.0f} s ago)"
