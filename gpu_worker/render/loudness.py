"""Loudness of the soundtrack: integrated loudness (ITU-R BS.1770 / EBU R128) measured with
FFmpeg's ``ebur128`` filter, the gain that brings a mix to a target, and ducking (the music
lowered while a clip's own sound plays).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import av
import av.filter
import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]

SILENCE_LUFS = -69.0  # ebur128 reports -70 LUFS when every block is gated out
MAX_GAIN_DB = 30.0  # how far a quiet mix is raised at most (beyond, it is mostly noise)


def integrated_loudness(blocks: Iterable[F32], rate: int) -> float | None:
    """Integrated loudness (LUFS) of (2, n) float32 stereo ``blocks``; None for silence (or
    sound too short to measure). Streams: memory does not grow with the length."""
    graph = av.filter.Graph()
    src = graph.add_abuffer(format="fltp", sample_rate=rate, layout="stereo", channels=2)
    meter = graph.add("ebur128", "metadata=1")
    sink = graph.add("abuffersink")
    src.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    value: str | None = None
    position = 0

    def drain() -> None:
        nonlocal value
        while True:
            try:
                out = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            value = out.metadata.get("lavfi.r128.I", value)

    for block in blocks:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(block, np.float32), format="fltp", layout="stereo"
        )
        frame.sample_rate = rate
        frame.pts = position
        position += block.shape[1]
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    if value is None:
        return None
    loudness = float(value)
    return None if not math.isfinite(loudness) or loudness <= SILENCE_LUFS else loudness


def gain_to(target: float, measured: float | None) -> float:
    """The linear gain taking a mix measured at ``measured`` LUFS to ``target``."""
    if measured is None:
        return 1.0
    return float(10 ** (min(target - measured, MAX_GAIN_DB) / 20))


class Ducking:
    """The music's gain at output sample positions: down by ``db`` while any of the
    ``intervals`` (samples [start, end) where a clip speaks) plays, going down over ``attack``
    samples from its start and back up over ``release`` samples after its end."""

    def __init__(
        self, intervals: Sequence[tuple[int, int]], db: float, attack: int, release: int
    ) -> None:
        self.intervals = sorted(intervals)
        self.db = db
        self.attack, self.release = attack, release

    def __call__(self, index: NDArray[np.int64]) -> F32:
        depth = np.zeros(index.shape, np.float64)  # 0: full music, 1: ducked by db
        if len(index):
            lo, hi = int(index[0]), int(index[-1])
            for start, end in self.intervals:
                if end + self.release < lo or start > hi:
                    continue
                down = np.clip((index - start + 1) / max(self.attack, 1), 0.0, 1.0)
                up = np.clip(1.0 - (index - end + 1) / max(self.release, 1), 0.0, 1.0)
                np.maximum(depth, np.minimum(down, up), out=depth)
        return (10 ** (self.db * depth / 20)).astype(np.float32)
