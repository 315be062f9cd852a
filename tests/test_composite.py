"""Compositing: sprites blended exactly where they cover, and nothing else touched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from helpers import Output, job_dict
from PIL import Image

from examples.samples import make_clip
from gpu_worker.render.composite import (
    blend_sprite,
    copy_frame,
    frame_planes,
    new_frame,
    rgb_to_yuv709,
    to_yuv_sprite,
)


def two_lines() -> Image.Image:
    """A sprite like a two-line caption: two strips of soft-edged colour, a gap between."""
    image = Image.new("RGBA", (40, 24), (0, 0, 0, 0))
    for top, right in ((2, 36), (14, 20)):
        for x in range(4, right):
            alpha = 255 if 6 <= x < right - 2 else 90
            for y in range(top, top + 6):
                image.putpixel((x, y), (250, 180, 40, alpha))
    return image


def reference(background: np.ndarray, image: Image.Image, x: int, y: int, k: float) -> np.ndarray:
    """The luma of ``image`` over a flat luma ``background`` in floating point."""
    rgba = np.asarray(image, np.float64)
    luma = rgb_to_yuv709(rgba)[0].astype(np.float64)
    a = rgba[..., 3] / 255 * k
    out = background.astype(np.float64).copy()
    h, w = a.shape
    out[y : y + h, x : x + w] = out[y : y + h, x : x + w] * (1 - a) + luma * a
    return out


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.1])
def test_sprite_blends_within_one_level_and_touches_nothing_it_does_not_cover(
    alpha: float,
) -> None:
    rng = np.random.default_rng(7)
    _, planes = new_frame(64, 48)
    for plane in planes:
        plane[...] = rng.integers(16, 236, plane.shape, dtype=np.uint8)
    before = [p.copy() for p in planes]
    image = two_lines()
    sprite = to_yuv_sprite(image, 10, 8)
    # Two bands, one per line; the rows between the lines are in none.
    assert [(b.y, b.height) for b in sprite.bands] == [(2, 6), (14, 6)]

    blend_sprite(planes, sprite, alpha)

    expected = reference(before[0], image, 10, 8, alpha)
    assert np.abs(planes[0].astype(np.float64) - expected).max() <= 1.0
    covered = np.zeros((48, 64), bool)
    covered[8:32, 10:50] = np.asarray(image)[..., 3] > 0
    assert np.array_equal(planes[0][~covered], before[0][~covered])  # bit for bit
    # Chroma rows of the gap between the lines are untouched too.
    assert np.array_equal(planes[1][(8 + 8) // 2 : (8 + 14) // 2], before[1][8:11])


def test_sprite_moved_off_the_frame_is_clipped() -> None:
    _, planes = new_frame(32, 32)
    for plane in planes:
        plane[...] = 100
    sprite = to_yuv_sprite(two_lines(), 0, 0)
    blend_sprite(planes, sprite, 1.0, dy=-6)  # its first line (rows 2-8) cut by the top edge
    assert planes[0][0:2, 10:30].min() > 100  # what is left of the first line
    assert (planes[0][2:8] == 100).all()  # the gap
    assert planes[0][8:14, 10:16].min() > 100  # the second line
    assert (planes[0][14:] == 100).all()


def test_a_frame_copy_owns_its_pixels() -> None:
    frame, planes = new_frame(16, 16)
    planes[0][...] = 50
    copy = copy_frame(frame)
    frame_planes(copy)[0][...] = 200
    assert (planes[0] == 50).all()
    assert frame_planes(copy)[0].mean() == 200


def box_level(frame: np.ndarray) -> float:
    """Mean brightness inside the text's box (the middle of a 96x160 frame)."""
    return float(frame[70:90, 20:76].mean())


def test_a_source_frame_shown_several_times_gets_its_text_once(
    tmp_path: Path, render: Callable[..., tuple[Any, Output]]
) -> None:
    """A 10 fps clip in a 30 fps video shows each picture three times: each showing has the
    half-transparent box blended once, not once more per showing."""
    make_clip(tmp_path / "slow.mp4", width=96, height=160, fps=10, seconds=1, solid=(60, 60, 60))
    text = {
        "text": "Hi",
        "font": "Roboto",
        "size": 14,
        "background": {"color": "#FFFFFF80", "padding": 16},
    }
    data = job_dict([{"uri": "slow.mp4"}], texts=[text], output={"fps": 30})
    _, out = render(data)
    levels = [box_level(f) for f in out.frames]
    assert len(levels) == 30
    assert max(levels) - min(levels) < 3, levels
    # Half-way from grey 60 to white (~157): blended once, not twice (~206).
    assert 135 < levels[0] < 180


def test_a_frame_with_nothing_to_draw_reaches_the_encoder_untouched(tmp_path: Path) -> None:
    """No copy, no pixel changed, and the frame type left to the encoder."""
    from gpu_worker.job import parse_job
    from gpu_worker.render.pipeline import Inputs, prepare

    make_clip(tmp_path / "c.mp4", width=96, height=160, fps=10, seconds=1)
    job = parse_job(job_dict([{"uri": "c.mp4"}]))
    comp = prepare(job, Inputs(tmp_path))
    reader = comp.open_reader(0)
    try:
        fitted = reader.frame_at(0.0)
        assert fitted.pict_type != av.video.frame.PictureType.NONE  # a decoded I frame
        pixels = [p.copy() for p in frame_planes(fitted)]
        out = comp.compose(0, [(comp_layer(comp), fitted)], owned=True)
        assert out is fitted
        assert out.pict_type == av.video.frame.PictureType.NONE
        assert all(np.array_equal(a, b) for a, b in zip(pixels, frame_planes(out), strict=True))
    finally:
        reader.close()


def comp_layer(comp: Any) -> Any:
    from gpu_worker.render.timeline import layers_at

    return layers_at(comp.placements, 0.0)[0]
