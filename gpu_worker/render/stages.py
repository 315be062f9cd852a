"""Stage timings of one render: where the seconds went, by stage name.

The render core records stages here and nothing else; the telemetry layer listens through
``StageClock.listeners`` and turns each record into a span, so no span code lives in the core.
Stages that interleave frame by frame (decode, composite, encode) are accumulated per clip.

Each stage also carries the CPU seconds of the thread that did its work (``cpu``): wall time
says how long a stage took while it shared the cores, CPU time what it cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StageRecord:
    """One finished stage: its name, when it started (epoch seconds), how long it took, and
    the CPU seconds its thread spent on it (None when not measured)."""

    name: str
    start: float
    seconds: float
    attributes: dict[str, Any]
    cpu: float | None = None


Listener = Callable[[StageRecord], None]


class StageAttributes(dict[str, Any]):
    """A running stage's attributes, and the CPU seconds other threads spent on it."""

    cpu_elsewhere: float = 0.0


@dataclass
class StageClock:
    """Accumulates seconds per stage and tells listeners about each finished stage."""

    totals: dict[str, float] = field(default_factory=dict)
    cpu_totals: dict[str, float] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str, **attributes: Any) -> Iterator[StageAttributes]:
        """Time a block; the yielded dict may be filled with attributes while it runs, and
        its ``cpu_elsewhere`` with CPU seconds the block had other threads spend for it."""
        start_wall = time.time()
        start = time.perf_counter()
        start_cpu = time.thread_time()
        attrs = StageAttributes(attributes)
        try:
            yield attrs
        finally:
            cpu = time.thread_time() - start_cpu + attrs.cpu_elsewhere
            self.record(name, time.perf_counter() - start, start_wall, cpu=cpu, **attrs)

    def record(
        self,
        name: str,
        seconds: float,
        start: float | None = None,
        *,
        cpu: float | None = None,
        **attributes: Any,
    ) -> None:
        """Add an already measured stretch (e.g. decode time summed over a clip), with the
        CPU seconds its thread spent when known."""
        self.totals[name] = self.totals.get(name, 0.0) + seconds
        if cpu is not None:
            self.cpu_totals[name] = self.cpu_totals.get(name, 0.0) + cpu
        began = time.time() - seconds if start is None else start
        record = StageRecord(name, began, seconds, dict(attributes), cpu)
        for listener in self.listeners:
            listener(record)


class Stopwatch:
    """Sums many short stretches (one per frame) cheaply; read ``seconds`` (wall) and
    ``cpu`` (the timing thread's CPU) at the end. One thread times a given stopwatch."""

    __slots__ = ("_c", "_t", "cpu", "seconds", "started")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu = 0.0
        self.started = time.time()
        self._t = 0.0
        self._c = 0.0

    def __enter__(self) -> Stopwatch:
        self._t = time.perf_counter()
        self._c = time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._t
        self.cpu += time.thread_time() - self._c
