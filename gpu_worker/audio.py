"""The soundtrack: music trimmed or looped to the video with volume and fades, mixed with
clip audio whose volume is above 0, as 48 kHz stereo AAC. The output always has audio.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from gpu_worker.job import Audio, TransitionType
from gpu_worker.limits import Limits
from gpu_worker.media import av_error, open_input
from gpu_worker.timeline import Placement

RATE = 48_000
CHANNELS = 2
AAC_FRAME = 1024
F32 = NDArray[np.float32]


def decode_audio(path: Path, label: str, start: float, duration: float, limits: Limits) -> F32:
    """``duration`` seconds of an input's audio from ``start``, as (2, n) float32 at 48 kHz.
    Missing stretches (a source shorter than asked) are silence."""
    want = max(0, round(duration * RATE))
    out = np.zeros((CHANNELS, want), np.float32)
    if want == 0:
        return out
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE)
    with open_input(path, label, limits) as container:
        if not container.streams.audio:
            return out
        stream = container.streams.audio[0]
        origin = (
            float(stream.start_time * stream.time_base)
            if stream.start_time and (stream.time_base)
            else 0.0
        )
        if start > 1.0 and stream.time_base:
            try:
                container.seek(int((start + origin - 0.5) / stream.time_base), stream=stream)
            except av.error.FFmpegError:
                container.seek(0)
        cursor: int | None = None  # output sample index of the next resampled sample
        try:
            for frame in container.decode(stream):
                if cursor is None:
                    t0 = float(frame.time) - origin if frame.time is not None else 0.0
                    cursor = round((t0 - start) * RATE)
                for chunk in resampler.resample(frame):
                    cursor = _place(out, _f32(chunk), cursor)
                if cursor >= want:
                    break
            else:
                for chunk in resampler.resample(None):
                    cursor = _place(out, _f32(chunk), cursor or 0)
        except av.error.FFmpegError as exc:
            raise av_error(label, exc) from exc
    return out


def _f32(frame: av.AudioFrame) -> F32:
    return np.asarray(frame.to_ndarray(), dtype=np.float32)


def _place(out: F32, samples: NDArray[np.float32], cursor: int) -> int:
    n = samples.shape[1]
    lo, hi = max(cursor, 0), min(cursor + n, out.shape[1])
    if hi > lo:
        out[:, lo:hi] = samples[:CHANNELS, lo - cursor : hi - cursor]
    return cursor + n


def ramp(n: int, fade_in: int, fade_out: int) -> F32:
    """A gain curve of n samples rising over ``fade_in`` and falling over ``fade_out``."""
    gain = np.ones(n, np.float32)
    if fade_in > 0:
        k = min(fade_in, n)
        gain[:k] *= np.linspace(0.0, 1.0, fade_in, endpoint=False, dtype=np.float32)[:k]
    if fade_out > 0:
        k = min(fade_out, n)
        gain[n - k :] *= np.linspace(1.0, 0.0, fade_out, dtype=np.float32)[fade_out - k :]
    return gain


def music_track(
    audio: Audio, path: Path, length: float, source_seconds: float | None, limits: Limits
) -> F32:
    """The music for a video of ``length`` seconds: looped (or trimmed), volume, fades."""
    n = round(length * RATE)
    if audio.loop and source_seconds and source_seconds < length:
        once = decode_audio(path, audio.uri, 0.0, source_seconds, limits)
        if once.shape[1] == 0:
            return np.zeros((CHANNELS, n), np.float32)
        reps = -(-n // once.shape[1])
        track = np.tile(once, (1, reps))[:, :n]
    else:
        track = decode_audio(path, audio.uri, 0.0, length, limits)
    gain = ramp(n, round(audio.fade_in * RATE), round(audio.fade_out * RATE)) * audio.volume
    return track * gain


def clip_track(placement: Placement, samples: F32, volume: float) -> F32:
    """A clip's own audio with its gain and the ramps of the transitions around it."""
    n = samples.shape[1]
    fade_in = fade_out = 0
    if placement.transition_in is TransitionType.CROSSFADE:
        fade_in = round(placement.transition_in_duration * RATE)
    elif placement.transition_in is TransitionType.FADE_BLACK:
        fade_in = round(placement.transition_in_duration / 2 * RATE)
    if placement.transition_out is TransitionType.CROSSFADE:
        fade_out = round(placement.transition_out_duration * RATE)
    elif placement.transition_out is TransitionType.FADE_BLACK:
        fade_out = round(placement.transition_out_duration / 2 * RATE)
    return samples * (ramp(n, fade_in, fade_out) * volume)


def mix_into(bed: F32, track: F32, at_seconds: float) -> None:
    """Add ``track`` into ``bed`` starting at ``at_seconds`` (cut at the bed's end)."""
    start = round(at_seconds * RATE)
    end = min(bed.shape[1], start + track.shape[1])
    if end > start:
        bed[:, start:end] += track[:, : end - start]


def aac_frames(mix: F32) -> Iterator[av.AudioFrame]:
    """The mix cut into AAC-sized frames with sample-exact timestamps."""
    np.clip(mix, -1.0, 1.0, out=mix)
    total = mix.shape[1]
    for start in range(0, total, AAC_FRAME):
        chunk = np.ascontiguousarray(mix[:, start : start + AAC_FRAME])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        frame.sample_rate = RATE
        frame.pts = start
        yield frame
