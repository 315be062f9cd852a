"""Compositing in the frame's own pixel format (planar YUV 4:2:0, BT.709, limited range).

A text sprite is converted once per job to premultiplied Y, U and V planes with their alpha
(chroma at half resolution, on even coordinates), then blended into each frame only inside
its bounding box. Whole frames are never converted to RGB and back.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
from numpy.typing import NDArray
from PIL import Image

U8 = NDArray[np.uint8]
U16 = NDArray[np.uint16]

# BT.709, limited ("tv") range, from 8-bit R'G'B'.
_KR, _KB = 0.2126, 0.0722
_KG = 1 - _KR - _KB


def rgb_to_yuv709(rgb: NDArray[np.floating]) -> tuple[NDArray[np.float32], ...]:
    """R'G'B' in 0..255 (last axis) to limited-range Y, Cb, Cr floats."""
    r, g, b = (rgb[..., i].astype(np.float32) / 255.0 for i in range(3))
    y = _KR * r + _KG * g + _KB * b
    cb = (b - y) / (2 * (1 - _KB))
    cr = (r - y) / (2 * (1 - _KR))
    return 16 + 219 * y, 128 + 224 * cb, 128 + 224 * cr


@dataclass(frozen=True)
class Band:
    """A run of rows of a sprite with coverage (rows without any separate runs: the gap
    between two lines of text is never touched), cut to its covered columns, ready to
    blend: per plane, ``inv`` = 256 - alpha and ``pre`` = value x alpha + 128 (alpha on a
    0..256 scale), so a pixel is ``(pixel x inv + pre) >> 8`` in 16-bit integers."""

    x: int  # luma offset in the sprite (even)
    y: int  # (even)
    inv: tuple[U16, U16, U16]  # Y, U, V (chroma at half resolution)
    pre: tuple[U16, U16, U16]

    @property
    def width(self) -> int:
        return int(self.inv[0].shape[1])

    @property
    def height(self) -> int:
        return int(self.inv[0].shape[0])


@dataclass(frozen=True)
class YuvSprite:
    """A sprite ready to blend at (x, y): its bands of rows, each cut to its coverage; rows
    and columns without coverage are in no band and never touched. (Runs are not cut finer:
    each band costs a few array operations per frame, which outweigh blending the odd
    uncovered pixel; measured in benchmarks/composite.py.)"""

    x: int  # even
    y: int  # even
    width: int  # the whole sprite's size, covered or not
    height: int
    bands: tuple[Band, ...]

    @property
    def covered(self) -> int:
        """Luma pixels blended per frame."""
        return sum(b.width * b.height for b in self.bands)


