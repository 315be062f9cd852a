"""Opening input media safely and probing what it holds.

Only real media containers are opened, only from local files, and only through demuxers on
an allow-list: a playlist (HLS), a concat script or an image sequence pattern posing as a video
is refused before FFmpeg could follow it. PyAV's errors are mapped to our codes here, in one place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.container

from gpu_worker.errors import (
    GpuWorkerError,
    InputNotFound,
    InputUnreadable,
    UnsupportedInput,
)
from gpu_worker.limits import Limits
from gpu_worker.render.colour import ColourTags, plan_for, read_tags
from gpu_worker.render.files import checked_input
from gpu_worker.render.pictures import check_side, too_many_pixels
from gpu_worker.render.stills import normalised_still

log = logging.getLogger(__name__)

# Demuxers a clip or a music track may be read with. Everything else (hls, concat, image2
# with its file-name patterns, network protocols, subtitles, raw data) is refused.
ALLOWED_DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "mpegts",
    "mp3",
    "wav",
    "ogg",
    "flac",
    "aac",
    "png_pipe",
    "jpeg_pipe",
    "webp_pipe",
)
OPEN_OPTIONS = {
    "format_whitelist": ",".join(ALLOWED_DEMUXERS),
    "protocol_whitelist": "file",
    "enable_drefs": "0",
}
STILL_DEMUXERS = {"png_pipe", "jpeg_pipe", "webp_pipe"}
_TEXT_MAGIC = (b"#EXTM3U", b"ffconcat", b"file ", b"<?xml", b"[playlist]")


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as stored, before rotation
    height: int
    rotation: int  # degrees to turn the picture counter-clockwise to show it upright: 0/90/180/270
    codec: str
    pix_fmt: str | None
    rate: Fraction | None
    still: bool
    colour: ColourTags = field(default_factory=ColourTags)
    sar: Fraction = Fraction(1)  # sample (pixel) aspect ratio: shown width = width x sar
    interlaced: bool = False  # field order tt/bb/tb/bt, or frames flagged interlaced
    field_order: int = 0  # FFmpeg's AVFieldOrder: 2 tt, 3 bb, 4 tb, 5 bt; 0 unknown
    start: float = 0.0  # seconds: when the first frame is shown, on the container's clock


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    label: str  # the input as the job named it, for messages
    format_name: str
    duration: float | None
    size_bytes: int
    video: VideoInfo | None
    audio: AudioInfo | None


def _check_file(path: Path, label: str, limits: Limits) -> int:
    stat = checked_input(path, label, limits)
    with path.open("rb") as handle:
        head = handle.read(64).lstrip()
    if head.startswith(_TEXT_MAGIC):
        raise UnsupportedInput(f"{label}: a playlist or script, not a media file")
    return stat.st_size


def _still_format(path: Path) -> str | None:
    """The image demuxer for a still picture, told by its first bytes (never by its name)."""
    with path.open("rb") as handle:
        head = handle.read(16)
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg_pipe"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png_pipe"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp_pipe"
    return None


def _still_size(path: Path, label: str, limits: Limits) -> tuple[int, int]:
    """A picture's declared size, read from its header alone (nothing is decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError as exc:
        raise too_many_pixels(f"{label}: the picture", limits) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputUnreadable(f"{label}: not a readable picture ({exc})") from exc
    return width, height


def open_input(path: Path, label: str, limits: Limits | None = None) -> av.container.InputContainer:
    """Open a local media file through the demuxer allow-list; errors carry our codes."""
    limits = limits or Limits()
    _check_file(path, label, limits)
    try:
        return av.open(
            str(path.resolve()),
            mode="r",
            format=_still_format(path),
            options=dict(OPEN_OPTIONS),
            metadata_errors="replace",  # a tag in a broken encoding is no reason to refuse a file
        )
    except av.error.InvalidDataError as exc:
        raise InputUnreadable(f"{label}: not a media file or corrupt ({exc.strerror})") from exc
    except (av.error.ArgumentError, av.error.PermissionError, av.error.DemuxerNotFoundError) as exc:
        raise UnsupportedInput(f"{label}: not a container the worker accepts") from exc
    except av.error.FileNotFoundError as exc:
        raise InputNotFound(f"{label}: no such file") from exc
    except av.error.FFmpegError as exc:
        raise InputUnreadable(f"{label}: cannot be opened ({exc.strerror})") from exc


