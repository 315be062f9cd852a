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
class YuvSprite:
    """A sprite ready to blend: premultiplied planes (value x alpha) and alphas, 0..255 scale."""

    x: int  # even
    y: int  # even
    y_pre: U16  # (h, w)   Y * alpha
    alpha: U16  # (h, w)
    u_pre: U16  # (h/2, w/2)
    v_pre: U16
    alpha_half: U16

    @property
    def width(self) -> int:
        return int(self.alpha.shape[1])

    @property
    def height(self) -> int:
        return int(self.alpha.shape[0])


def to_yuv_sprite(image: Image.Image, x: int, y: int) -> YuvSprite:
    """Convert an RGBA sprite at even (x, y) with even size, once per job."""
    if x % 2 or y % 2 or image.width % 2 or image.height % 2:
        raise ValueError("sprites must sit on even coordinates with even sizes")
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
    a = rgba[..., 3] / 255.0
    yy, uu, vv = rgb_to_yuv709(rgba)
    h, w = a.shape
    a_half = a.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    u_pre = (uu * a).reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    v_pre = (vv * a).reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    def q(values: NDArray[np.floating]) -> U16:
        return np.rint(values).astype(np.uint16)

    return YuvSprite(
        x=x,
        y=y,
        y_pre=q(yy * a),
        alpha=q(a * 255),
        u_pre=q(u_pre),
        v_pre=q(v_pre),
        alpha_half=q(a_half * 255),
    )


def _blend(plane: U8, pre: U16, alpha: U16, x: int, y: int, factor: int) -> None:
    """plane = pre*f + plane*(1 - alpha*f) inside the sprite's box, clipped, in place.

    Integer maths in uint16: ``(v + 128 + ((v + 128) >> 8)) >> 8`` is ``round(v / 255)`` for
    every v up to 255*255, without a division.
    """
    ph, pw = plane.shape
    h, w = alpha.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, pw), min(y + h, ph)
    if x0 >= x1 or y0 >= y1:
        return
    sub_a = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
    sub_p = pre[y0 - y : y1 - y, x0 - x : x1 - x]
    if factor != 255:
        sub_a = _div255(sub_a * np.uint16(factor))
        sub_p = _div255(sub_p * np.uint16(factor))
    region = plane[y0:y1, x0:x1]
    mixed = region * (np.uint16(255) - sub_a)
    mixed = _div255(mixed)
    mixed += sub_p
    np.minimum(mixed, 255, out=mixed)  # rounding can reach 256 where alpha is full
    region[...] = mixed


def _div255(v: U16) -> U16:
    v = v + np.uint16(128)
    v += v >> 8
    v >>= 8
    return v


def blend_sprite(planes: tuple[U8, U8, U8], sprite: YuvSprite, alpha: float, dy: int = 0) -> None:
    """Blend ``sprite`` into Y, U, V planes at its place shifted by ``dy`` (even) pixels."""
    factor = round(alpha * 255)
    if factor <= 0:
        return
    factor = min(factor, 255)
    py, pu, pv = planes
    y = sprite.y + dy
    _blend(py, sprite.y_pre, sprite.alpha, sprite.x, y, factor)
    _blend(pu, sprite.u_pre, sprite.alpha_half, sprite.x // 2, y // 2, factor)
    _blend(pv, sprite.v_pre, sprite.alpha_half, sprite.x // 2, y // 2, factor)


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
    for plane, dst in zip(frame.planes, planes_of(out, w, h), strict=True):
        rows, cols = dst.shape
        src = np.frombuffer(memoryview(plane), np.uint8).reshape(rows, plane.line_size)[:, :cols]
        np.copyto(dst, src)
    return out


def to_frame(arr: U8, width: int, height: int) -> av.VideoFrame:
    """A (height * 3/2, width) yuv420p array as a frame: wrapped without a copy when the
    height is a multiple of 4, else copied plane by plane (PyAV's wrapper takes the height
    from the number of rows, rounded down to a multiple of 4)."""
    if height % 4 == 0:
        return av.VideoFrame.from_numpy_buffer(arr, format="yuv420p")
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, src in zip(frame.planes, planes_of(arr, width, height), strict=True):
        rows, cols = src.shape
        dst = np.frombuffer(memoryview(plane), np.uint8).reshape(rows, plane.line_size)
        np.copyto(dst[:, :cols], src)
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
