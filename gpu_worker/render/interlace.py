"""Deinterlacing interlaced sources (1080i broadcast, older cameras) before they are fitted:
libavfilter's ``bwdif`` on the decoded frames, one frame per frame, or one per field when the
output's frame rate wants the field rate (50i shown at 50 fps moves as smoothly as it was
filmed). Progressive sources never pass through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import av
import av.filter


def field_rate_wanted(source_rate: Fraction | None, fps: float | None) -> bool:
    """Whether to keep every field as a frame: when the output shows at least 1.5 frames
    per source frame (e.g. 25i to 50 fps), so the second field has a frame to land on."""
    if not source_rate or not fps:
        return False
    return fps >= 1.5 * float(source_rate)


class Deinterlacer:
    """A ``bwdif`` graph fed decoded frames; its output frames carry their own time base
    (half the source's when every field becomes a frame)."""

    def __init__(
        self, first: av.VideoFrame, time_base: Any, fields: bool, field_order: int = 0
    ) -> None:
        """``field_order`` (FFmpeg's AVFieldOrder, from the stream) decides which field was
        filmed first when known; else each frame's own flag does."""
        self.graph = av.filter.Graph()
        src = self.graph.add_buffer(
            width=first.width, height=first.height, format=first.format, time_base=time_base
        )
        mode = "send_field" if fields else "send_frame"
        # deint=all: frames some encoders leave unflagged are deinterlaced too.
        parity = {2: "tff", 4: "tff", 3: "bff", 5: "bff"}.get(field_order, "auto")
        node = self.graph.add("bwdif", f"mode={mode}:parity={parity}:deint=all")
        sink = self.graph.add("buffersink")
        src.link_to(node)
        node.link_to(sink)
        self.graph.configure()

    def _drain(self) -> Iterator[av.VideoFrame]:
        while True:
            try:
                out = self.graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            assert isinstance(out, av.VideoFrame)
            yield out

    def push(self, frames: Iterable[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        """The deinterlaced frames ready after ``frames`` (bwdif looks one frame ahead)."""
        for frame in frames:
            self.graph.push(frame)
            yield from self._drain()

    def flush(self) -> Iterator[av.VideoFrame]:
        """The frames still held once the source has ended."""
        self.graph.push(None)
        yield from self._drain()