def av_error(label: str, exc: Exception) -> GpuWorkerError:
    """Map an error met while decoding an already opened input to one of our codes."""
    if isinstance(exc, GpuWorkerError):
        return exc
    if isinstance(exc, av.error.FFmpegError):
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, av.error.DecoderNotFoundError | av.error.PatchWelcomeError):
            return UnsupportedInput(f"{label}: {reason}")
        return InputUnreadable(f"{label}: corrupt or truncated ({reason})")
    return InputUnreadable(f"{label}: {exc}")


def _duration(container: av.container.InputContainer, stream: Any | None) -> float | None:
    if stream is not None and stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def probe(path: Path, label: str, limits: Limits | None = None) -> MediaInfo:
    """What an input holds: format, duration, video and audio streams, upright size."""
    limits = limits or Limits()
    size = _check_file(path, label, limits)
    # HEIC/AVIF photos, and photos to turn upright or out of a wide-gamut profile, are read
    # from an upright sRGB copy.
    path = normalised_still(path, label, limits) or path
    with open_input(path, label, limits) as container:
        format_name = container.format.name
        vstream = container.streams.video[0] if container.streams.video else None
        astream = container.streams.audio[0] if container.streams.audio else None
        if vstream is not None and vstream.codec_context is None:
            raise UnsupportedInput(f"{label}: the video stream is in a codec FFmpeg does not know")
        if astream is not None and astream.codec_context is None:
            astream = None  # a sound FFmpeg cannot decode is left out, as if there were none
        video = None
        if vstream is not None:
            ctx = vstream.codec_context
            width, height = ctx.width, ctx.height
            if format_name in STILL_DEMUXERS:
                width, height = _still_size(path, label, limits)
            if width <= 0 or height <= 0:
                raise InputUnreadable(f"{label}: the video stream declares no picture size")
            check_side(label, width, height, limits)
            first = _first_frame(container, vstream, label)
            tags = read_tags(ctx, first, _codec_tag(ctx))
            plan_for(tags, width, height, label)  # refuses HDR it cannot map, early
            video = VideoInfo(
                width=width,
                height=height,
                rotation=normalise_rotation(first.rotation),
                codec=ctx.name,
                pix_fmt=ctx.format.name if ctx.format is not None else None,
                rate=vstream.average_rate or vstream.guessed_rate,
                still=format_name in STILL_DEMUXERS,
                colour=tags,
                sar=_sample_aspect(vstream, label),
                interlaced=int(ctx.field_order or 0) >= 2 or bool(first.interlaced_frame),
                field_order=int(ctx.field_order or 0),
                start=_start(vstream),
            )
        audio = None
        if astream is not None and astream.codec_context.sample_rate:
            actx = astream.codec_context
            audio = AudioInfo(actx.name, actx.sample_rate, actx.channels or 2)
        if video is None and audio is None:
            raise UnsupportedInput(f"{label}: holds neither video nor audio")
        duration = _duration(container, vstream if vstream is not None else astream)
    return MediaInfo(path, label, format_name, duration, size, video, audio)


def _first_frame(container: av.container.InputContainer, stream: Any, label: str) -> Any:
    """Decode the first frame: proves the stream decodes; its display matrix and colour tags
    are read from it."""
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as exc:
        raise av_error(label, exc) from exc
    raise InputUnreadable(f"{label}: the video stream has no decodable frame")


def normalise_rotation(degrees: float | None) -> int:
    """A display matrix angle as one of 0, 90, 180, 270 (counter-clockwise)."""
    if not degrees:
        return 0
    return round(degrees / 90.0) * 90 % 360


def _codec_tag(ctx: Any) -> str | None:
    tag = getattr(ctx, "codec_tag", None)
    return str(tag) if tag else None


def _sample_aspect(stream: Any, label: str) -> Fraction:
    """The stream's sample aspect ratio (container first, then bitstream); 1 when unset or
    implausible (outside 1:4 to 4:1, logged)."""
    for value in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if value:
            sar = Fraction(value)
            if Fraction(1, 4) <= sar <= 4:
                return sar
            log.warning("%s: ignoring implausible sample aspect ratio %s", label, sar)
    return Fraction(1)


def _start(stream: Any) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)
