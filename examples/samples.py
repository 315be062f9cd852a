"""Procedural sample media made with PyAV: the demo's clips and music, test and benchmark
inputs. Patterns are smooth gradients with a moving block and optional camera-like grain, so
frames differ from each other and from clip to clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from gpu_worker.render.encoder import add_audio_stream, add_video_stream


def _pattern(width: int, height: int, i: int, hue: float, fps: float) -> NDArray[np.uint8]:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = i / fps
    phase = hue * 6.283
    r = 127 + 90 * np.sin(x / width * 3.1 + phase + t)
    g = 127 + 90 * np.sin(y / height * 2.3 + phase * 1.7 - t * 0.7)
    b = 127 + 90 * np.sin((x + y) / (width + height) * 4.0 + phase * 0.3 + t * 0.5)
    rgb = np.stack([r, g, b], axis=-1)
    # A bright block moving left to right: motion the encoder has to follow.
    bw, bh = max(2, width // 6), max(2, height // 6)
    bx = int((t * 0.25 % 1.0) * (width - bw))
    by = height // 2 - bh // 2
    rgb[by : by + bh, bx : bx + bw] = (240, 240, 240)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def make_clip(
    path: Path,
    *,
    width: int = 320,
    height: int = 568,
    fps: float = 30,
    seconds: float = 2.0,
    hue: float = 0.0,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rotation: int = 0,
    audio_hz: float | None = 440.0,
    grain: float = 0.0,
    bit_rate: int | None = None,
    frame_times: Sequence[float] | None = None,
    solid: tuple[int, int, int] | None = None,
    marker: bool = False,
) -> Path:
    """Write a test clip whose picture, as a viewer should see it, is ``width`` x ``height``.

    ``frame_times`` gives explicit (variable) timestamps in seconds. ``rotation`` films it
    like a phone: the pixels are stored turned by that many degrees clockwise, with a display
    matrix asking players to turn them back (counter-clockwise) to show the picture upright.
    ``marker`` paints the top-left quarter red and the rest blue, to check orientation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(hue * 1000) + width)
    times = (
        list(frame_times)
        if frame_times is not None
        else [i / fps for i in range(max(1, round(seconds * fps)))]
    )
    time_base = Fraction(1, 90_000)
    turns = (rotation // 90) % 4  # quarter turns clockwise applied to the stored pixels
    stored_w, stored_h = (height, width) if turns % 2 else (width, height)
    with av.open(str(path), "w") as out:
        stream = add_video_stream(
            out, codec, stored_w, stored_h, Fraction(fps).limit_denominator(1001)
        )
        stream.pix_fmt = pix_fmt
        stream.time_base = time_base
        if codec == "libx264":
            stream.codec_context.options = {"preset": "ultrafast", "crf": "18"}
        if bit_rate:
            stream.bit_rate = bit_rate
        tag_bt709(stream)
        if rotation:
            stream.set_display_rotation(rotation)
        astream = None
        if audio_hz is not None:
            astream = add_audio_stream(out, "aac")
        for i, t in enumerate(times):
            if solid is not None:
                rgb = np.empty((height, width, 3), np.uint8)
                rgb[...] = solid
            elif marker:
                rgb = np.empty((height, width, 3), np.uint8)
                rgb[...] = (0, 0, 255)
                rgb[: height // 2, : width // 2] = (255, 0, 0)
            else:
                rgb = _pattern(width, height, i, hue, fps)
            if grain:
                noise = rng.normal(0, grain, rgb.shape)
                rgb = np.clip(rgb + noise, 0, 255).astype(np.uint8)
            if turns:
                rgb = np.ascontiguousarray(np.rot90(rgb, k=-turns))
            frame = bt709(rgb, pix_fmt)
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None and audio_hz is not None:
            end = times[-1] + 1 / fps if times else seconds
            _write_tone(out, astream, end, audio_hz)
    return path


def bt709(rgb: NDArray[np.uint8], pix_fmt: str = "yuv420p") -> av.VideoFrame:
    """An RGB picture as a BT.709, limited-range frame of ``pix_fmt``, tagged as such (as
    cameras and phones tag what they film)."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format=pix_fmt, src_colorspace="ITU709", dst_colorspace="ITU709"
    )
    frame.colorspace = 1  # BT.709
    frame.color_range = 1  # limited
    return frame


def tag_bt709(stream: av.VideoStream) -> None:
    ctx = stream.codec_context
    ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1
    ctx.color_range = 1


def _write_tone(
    out: av.container.OutputContainer,
    stream: av.AudioStream,
    seconds: float,
    hz: float,
    amplitude: float = 0.3,
) -> None:
    rate = 48_000
    total = round(seconds * rate)
    for start in range(0, total, 1024):
        n = min(1024, total - start)
        t = (np.arange(start, start + n) / rate).astype(np.float32)
        wave = (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
        frame.sample_rate = rate
        frame.pts = start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def make_music(path: Path, seconds: float = 4.0, hz: float = 220.0, amplitude: float = 0.3) -> Path:
    """A plain tone as an AAC (.m4a) or MP3/WAV file, chosen by the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = {".wav": "pcm_s16le", ".mp3": "libmp3lame"}.get(path.suffix, "aac")
    with av.open(str(path), "w") as out:
        stream = add_audio_stream(out, codec)
        _write_tone(out, stream, seconds, hz, amplitude)
    return path


def make_image(path: Path, width: int = 400, height: int = 300, hue: float = 0.3) -> Path:
    """A still picture (PNG or JPEG by suffix)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pattern(width, height, 0, hue, 30)).save(path)
    return path
