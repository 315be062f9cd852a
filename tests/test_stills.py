"""Phone photos render as a viewer sees them: HEIC and AVIF accepted, EXIF orientation
(rotations and mirrors) honoured, a Display P3 profile converted to sRGB, not ignored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from colour_check import delta_e, shown
from helpers import job_dict

from examples.footage import display_p3_icc, make_photo

Render = Callable[..., Any]
W, H = 64, 96  # the photo, upright
# Linear Display P3 → linear sRGB/BT.709 (both D65).
P3_TO_SRGB = np.array([[1.2249, -0.2247, 0.0], [-0.0420, 1.0419, 0.0], [-0.0197, -0.0786, 1.0979]])


def _marker() -> np.ndarray:
    """Red top-left quarter, blue elsewhere: shows which way up a picture is."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[...] = (0, 0, 255)
    rgb[: H // 2, : W // 2] = (255, 0, 0)
    return rgb


def _upright(frame: np.ndarray) -> bool:
    h, w = frame.shape[:2]
    top_left = frame[h // 8 : h // 3, w // 8 : w // 3].reshape(-1, 3).mean(axis=0)
    bottom_right = frame[2 * h // 3 :, 2 * w // 3 :].reshape(-1, 3).mean(axis=0)
    top_right = frame[h // 8 : h // 3, 2 * w // 3 :].reshape(-1, 3).mean(axis=0)
    return bool(
        top_left[0] > 150 > top_left[2]
        and bottom_right[2] > 150 > bottom_right[0]
        and top_right[2] > 150 > top_right[0]
    )


def _render_photo(render: Render, path: Path) -> np.ndarray:
    data = job_dict([{"uri": str(path), "duration": 0.3}], output={"width": W, "height": H})
    _, out = render(data)
    return out.frames[1]


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heic_and_avif_photos_render(render: Render, tmp_path: Path, fmt: str) -> None:
    photo = make_photo(tmp_path / f"photo.{fmt.lower()}", _marker(), format=fmt)
    assert _upright(_render_photo(render, photo))


@pytest.mark.parametrize(
    ("orientation", "stored"),
    [
        (6, lambda rgb: np.rot90(rgb, k=1)),  # shown turned 90° clockwise (phone held upright)
        (3, lambda rgb: np.rot90(rgb, k=2)),
        (2, lambda rgb: rgb[:, ::-1]),  # mirrored (front camera)
    ],
)
def test_exif_orientation_is_honoured(
    render: Render, tmp_path: Path, orientation: int, stored: Callable[..., Any]
) -> None:
    rgb = np.ascontiguousarray(stored(_marker()))
    photo = make_photo(tmp_path / "photo.jpg", rgb, format="JPEG", orientation=orientation)
    assert _upright(_render_photo(render, photo))


def test_display_p3_photo_is_converted_to_srgb(render: Render, tmp_path: Path) -> None:
    p3 = np.array([200, 90, 70], np.uint8)
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[...] = p3
    photo = make_photo(tmp_path / "p3.jpg", rgb, format="JPEG", icc=display_p3_icc())
    seen = shown(_render_photo(render, photo)[H // 2 - 4 : H // 2 + 4, 24:40].mean(axis=(0, 1)))
    v = p3 / 255.0
    linear = P3_TO_SRGB @ np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    expected = shown(np.round(srgb * 255))
    assert delta_e(shown(p3), expected) > 4  # the profile matters: ignoring it shows
    assert delta_e(seen, expected) < 2.5, (seen, expected)
