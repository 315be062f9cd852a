"""The video decoder: NVDEC (``*_cuvid``, with its built-in crop and resize) when a session
really opens, else FFmpeg's software decoders — chosen by probing, like the encoder.

The caller's setting (``GPU_WORKER_DECODER=auto|nvdec|cpu``) overrides; forcing nvdec where
it cannot open fails with ``decoder_unavailable``. On a GPU worker, NVDEC takes decoding and
most of the scaling off the CPU, which then only composites.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import av

from gpu_worker.errors import DecoderUnavailable
from gpu_worker.job import Fit
from gpu_worker.render.geometry import cover_crop
from gpu_worker.render.hardware import prefer_hardware

log = logging.getLogger(__name__)

CUVID = {"h264": "h264_cuvid", "hevc": "hevc_cuvid", "vp9": "vp9_cuvid", "av1": "av1_cuvid"}


@dataclass(frozen=True)
class DecoderChoice:
    name: str | None  # a *_cuvid decoder, or None for FFmpeg's default software decoder
    reason: str

    @property
    def hardware(self) -> bool:
        return self.name is not None


@cache
def nvdec_probe(codec: str) -> tuple[bool, str]:
    """Whether an NVDEC session opens for ``codec`` (h264, hevc…) here, and why not."""
    name = CUVID.get(codec)
    if name is None:
        return False, f"NVDEC has no decoder for {codec} in this build"
    if name not in av.codecs_available:
        return False, f"this FFmpeg build has no {name}"
    try:
        ctx = av.CodecContext.create(name, "r")
        ctx.open()
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        return False, f"no NVDEC session opens here ({type(exc).__name__})"
    return True, f"an NVDEC session opened ({name})"


def choose_decoder(codec: str, setting: str = "auto") -> DecoderChoice:
    """The decoder for a stream of ``codec`` under ``setting`` (auto, nvdec or cpu); the
    probe runs once per codec and process."""
    if codec not in CUVID:  # nothing to force: NVDEC does not decode this codec at all
        return DecoderChoice(None, f"NVDEC has no decoder for {codec}")
    gpu, why = prefer_hardware(
        setting,
        variable="GPU_WORKER_DECODER",
        hardware="nvdec",
        software="cpu",
        probe=lambda: nvdec_probe(codec),
        unavailable=DecoderUnavailable,
    )
    return DecoderChoice(CUVID[codec] if gpu else None, why)


def cuvid_options(
    fit: Fit,
    rotation: int,
    stored_w: int,
    stored_h: int,
    width: int,
    height: int,
    *,
    sar: Fraction = Fraction(1),
    deinterlace: bool = False,
    fields: bool = False,
) -> tuple[dict[str, str], int, int]:
    """NVDEC ``crop``/``resize`` options doing a ``cover`` fit on the GPU, and the size of
    the frames it then returns (still in stored orientation; rotation happens after). The
    crop follows the picture's shown shape (``sar``: its sample aspect ratio); an interlaced
    source is deinterlaced there too (``adaptive``, keeping both fields when ``fields``).

    Only ``cover`` is done there: ``contain`` and ``blur`` need padding or a second copy,
    which the filter graph does on the (already decoded) frame. Colour is never touched by
    NVDEC: the same filter graph maps it after decoding as on the CPU path.
    """
    extra = {}
    if deinterlace:
        extra = {"deint": "adaptive", "drop_second_field": "0" if fields else "1"}
    if fit is not Fit.COVER:
        return extra, stored_w, stored_h
    turned = rotation in (90, 270)
    up_w, up_h = (stored_h, stored_w) if turned else (stored_w, stored_h)
    upright_sar = float(1 / sar if turned else sar)
    cw, ch, cx, cy = cover_crop(up_w, up_h, width, height, upright_sar)
    # The crop in stored coordinates (top x bottom x left x right), then the resize.
    if turned:
        cw, ch, cx, cy = ch, cw, cy, cx
        out_w, out_h = height, width
    else:
        out_w, out_h = width, height
    top, left = cy, cx
    bottom, right = stored_h - ch - cy, stored_w - cw - cx
    options = {"crop": f"{top}x{bottom}x{left}x{right}", "resize": f"{out_w}x{out_h}", **extra}
    return options, out_w, out_h
