"""The soundtrack mixed and AAC-encoded in its own thread, beside the video.

The mix and the AAC encoder run ahead of the picture (a few seconds at most, so memory stays
flat); each video writer muxes the packets that are ready up to its current video time and,
at the end, waits for the rest. Mixing and encoding thus add no wall time to a render beyond
what the other core cannot absorb. A job with several renditions mixes once and encodes the
mix once per rendition's stream (each MP4 has its own encoder).

Only this thread touches the audio encoders; only the writers touch their containers. The
containers' headers are written before the thread starts, so the encoders are open by then.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator, Sequence

import av

from gpu_worker.render.handoff import put_unless_stopped
from gpu_worker.render.stages import Stopwatch

AHEAD = 256  # packets per stream the mix may run ahead (1024 samples each: about 5.5 s)
_DONE = object()


def copy_audio(frame: av.AudioFrame) -> av.AudioFrame:
    """An audio frame of its own for another rendition's encoder."""
    copy = av.AudioFrame.from_ndarray(frame.to_ndarray(), format="fltp", layout="stereo")
    copy.sample_rate = frame.sample_rate
    copy.pts = frame.pts
    return copy


class SoundEncoder:
    """Encodes ``frames`` (the mix) into every stream of ``streams`` in a thread; stream
    ``i``'s packets are taken with :meth:`ready` and :meth:`rest`. ``watch`` holds the
    thread's wall and CPU seconds spent mixing and encoding (not waiting)."""

    def __init__(self, frames: Iterator[av.AudioFrame], streams: Sequence[av.AudioStream]) -> None:
        self.streams = list(streams)
        self.watch = Stopwatch()
        self._queues: list[queue.Queue[object]] = [queue.Queue(maxsize=AHEAD) for _ in self.streams]
        self._held: list[av.Packet | None] = [None] * len(self.streams)
        self._ended = [False] * len(self.streams)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(frames,), name="soundtrack", daemon=True
        )
        self._thread.start()

    def _run(self, frames: Iterator[av.AudioFrame]) -> None:
        try:
            while not self._stop.is_set():
                with self.watch:
                    frame = next(frames, None)
                    packets = [
                        stream.encode(
                            None if frame is None else frame if i == 0 else copy_audio(frame)
                        )
                        for i, stream in enumerate(self.streams)
                    ]
                for q, out in zip(self._queues, packets, strict=True):
                    for packet in out:
                        put_unless_stopped(q, packet, self._stop)
                if frame is None:
                    break
            for q in self._queues:
                put_unless_stopped(q, _DONE, self._stop)
        except BaseException as exc:  # raised in the writers' threads
            self._error = exc
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # the mixer's readers

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def ready(self, i: int, until: float) -> list[av.Packet]:
        """Stream ``i``'s packets encoded so far that start before ``until`` seconds,
        without waiting; raises what failed in the thread."""
        self._check()
        return self._take(i, until, wait=False)

    def rest(self, i: int) -> list[av.Packet]:
        """All of stream ``i``'s remaining packets, waiting for the thread to finish them."""
        taken = self._take(i, math.inf, wait=True)
        self._check()
        return taken

    def _take(self, i: int, until: float, wait: bool) -> list[av.Packet]:
        taken: list[av.Packet] = []
        while not self._ended[i]:
            packet = self._held[i]
            if packet is None:
                try:
                    item = (
                        self._queues[i].get(timeout=0.1) if wait else self._queues[i].get_nowait()
                    )
                except queue.Empty:
                    if not wait or self._error is not None or not self._thread.is_alive():
                        break
                    continue
                if item is _DONE:
                    self._ended[i] = True
                    break
                assert isinstance(item, av.Packet)
                packet = item
            time_base = packet.time_base
            if packet.pts is not None and time_base is not None and packet.pts * time_base >= until:
                self._held[i] = packet
                break
            self._held[i] = None
            taken.append(packet)
        return taken

    def close(self) -> None:
        """Stop the thread (when the render ends early) and wait for it."""
        self._stop.set()
        for q in self._queues:  # unblock a full queue
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
        self._thread.join()
