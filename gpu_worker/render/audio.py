"""The soundtrack: music trimmed or looped to the video with volume and fades (and ducked
while clips speak), mixed with clip audio whose volume is above 0, as 48 kHz stereo AAC. The
output always has audio.

The mix is made block by block as the video is encoded, each source decoded as a stream:
memory does not grow with the length of the video. Loudness normalisation measures the whole
mix first (a cheap pass over the sound only), then mixes it again with the gain that reaches
the target and a true-peak limiter.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from gpu_worker.job import TransitionType
from gpu_worker.limits import Limits
from gpu_worker.render.limiter import Limiter
from gpu_worker.render.loudness import gain_to, integrated_loudness
from gpu_worker.render.media import av_error, open_input
from gpu_worker.render.timeline import Placement

RATE = 48_000
CHANNELS = 2
AAC_FRAME = 1024
BLOCK = 48 * AAC_FRAME  # about one second of sound mixed at a time
F32 = NDArray[np.float32]
TRUE_PEAK_CEILING_DB = -1.5  # normalised mixes: -1 dBTP with room for the AAC encoder


def _decoded(
    path: Path, label: str, start: float, limits: Limits, origin: float | None = None
) -> Generator[F32, None, None]:
    """An input's audio from ``start`` seconds on, as (2, n) float32 chunks at 48 kHz,
    sample-exact: a source that starts late is preceded by silence.

    ``start`` counts from ``origin`` on the container's clock (a clip's: when its first
    picture is shown, so sound stored to start later than the picture stays that much
    later, as in a player); by default from the audio stream's own start."""
    with open_input(path, label, limits) as container:
        if not container.streams.audio:
            return
        stream = container.streams.audio[0]
        tb = stream.time_base
        if origin is None:
            origin = float(stream.start_time * tb) if stream.start_time and tb else 0.0
        if start > 1.0 and tb:
            try:
                container.seek(int((start + origin - 0.5) / tb), stream=stream)
            except av.error.FFmpegError:
                container.seek(0)

        def resampled() -> Iterator[tuple[av.AudioFrame | None, list[av.AudioFrame]]]:
            # A resampler is set up for the first frame's layout, format and rate (and passes
            # matching frames through untouched): a stream that changes them midway, as MP3
            # and AAC may, gets a new one from that frame on.
            resampler: av.AudioResampler | None = None
            shape: tuple[str, str, int] | None = None
            for frame in container.decode(stream):
                now = (frame.format.name, frame.layout.name, frame.sample_rate)
                if resampler is None or now != shape:
                    if resampler is not None:
                        yield None, resampler.resample(None)
                    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE)
                    shape = now
                yield frame, resampler.resample(frame)
            if resampler is not None:
                yield None, resampler.resample(None)  # what the resampler still holds

        skip: int | None = None  # samples still to drop (negative: silence to add)
        try:
            for frame, chunks in resampled():
                if skip is None and frame is not None:
                    t0 = float(frame.time) - origin if frame.time is not None else 0.0
                    skip = round((start - t0) * RATE)
                    if skip < 0:
                        yield np.zeros((CHANNELS, -skip), np.float32)
                        skip = 0
                for chunk in chunks:
                    samples = np.asarray(chunk.to_ndarray(), dtype=np.float32)[:CHANNELS]
                    if skip:
                        drop = min(skip, samples.shape[1])
                        samples, skip = samples[:, drop:], skip - drop
                    if samples.shape[1]:
                        yield samples
        except av.error.FFmpegError as exc:
            raise av_error(label, exc) from exc


class _Reader:
    """Reads a decoded stream n samples at a time; silence once it ends (or it loops)."""

    def __init__(
        self,
        path: Path,
        label: str,
        start: float,
        limits: Limits,
        loop: bool,
        origin: float | None = None,
    ) -> None:
        self.path, self.label, self.start, self.limits, self.loop = path, label, start, limits, loop
        self.origin = origin
        self._chunks = _decoded(path, label, start, limits, origin)
        self._buffer = np.zeros((CHANNELS, 0), np.float32)
        self._produced = 0  # samples this pass has given, to tell an empty source from an end

    def read(self, n: int) -> F32:
        parts = [self._buffer]
        have = self._buffer.shape[1]
        while have < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                if self.loop and self._produced + have > 0:
                    self._chunks = _decoded(self.path, self.label, 0.0, self.limits, self.origin)
                    self._produced = -have
                    continue
                parts.append(np.zeros((CHANNELS, n - have), np.float32))
                have = n
                break
            parts.append(chunk)
            have += chunk.shape[1]
        joined = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        self._buffer = joined[:, n:]
        self._produced += n
        return joined[:, :n]

    def close(self) -> None:
        self._chunks.close()