def to_yuv_sprite(image: Image.Image, x: int, y: int) -> YuvSprite:
    """Convert an RGBA sprite at even (x, y) with even size, once per job."""
    if x % 2 or y % 2 or image.width % 2 or image.height % 2:
        raise ValueError("sprites must sit on even coordinates with even sizes")
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
    a = rgba[..., 3] / 255.0
    yy, uu, vv = rgb_to_yuv709(rgba)
    h, w = a.shape

    def half(values: NDArray[np.floating]) -> NDArray[np.floating]:
        return values.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    # Chroma is premultiplied before it is averaged, so edges keep their colour.
    alphas = (a, half(a), half(a))
    pres = (yy * a, half(uu * a), half(vv * a))
    # Coverage by pairs of rows (a chroma row each); runs of covered pairs become bands.
    pairs: NDArray[np.bool_] = np.any((rgba[..., 3] > 0).reshape(h // 2, 2, w), axis=1)
    used = np.any(pairs, axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate([[False], used, [False]]).astype(np.int8)))
    bands = []
    for first, last in zip(edges[::2], edges[1::2], strict=True):
        cols = np.flatnonzero(np.any(pairs[first:last], axis=0))
        left, right = int(cols[0]) // 2 * 2, (int(cols[-1]) // 2 + 1) * 2
        top, bottom = int(first) * 2, int(last) * 2
        inv, pre = [], []
        for plane, (alpha, value) in enumerate(zip(alphas, pres, strict=True)):
            k = 1 if plane == 0 else 2
            window = np.s_[top // k : bottom // k, left // k : right // k]
            inv.append(np.ascontiguousarray(256 - np.rint(alpha[window] * 256), np.uint16))
            pre.append(np.ascontiguousarray(np.rint(value[window] * 256) + 128, np.uint16))
        bands.append(Band(left, top, (inv[0], inv[1], inv[2]), (pre[0], pre[1], pre[2])))
    return YuvSprite(x=x, y=y, width=w, height=h, bands=tuple(bands))


def _blend(plane: U8, inv: U16, pre: U16, x: int, y: int, factor: int) -> None:
    """plane = (plane x inv + pre) >> 8 inside the band's box, clipped, in place; with a
    ``factor`` below 256 (fades), alpha and value are scaled by it first."""
    ph, pw = plane.shape
    h, w = inv.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, pw), min(y + h, ph)
    if x0 >= x1 or y0 >= y1:
        return
    sub = np.s_[y0 - y : y1 - y, x0 - x : x1 - x]
    region = plane[y0:y1, x0:x1]
    if factor >= 256:
        mixed = np.multiply(region, inv[sub], dtype=np.uint16)
        mixed += pre[sub]
    else:  # 32-bit: value x alpha x factor does not fit in 16
        f = np.uint32(factor)
        alpha = (np.uint32(256) - inv[sub]) * f + 128 >> 8
        mixed32 = region * (np.uint32(256) - alpha)
        mixed32 += ((pre[sub] - np.uint32(128)) * f + 128 >> 8) + 128
        mixed = mixed32
    mixed >>= 8
    np.copyto(region, mixed, casting="unsafe")


def blend_sprite(planes: tuple[U8, U8, U8], sprite: YuvSprite, alpha: float, dy: int = 0) -> None:
    """Blend ``sprite`` into Y, U, V planes at its place shifted by ``dy`` (even) pixels."""
    factor = min(256, round(alpha * 256))
    if factor <= 0:
        return
    for band in sprite.bands:
        x, y = sprite.x + band.x, sprite.y + dy + band.y
        for i, plane in enumerate(planes):
            k = 1 if i == 0 else 2
            _blend(plane, band.inv[i], band.pre[i], x // k, y // k, factor)


def planes_of(arr: U8, width: int, height: int) -> tuple[U8, U8, U8]:
    """Y, U and V views of a C-contiguous (height * 3/2, width) yuv420p array.

    The chroma planes follow the luma plane byte after byte, not row after row: a chroma
    plane spans a quarter of the luma bytes, which is a whole number of rows only when the
    height is a multiple of 4 (an output 34 pixels high has 17 rows of chroma)."""
    if not arr.flags.c_contiguous:
        raise ValueError("planes_of needs a C-contiguous array")
    h, w = height, width
    flat = arr.reshape(-1)
    luma, chroma = h * w, (h // 2) * (w // 2)
    return (
        arr[:h],
        flat[luma : luma + chroma].reshape(h // 2, w // 2),
        flat[luma + chroma : luma + 2 * chroma].reshape(h // 2, w // 2),
    )


def frame_pixels(frame: av.VideoFrame) -> U8:
    """A yuv420p frame's pixels as one (height * 3/2, width) array, copied once (PyAV's
    ``to_ndarray`` copies padded planes twice)."""
    w, h = frame.width, frame.height
    out = np.empty((h * 3 // 2, w), np.uint8)
    for src, dst in zip(frame_planes(frame), planes_of(out, w, h), strict=True):
        np.copyto(dst, src)
    return out


def to_frame(arr: U8, width: int, height: int) -> av.VideoFrame:
    """A (height * 3/2, width) yuv420p array as a frame: wrapped without a copy when the
    height is a multiple of 4, else copied plane by plane (PyAV's wrapper takes the height
    from the number of rows, rounded down to a multiple of 4)."""
    if height % 4 == 0:
        return av.VideoFrame.from_numpy_buffer(arr, format="yuv420p")
    frame, planes = new_frame(width, height)
    for src, dst in zip(planes_of(arr, width, height), planes, strict=True):
        np.copyto(dst, src)
    return frame


def frame_planes(frame: av.VideoFrame) -> tuple[U8, U8, U8]:
    """Writable Y, U and V views of a yuv420p frame's own buffers (rows of ``line_size``
    bytes, cut to the picture's width): drawing into them draws into the frame."""
    views = []
    for i, plane in enumerate(frame.planes):
        rows = frame.height if i == 0 else (frame.height + 1) // 2
        cols = frame.width if i == 0 else (frame.width + 1) // 2
        data = np.frombuffer(memoryview(plane), np.uint8)
        views.append(data[: rows * plane.line_size].reshape(rows, plane.line_size)[:, :cols])
    return views[0], views[1], views[2]


def new_frame(width: int, height: int) -> tuple[av.VideoFrame, tuple[U8, U8, U8]]:
    """A yuv420p frame in reference-counted buffers of its own (handed to an encoder
    without a copy), and writable views of its planes."""
    frame = av.VideoFrame(width, height, "yuv420p")
    return frame, frame_planes(frame)


def copy_frame(frame: av.VideoFrame) -> av.VideoFrame:
    """A yuv420p ``frame``'s pixels in a frame of their own."""
    out, planes = new_frame(frame.width, frame.height)
    for src, dst in zip(frame_planes(frame), planes, strict=True):
        np.copyto(dst, src)
    return out


def writable(frame: av.VideoFrame) -> av.VideoFrame:
    """``frame`` made safe to draw into: as it is when its buffers are its own alone, else
    (a decoder still holds them as a reference picture, or they are not reference-counted)
    a copy."""
    try:
        frame.make_writable()  # copies only when the buffers are shared
    except (av.error.FFmpegError, ValueError):  # buffers FFmpeg does not count: copy them
        return copy_frame(frame)
    return frame


def mix(bottom: U8, top: U8, weight: float) -> U8:
    """A crossfade between two same-shaped planes: ``top`` with ``weight`` over ``bottom``."""
    w = round(weight * 256)
    out = (bottom.astype(np.uint16) * (256 - w) + top.astype(np.uint16) * w + 128) >> 8
    return out.astype(np.uint8)


def darken(plane: U8, brightness: float, black: int) -> U8:
    """Fade a plane towards ``black`` (16 for luma, 128 for chroma) by ``brightness``."""
    b = round(brightness * 256)
    centred = plane.astype(np.int32) - black  # (255 - 16) * 256 does not fit in int16
    return np.clip(black + ((centred * b) >> 8), 0, 255).astype(np.uint8)
