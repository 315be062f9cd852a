"""The H.264 encoder: chosen once per process by probing, with quality presets per encoder.

``h264_nvenc`` is used when an NVENC session really opens, else ``libx264``; the caller's
setting (``GPU_WORKER_ENCODER=auto|nvenc|x264``) overrides, and forcing nvenc where it cannot
open fails with ``encoder_unavailable``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import av
import av.container
import av.video.codeccontext
import numpy as np

from gpu_worker.errors import EncoderUnavailable, InternalError
from gpu_worker.job import Quality
from gpu_worker.render.hardware import prefer_hardware

log = logging.getLogger(__name__)

NVENC = "h264_nvenc"
X264 = "libx264"

# quality -> encoder options. x264 "standard" is veryfast/crf 23 (the reference for
# benchmarks); NVENC uses its P1..P7 presets with constant-quality VBR.
PRESETS: dict[str, dict[Quality, dict[str, str]]] = {
    X264: {
        Quality.DRAFT: {"preset": "ultrafast", "crf": "28"},
        Quality.STANDARD: {"preset": "veryfast", "crf": "23"},
        Quality.HIGH: {"preset": "medium", "crf": "19"},
    },
    NVENC: {
        Quality.DRAFT: {"preset": "p1", "rc": "vbr", "cq": "28", "tune": "ll"},
        Quality.STANDARD: {"preset": "p4", "rc": "vbr", "cq": "23", "tune": "hq"},
        Quality.HIGH: {"preset": "p6", "rc": "vbr", "cq": "19", "tune": "hq"},
    },
}


@dataclass(frozen=True)
class EncoderChoice:
    name: str  # h264_nvenc or libx264
    reason: str  # why it was chosen, for logs and `gpu-worker doctor`

    @property
    def hardware(self) -> bool:
        """Whether frames are encoded on the GPU (a failure there is the worker's fault)."""
        return self.name == NVENC

    @property
    def kind(self) -> str:
        """``gpu`` when the video is encoded on the GPU, else ``cpu``."""
        return "gpu" if self.hardware else "cpu"

    def encode(self, stream: av.VideoStream, frame: av.VideoFrame | None) -> list[av.Packet]:
        """Packets for ``frame`` (None flushes); the one call through which every frame
        reaches the encoder, so a test can stand in for a GPU that fails mid-stream."""
        return stream.encode(frame)


def nvenc_probe() -> tuple[bool, str]:
    """Try to open an NVENC session and encode one frame; (works, why not)."""
    if NVENC not in av.codecs_available:
        return False, "this FFmpeg build has no h264_nvenc"
    try:
        ctx = av.CodecContext.create(NVENC, "w")
        assert isinstance(ctx, av.video.codeccontext.VideoCodecContext)
        ctx.width, ctx.height = 256, 256
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 30)
        ctx.framerate = Fraction(30)
        ctx.open()
        frame = av.VideoFrame.from_ndarray(np.zeros((384, 256), np.uint8), format="yuv420p")
        frame.pts = 0
        ctx.encode(frame)
        ctx.encode(None)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        return False, f"no NVENC session opens here ({exc})"
    return True, "an NVENC session opened"


SOFTWARE = "x264"  # the setting of the CPU path a hardware fault falls back to


@cache
def choose_encoder(setting: str = "auto") -> EncoderChoice:
    """Pick the encoder for ``setting`` (auto, nvenc or x264); cached: the probe runs once."""
    gpu, why = prefer_hardware(
        setting,
        variable="GPU_WORKER_ENCODER",
        hardware="nvenc",
        software="x264",
        probe=nvenc_probe,
        unavailable=EncoderUnavailable,
    )
    if gpu:
        return EncoderChoice(NVENC, why)
    if setting.lower() == "x264":
        return EncoderChoice(X264, why)
    if X264 not in av.codecs_available:
        raise InternalError("neither h264_nvenc nor libx264 is available in this FFmpeg build")
    log.info("encoder: libx264 (%s)", why)
    return EncoderChoice(X264, why)


def add_video_stream(
    container: av.container.OutputContainer, name: str, width: int, height: int, fps: Fraction | int
) -> av.VideoStream:
    """A yuv420p video stream of ``name`` on ``container``."""
    stream = container.add_stream(name, rate=fps)
    if not isinstance(stream, av.VideoStream):
        raise InternalError(f"{name} is not a video encoder")
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    # Frame threads, as the ffmpeg command line uses: PyAV's default (slice threads) makes
    # libx264 encode each frame in slices, about 12 % slower on the reference reel.
    stream.codec_context.thread_type = "FRAME"
    return stream


def add_audio_stream(
    container: av.container.OutputContainer, name: str, rate: int = 48_000
) -> av.AudioStream:
    """A stereo audio stream of ``name`` on ``container``."""
    stream = container.add_stream(name, rate=rate, layout="stereo")
    if not isinstance(stream, av.AudioStream):
        raise InternalError(f"{name} is not an audio encoder")
    return stream


def encoder_options(name: str, quality: Quality, fps: int) -> dict[str, str]:
    """Options for ``name`` at ``quality``: H.264 High, a keyframe every two seconds."""
    options = dict(PRESETS[name][quality])
    options["profile"] = "high"
    options["g"] = str(max(1, 2 * fps))
    # A frame with nothing drawn on it reaches the encoder as decoded, side data and all:
    # closed captions a source carries (ATSC A53) must not be re-embedded on our timeline.
    options["a53cc"] = "0"
    if name == X264:
        options["x264-params"] = f"keyint={2 * fps}:min-keyint={fps}"
    return options
