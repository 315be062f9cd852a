"""``gpu-worker doctor``: what this machine can do (versions, encoders, NVENC, fonts), and a
quick health check that really encodes a few frames with the chosen encoder."""

from __future__ import annotations

import io
import sys
from fractions import Fraction

import av
import numpy as np

from gpu_worker import __version__
from gpu_worker.errors import GpuWorkerError
from gpu_worker.job import Quality
from gpu_worker.render import fonts
from gpu_worker.render.decoder import CUVID
from gpu_worker.render.encoder import (
    NVENC,
    X264,
    add_video_stream,
    choose_encoder,
    encoder_options,
    nvenc_probe,
)
from gpu_worker.service.health import read_health
from gpu_worker.settings import Settings

H264_ENCODERS = (X264, NVENC, "h264_vaapi", "h264_qsv", "h264_v4l2m2m")


def encode_smoke(name: str, frames: int = 8) -> int:
    """Encode a few frames to memory with ``name``; returns the bytes written."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = add_video_stream(out, name, 128, 128, 30)
        stream.codec_context.options = encoder_options(name, Quality.DRAFT, 30)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(
                np.full((192, 128), (i * 29) % 256, np.uint8), format="yuv420p"
            )
            frame.pts = i
            frame.time_base = Fraction(1, 30)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return len(buffer.getvalue())


def run_doctor(settings: Settings, quick: bool = False, serving: bool = False) -> int:
    """Print the report; exit 0 when this machine can render, 1 otherwise. ``serving``
    checks the running ``gpu-worker serve`` instead, through its health file."""
    if serving:
        healthy, line = read_health(settings.health_file)
        print(f"{'ok' if healthy else 'unhealthy'}: {line}")
        return 0 if healthy else 1
    ok = True
    try:
        choice = choose_encoder(settings.encoder)
    except GpuWorkerError as exc:
        print(exc.one_line())
        return 1
    try:
        faces = fonts.catalog()
    except GpuWorkerError as exc:
        print(exc.one_line())
        faces = []
    if not faces:
        ok = False
    if quick:
        try:
            size = encode_smoke(choice.name)
        except av.error.FFmpegError as exc:
            print(f"error internal: {choice.name} failed to encode: {exc}")
            return 1
        print(f"ok encoder={choice.name} fonts={len(faces)} bytes={size}")
        return 0 if ok else 1
    libs = ", ".join(f"{k} {'.'.join(map(str, v))}" for k, v in av.library_versions.items())
    print(f"gpu-worker {__version__}, Python {sys.version.split()[0]}")
    print(f"PyAV {av.__version__}; FFmpeg libraries: {libs}")
    found = [name for name in H264_ENCODERS if name in av.codecs_available]
    print(f"H.264 encoders in this FFmpeg build: {', '.join(found) or 'none'}")
    nvenc_ok, why = nvenc_probe()
    print(f"NVENC probe: {'works' if nvenc_ok else 'unavailable'} ({why})")
    decoders = [name for name in CUVID.values() if name in av.codecs_available]
    print(f"NVDEC decoders in this build: {', '.join(decoders) or 'none'}")
    print(f"encoder chosen: {choice.name} ({choice.reason})")
    print(f"fonts: {len(faces)} faces in {len(fonts.families()) if faces else 0} families")
    if choice.name not in (NVENC, X264):
        ok = False
    return 0 if ok else 1