def ramp_at(index: NDArray[np.int64], n: int, fade_in: int, fade_out: int) -> F32:
    """Gains at sample positions ``index`` of an n-sample track rising linearly over its
    first ``fade_in`` samples and falling over its last ``fade_out``."""
    gain = np.ones(index.shape, np.float32)
    if fade_in > 0:
        gain *= np.clip(index / fade_in, 0.0, 1.0).astype(np.float32)
    if fade_out > 0:
        left = (n - 1 - index) / max(fade_out - 1, 1)
        gain *= np.clip(left, 0.0, 1.0).astype(np.float32)
    return gain


def ramp(n: int, fade_in: int, fade_out: int) -> F32:
    """The whole gain curve of an n-sample track (see :func:`ramp_at`)."""
    return ramp_at(np.arange(n), n, fade_in, fade_out)


def transition_ramps(placement: Placement) -> tuple[int, int]:
    """Samples over which a clip's own sound rises and falls with its transitions."""

    def length(kind: TransitionType, seconds: float) -> int:
        if kind.overlaps:  # crossfades, wipes and slides cross the two sounds over
            return round(seconds * RATE)
        if kind is TransitionType.FADE_BLACK:
            return round(seconds / 2 * RATE)
        return 0

    return (
        length(placement.transition_in, placement.transition_in_duration),
        length(placement.transition_out, placement.transition_out_duration),
    )


@dataclass
class Source:
    """One sound placed on the output: samples [at, at + length), with gain and fades."""

    path: Path
    label: str
    start: float  # seconds into the input
    at: int  # first output sample
    length: int
    gain: float
    fade_in: int
    fade_out: int
    loop: bool = False
    envelope: Callable[[NDArray[np.int64]], F32] | None = None  # gains by output sample
    origin: float | None = None  # seconds on the input's clock that ``start`` counts from
    reader: _Reader | None = None


class Mixer:
    """The soundtrack of a video of ``total`` samples, produced block by block; with
    ``loudness``, normalised to that integrated loudness (LUFS)."""

    def __init__(
        self, total: int, sources: list[Source], limits: Limits, loudness: float | None = None
    ) -> None:
        self.total = total
        self.sources = [s for s in sources if s.gain > 0 and s.length > 0]
        self.limits = limits
        self.loudness = loudness

    def blocks(self) -> Iterator[F32]:
        if self.loudness is None:
            yield from self._mixed(1.0, Limiter(RATE))
            return
        target = self.loudness
        gain = gain_to(target, integrated_loudness(self._mixed(1.0, None), RATE))
        # The limiter takes a little off loud mixes: measure once more and make up for it.
        limited = integrated_loudness(self._mixed(gain, self._true_peak_limiter()), RATE)
        if limited is not None and abs(target - limited) > 0.2:
            gain *= gain_to(target, limited)
        yield from self._mixed(gain, self._true_peak_limiter())

    @staticmethod
    def _true_peak_limiter() -> Limiter:
        return Limiter(RATE, threshold_db=TRUE_PEAK_CEILING_DB, true_peak=True)

    def _mixed(self, gain: float, limiter: Limiter | None) -> Iterator[F32]:
        """One pass over the sources: the mix times ``gain``, through ``limiter``."""
        try:
            for b0 in range(0, self.total, BLOCK):
                b1 = min(self.total, b0 + BLOCK)
                mix = np.zeros((CHANNELS, b1 - b0), np.float32)
                for source in self.sources:
                    lo, hi = max(b0, source.at), min(b1, source.at + source.length)
                    if lo >= hi:
                        if source.reader is not None and b0 >= source.at + source.length:
                            source.reader.close()
                            source.reader = None
                        continue
                    if source.reader is None:
                        source.reader = _Reader(
                            source.path,
                            source.label,
                            source.start,
                            self.limits,
                            source.loop,
                            source.origin,
                        )
                    samples = source.reader.read(hi - lo)
                    local = np.arange(lo - source.at, hi - source.at)
                    gains = ramp_at(local, source.length, source.fade_in, source.fade_out)
                    if source.envelope is not None:
                        gains *= source.envelope(np.arange(lo, hi))
                    mix[:, lo - b0 : hi - b0] += samples * (gains * source.gain)
                if gain != 1.0:
                    mix *= np.float32(gain)
                yield limiter(mix) if limiter is not None else mix
        finally:
            for source in self.sources:
                if source.reader is not None:
                    source.reader.close()
                    source.reader = None

    def frames(self) -> Iterator[av.AudioFrame]:
        """The mix as AAC-sized frames with sample-exact timestamps."""
        position = 0
        for block in self.blocks():
            for start in range(0, block.shape[1], AAC_FRAME):
                chunk = np.ascontiguousarray(block[:, start : start + AAC_FRAME])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate = RATE
                frame.pts = position
                position += chunk.shape[1]
                yield frame
