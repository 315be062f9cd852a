"""Ken Burns motion on a clip: the window of the picture shown at each time (pure maths) and
the per-frame resampling of that window to the output, with sub-pixel precision.

The clip's filter graph fits the picture once to a *base* size with the output's shape, as
large as the tightest window needs to stay sharp (the output size times ``scale``) but never
larger than the source gives (a small source is not enlarged twice). Each output frame is then
one resampling of a window given in floating-point coordinates of that base picture: Pillow's
convolution resampler (``Image.resize`` with a ``box``) honours fractional box edges, so
marks on the picture move by fractions of a pixel from frame to frame instead of jumping by
whole pixels as FFmpeg's ``zoompan`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image

from gpu_worker.job import Easing, Fit, Motion, MotionKind, Quality
from gpu_worker.render.clips import FrameSource
from gpu_worker.render.composite import U8, planes_of, to_frame
from gpu_worker.render.geometry import cover_crop

# The resampling filter by output quality: bilinear costs about half of bicubic a frame
# (benchmarks/motion_logo.py); bicubic keeps fine detail crisper between pixel positions.
RESAMPLE = {
    Quality.DRAFT: Image.Resampling.BILINEAR,
    Quality.STANDARD: Image.Resampling.BILINEAR,
    Quality.HIGH: Image.Resampling.BICUBIC,
}

Box = tuple[float, float, float, float]


def eased(progress: float, easing: Easing) -> float:
    """``progress`` 0..1 through the easing curve (ease_in_out: a half cosine)."""
    p = min(1.0, max(0.0, progress))
    if easing is Easing.EASE_IN_OUT:
        return 0.5 - 0.5 * math.cos(math.pi * p)
    return p


def window(kind: MotionKind, scale: float, progress: float, width: float, height: float) -> Box:
    """The part (x0, y0, x1, y1) of a ``width`` x ``height`` picture shown at ``progress``.

    Zooms change the window's size geometrically (a constant zoom rate), centred; pans move a
    window ``scale`` times smaller than the picture across it at constant speed. ``pan_left``
    travels left (the picture seems to move right), ``pan_up`` travels up."""
    p = min(1.0, max(0.0, progress))
    if kind in (MotionKind.ZOOM_IN, MotionKind.ZOOM_OUT):
        zoom = scale ** (p if kind is MotionKind.ZOOM_IN else 1.0 - p)
        w, h = width / zoom, height / zoom
        x0, y0 = (width - w) / 2, (height - h) / 2
        return x0, y0, x0 + w, y0 + h
    w, h = width / scale, height / scale
    free_x, free_y = width - w, height - h
    x0, y0 = free_x / 2, free_y / 2
    if kind is MotionKind.PAN_LEFT:
        x0 = free_x * (1 - p)
    elif kind is MotionKind.PAN_RIGHT:
        x0 = free_x * p
    elif kind is MotionKind.PAN_UP:
        y0 = free_y * (1 - p)
    else:  # PAN_DOWN
        y0 = free_y * p
    return x0, y0, x0 + w, y0 + h


def _even(value: float) -> int:
    return max(2, 2 * math.floor(value / 2 + 0.5))


def base_size(
    fit: Fit, scale: float, src_w: int, src_h: int, width: int, height: int
) -> tuple[int, int]:
    """The size the clip is fitted to before the motion resamples it to ``width`` x ``height``:
    the output's shape, ``scale`` times the output at most (enough for the tightest window),
    and for ``cover`` no more than the source's own pixels of that shape."""
    big_w, big_h = width * scale, height * scale
    if fit is Fit.COVER:
        cw = cover_crop(src_w, src_h, width, height)[0]
        if cw < big_w:
            big_w, big_h = float(cw), cw * height / width
    return _even(big_w), _even(big_h)


@dataclass
class _Planes:
    """A base frame's planes as Pillow images sharing the frame's memory."""

    frame: av.VideoFrame
    images: tuple[Image.Image, Image.Image, Image.Image]


class MotionSampler:
    """Turns base frames into output frames along a clip's motion."""

    def __init__(
        self,
        motion: Motion,
        length: float,
        width: int,
        height: int,
        quality: Quality = Quality.STANDARD,
    ) -> None:
        self.motion = motion
        self.filter = RESAMPLE[quality]
        self.length = length
        self.width, self.height = width, height
        self._held: _Planes | None = None

    def box(self, local_time: float, base_w: int, base_h: int) -> Box:
        """The window of a ``base_w`` x ``base_h`` base picture shown at ``local_time``."""
        p = eased(local_time / self.length if self.length > 0 else 1.0, self.motion.easing)
        return window(self.motion.type, self.motion.scale, p, base_w, base_h)

    def _planes(self, frame: av.VideoFrame) -> tuple[Image.Image, Image.Image, Image.Image]:
        if self._held is None or self._held.frame is not frame:  # a still is split once
            if frame.format.name != "yuv420p":
                raise ValueError(f"motion needs yuv420p base frames, not {frame.format.name}")
            images: list[Image.Image] = []
            for i, plane in enumerate(frame.planes):
                w, h = (frame.width, frame.height) if i == 0 else (plane.width, plane.height)
                data = np.frombuffer(memoryview(plane), np.uint8)
                images.append(Image.frombuffer("L", (w, h), data, "raw", "L", plane.line_size, 1))
            self._held = _Planes(frame, (images[0], images[1], images[2]))
        return self._held.images

    def __call__(self, frame: av.VideoFrame, local_time: float) -> av.VideoFrame:
        """The output frame at ``local_time`` from the base ``frame`` shown then."""
        y_img, u_img, v_img = self._planes(frame)
        x0, y0, x1, y1 = self.box(local_time, frame.width, frame.height)
        w, h = self.width, self.height
        out: U8 = np.empty((h * 3 // 2, w), np.uint8)
        py, pu, pv = planes_of(out, w, h)
        py[...] = np.asarray(y_img.resize((w, h), self.filter, box=(x0, y0, x1, y1)))
        # Chroma planes hold half the luma's samples each way (frame sizes are even).
        kx, ky = u_img.width / frame.width, u_img.height / frame.height
        half = (x0 * kx, y0 * ky, x1 * kx, y1 * ky)
        pu[...] = np.asarray(u_img.resize((w // 2, h // 2), self.filter, box=half))
        pv[...] = np.asarray(v_img.resize((w // 2, h // 2), self.filter, box=half))
        result = to_frame(out, w, h)
        result.pts = frame.pts
        if frame.time_base is not None:
            result.time_base = frame.time_base
        return result

    def release(self) -> None:
        self._held = None


class MotionReader:
    """A clip reader (fitting to the base size) whose frames follow the clip's motion; it
    reads like the :class:`~gpu_worker.render.clips.ClipReader` it wraps. With several
    output sizes (renditions), one sampler per size, in the reader's order of sizes."""

    def __init__(self, reader: FrameSource, *samplers: MotionSampler) -> None:
        self.reader = reader
        self.samplers = samplers
        self.label = reader.label
        self.times = reader.times

    def frame_at(self, local_time: float) -> av.VideoFrame:
        return self.frames_at(local_time)[0]

    def frames_at(self, local_time: float) -> list[av.VideoFrame]:
        bases = self.reader.frames_at(local_time)
        with self.times.scale:
            return [
                sampler(base, local_time)
                for sampler, base in zip(self.samplers, bases, strict=True)
            ]

    def close(self) -> None:
        for sampler in self.samplers:
            sampler.release()
        self.reader.close()
