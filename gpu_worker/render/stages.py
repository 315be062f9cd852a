"""Stage timings of one render: where the seconds went, by stage name.

The render core records stages here and nothing else; the telemetry layer listens through
``StageClock.listeners`` and turns each record into a span, so no span code lives in the core.
Stages that interleave frame by frame (decode, composite, encode) are accumulated per clip.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StageRecord:
    """One finished stage: its name, when it started (epoch seconds), how long it took."""

    name: str
    start: float
    seconds: float
    attributes: dict[str, Any]


Listener = Callable[[StageRecord], None]


@dataclass
class StageClock:
    """Accumulates seconds per stage and tells listeners about each finished stage."""

    totals: dict[str, float] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str, **attributes: Any) -> Iterator[dict[str, Any]]:
        """Time a block; the yielded dict may be filled with attributes while it runs."""
        start_wall = time.time()
        start = time.perf_counter()
        try:
            yield attributes
        finally:
            self.record(name, time.perf_counter() - start, start_wall, **attributes)

    def record(
        self, name: str, seconds: float, start: float | None = None, **attributes: Any
    ) -> None:
        """Add an already measured stretch (e.g. decode time summed over a clip)."""
        self.totals[name] = self.totals.get(name, 0.0) + seconds
        began = time.time() - seconds if start is None else start
        record = StageRecord(name, began, seconds, dict(attributes))
        for listener in self.listeners:
            listener(record)


class Stopwatch:
    """Sums many short stretches (one per frame) cheaply; read ``seconds`` at the end."""

    __slots__ = ("_t", "seconds", "started")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.started = time.time()
        self._t = 0.0

    def __enter__(self) -> Stopwatch:
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._t
