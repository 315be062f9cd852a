"""Footage as phones and cameras record it renders as a viewer expects: HDR tone-mapped to
SDR (patch colours as CIE ΔE), interlaced sources without comb teeth, non-square pixels
keeping round things round, sound that starts after the picture staying in sync."""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from colour_check import delta_e, oklab_hue, shown
from helpers import job_dict

from examples.footage import (
    make_disc_clip,
    make_hdr_clip,
    make_interlaced_clip,
    make_offset_clip,
    make_striped_clip,
)
from examples.samples import make_clip
from gpu_worker.errors import InvalidJob, UnsupportedInput
from gpu_worker.job import Fit
from gpu_worker.render.colour import ColourTags, plan_for
from gpu_worker.render.decoder import cuvid_options

Render = Callable[..., Any]
SIDE = 64  # pixels per colour patch
MID_GAIN = 0.83802  # BT.2446 method C: SDR = 0.838 x HDR display light below 69.85 cd/m²
# BT.2020 → BT.709 in linear light, to describe colours only BT.2020 holds.
BT2020_TO_BT709 = np.array(
    [[1.6605, -0.5876, -0.0728], [-0.1246, 1.1329, -0.0083], [-0.0182, -0.1006, 1.1187]]
)


def _patches(frame: np.ndarray, count: int) -> list[np.ndarray]:
    """The light a BT.1886 display shows at the centre of each patch."""
    mid = frame.shape[0] // 2
    return [
        shown(frame[mid - 4 : mid + 4, i * SIDE + 28 : i * SIDE + 36].mean(axis=(0, 1)))
        for i in range(count)
    ]


def _render_patches(render: Render, path: Path, count: int) -> list[np.ndarray]:
    data = job_dict([{"uri": str(path)}], output={"width": SIDE * count, "height": SIDE})
    _, out = render(data)
    return _patches(out.frames[1], count)


@pytest.mark.parametrize("transfer", ["HLG", "PQ"])
def test_hdr_is_tone_mapped_to_bt709(render: Render, tmp_path: Path, transfer: str) -> None:
    # cd/m² on the HDR display: mid grey, a skin tone, foliage, reference white, a highlight.
    patches = [[26, 26, 26], [40, 20, 10], [10, 30, 8], [203, 203, 203], [1000, 1000, 1000]]
    clip = make_hdr_clip(tmp_path / f"{transfer}.mp4", patches, transfer)
    got = _render_patches(render, clip, len(patches))
    for colour, seen in zip(patches[:3], got[:3], strict=True):
        expected = np.array(colour) * MID_GAIN / 100  # hue and saturation kept
        assert delta_e(seen, expected) < 3.0, (transfer, colour, seen, expected)
    white = np.ones(3)
    assert delta_e(got[3], white) < 2.5, got[3]  # reference white lands at SDR white
    assert delta_e(got[4], white) < 1.0, got[4]  # highlights roll off into white
    assert got[3][1] <= got[4][1] + 1e-6


def test_bright_saturated_highlights_keep_hue_and_saturation(
    render: Render, tmp_path: Path
) -> None:
    # A neon red and a sunlit sky blue, far above reference white: they roll off in
    # brightness, not into white.
    highlights = [[600.0, 40.0, 20.0], [80.0, 200.0, 700.0]]
    clip = make_hdr_clip(tmp_path / "neon.mp4", highlights, "HLG")
    got = _render_patches(render, clip, len(highlights))
    for colour, seen in zip(highlights, got, strict=True):
        source = np.array(colour)
        turn = (oklab_hue(seen) - oklab_hue(source) + 180) % 360 - 180
        assert abs(turn) < 4.0, (colour, seen, turn)
        assert seen.max() > 0.9  # as bright as SDR allows
        assert abs(seen.min() / seen.max() - source.min() / source.max()) < 0.05, seen


def test_bt2020_sdr_is_converted_to_bt709(render: Render, tmp_path: Path) -> None:
    # A 10-bit SDR BT.2020 clip (100 cd/m² white): colours must come out as they were.
    patches = [[13, 13, 13], [20, 10, 5], [5, 15, 4], [60, 30, 50]]
    clip = make_hdr_clip(tmp_path / "sdr2020.mp4", patches, "SDR")
    got = _render_patches(render, clip, len(patches))
    for colour, seen in zip(patches, got, strict=True):
        assert delta_e(seen, np.array(colour) / 100) < 3.0, (colour, seen)


def test_colours_outside_bt709_keep_their_hue(render: Render, tmp_path: Path) -> None:
    # BT.2020's own green and red primaries: no BT.709 colour matches them; they must lose
    # saturation, not turn another hue (clipping each channel would shift them).
    wide = [BT2020_TO_BT709 @ np.array(c) for c in ([0.0, 40.0, 0.0], [30.0, 0.0, 0.0])]
    clip = make_hdr_clip(tmp_path / "wide.mp4", wide, "HLG")
    got = _render_patches(render, clip, len(wide))
    for colour, seen in zip(wide, got, strict=True):
        turn = (oklab_hue(seen) - oklab_hue(colour) + 180) % 360 - 180
        assert abs(turn) < 4.0, (colour, seen, turn)
        assert (seen > 0.01).sum() >= 1


def test_untagged_hdr_gets_the_documented_defaults_and_a_log_line(
    render: Render, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # HLG with neither primaries nor matrix tagged: read as BT.2020, and said so.
    patches = [[26, 26, 26], [40, 20, 10]]
    clip = make_hdr_clip(
        tmp_path / "untagged.mp4", patches, "HLG", untagged=("primaries", "matrix")
    )
    with caplog.at_level(logging.INFO, logger="gpu_worker.render.colour"):
        got = _render_patches(render, clip, len(patches))
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "without colour primaries: read as BT.2020" in said
    assert "no colour matrix tag: read as BT.2020" in said
    for colour, seen in zip(patches, got, strict=True):
        assert delta_e(seen, np.array(colour) * MID_GAIN / 100) < 3.0


def test_untagged_matrix_is_judged_by_the_source_size_on_both_paths() -> None:
    # One decision per source, from its own size: NVDEC frames arrive resized, yet a 640x360
    # source stays BT.601 and a 1280x720 one BT.709 whatever the output size.
    assert plan_for(ColourTags(), 640, 360, "sd").in_matrix == "bt601"
    assert plan_for(ColourTags(), 1280, 720, "hd").in_matrix == "bt709"


def test_nvdec_cover_crop_follows_the_shown_shape() -> None:
    # HDV: 1440x1080 stored, 4:3 pixels, shown 1920x1080: a 1920x1080 cover needs no crop.
    options, w, h = cuvid_options(Fit.COVER, 0, 1440, 1080, 1920, 1080, sar=Fraction(4, 3))
    assert options["crop"] == "0x0x0x0" and (w, h) == (1920, 1080)
    # Shown 1080x1920 (vertical): keep the middle 1080/1920 x 1920 = 607.5 shown columns.
    options, _, _ = cuvid_options(Fit.COVER, 0, 1440, 1080, 1080, 1920, sar=Fraction(4, 3))
    top, bottom, left, right = (int(v) for v in options["crop"].split("x"))
    assert (top, bottom) == (0, 0)
    assert abs((1440 - left - right) * 4 / 3 - 1080 * 1080 / 1920) < 2
    options, _, _ = cuvid_options(Fit.CONTAIN, 0, 1920, 1080, 1080, 1920, deinterlace=True)
    assert options == {"deint": "adaptive", "drop_second_field": "1"}


def test_dolby_vision_without_base_layer_is_refused(render: Render, tmp_path: Path) -> None:
    clip = make_hdr_clip(
        tmp_path / "dv5.mp4",
        [[26, 26, 26]],
        "HLG",
        dolby_vision_tag=True,
        untagged=("primaries", "matrix", "transfer"),
    )
    with pytest.raises(UnsupportedInput, match="Dolby Vision"):
        render(job_dict([{"uri": str(clip)}]))


def test_dolby_vision_with_hlg_base_plays_as_hlg(render: Render, tmp_path: Path) -> None:
    # Profile 8.4 (iPhone): its HLG base layer is what is shown.
    patches = [[26, 26, 26], [40, 20, 10]]
    clip = make_hdr_clip(tmp_path / "dv84.mp4", patches, "HLG", dolby_vision_tag=True)
    got = _render_patches(render, clip, len(patches))
    for colour, seen in zip(patches, got, strict=True):
        assert delta_e(seen, np.array(colour) * MID_GAIN / 100) < 3.0


def _comb(frame: np.ndarray) -> float:
    """How much alternate lines disagree with their neighbours (comb teeth), 0-255."""
    luma = frame.astype(np.float64).mean(axis=2)
    inner = luma[1:-1]
    return float(np.abs(inner - (luma[:-2] + luma[2:]) / 2).max(axis=1).mean())


def test_interlaced_source_is_deinterlaced(render: Render, tmp_path: Path) -> None:
    clip = make_interlaced_clip(tmp_path / "interlaced.mp4")
    # As stored, each moving edge has teeth: a third of the lines disagree by ~127.
    import av

    with av.open(str(clip)) as source:
        raw = [f.to_ndarray(format="rgb24") for f in source.decode(video=0)]
    assert _comb(raw[5]) > 30
    _, out = render(job_dict([{"uri": str(clip)}], output={"width": 96, "height": 64}))
    for frame in out.frames[2:-1]:
        assert _comb(frame) < 12, _comb(frame)


def test_interlaced_source_keeps_its_field_rate(render: Render, tmp_path: Path) -> None:
    # 10 frames/s of 20 fields/s shown at 20 fps: every field becomes a frame, in the order
    # they were filmed, so the edge moves forward by half a frame's step each frame.
    clip = make_interlaced_clip(tmp_path / "interlaced.mp4")
    _, out = render(job_dict([{"uri": str(clip)}], output={"width": 96, "height": 64, "fps": 20}))
    edges = [int((f.astype(np.float64).mean(axis=2)[32] > 128).sum()) for f in out.frames]
    steps = np.diff(edges[1:-1])
    assert (steps > 0).all() and abs(float(np.median(steps)) - 3) <= 1, edges
    assert all(_comb(f) < 12 for f in out.frames[1:-1])


def test_progressive_source_is_untouched(render: Render, tmp_path: Path) -> None:
    clip = make_striped_clip(tmp_path / "stripes.mp4")
    _, out = render(job_dict([{"uri": str(clip)}], output={"width": 96, "height": 64}))
    rows = out.frames[1].astype(np.float64).mean(axis=(1, 2))
    assert rows[0::2].mean() - rows[1::2].mean() > 120  # one-line stripes survive


def _disc_shape(frame: np.ndarray) -> tuple[int, int]:
    bright = frame.astype(np.float64).mean(axis=2) > 128
    cols = np.flatnonzero(bright.any(axis=0))
    rows = np.flatnonzero(bright.any(axis=1))
    return int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


@pytest.mark.parametrize(
    ("fit", "width", "height", "rotation"),
    [
        ("contain", 96, 96, 0),
        ("contain", 160, 96, 0),
        ("cover", 160, 96, 0),
        ("cover", 96, 160, 0),
        ("cover", 96, 96, 90),
        ("contain", 160, 96, 270),
        ("blur", 96, 160, 0),
    ],
)
def test_non_square_pixels_keep_a_circle_round(
    render: Render, tmp_path: Path, fit: str, width: int, height: int, rotation: int
) -> None:
    # 72x96 stored with 4:3 pixels is shown 96x96 (HDV's 1440x1080 shown as 1920x1080).
    clip = make_disc_clip(tmp_path / "disc.mp4", sar=Fraction(4, 3), rotation=rotation)
    data = job_dict([{"uri": str(clip), "fit": fit}], output={"width": width, "height": height})
    _, out = render(data)
    frame = out.frames[1]
    if fit == "blur":  # the sharp picture: 96x96 in the middle; a blurred copy around it
        frame = frame[(height - 96) // 2 : (height + 96) // 2]
    w, h = _disc_shape(frame)
    assert abs(w - h) <= max(2, 0.05 * h), (w, h)  # squeezed, it would be 25 % narrower


def _flash_and_beep(out: Any) -> tuple[float, float]:
    brightness = [float(f.mean()) for f in out.frames]
    flash = out.times[int(np.argmax(brightness))]
    loud = np.flatnonzero(np.abs(out.audio[0]) > 0.1)
    return flash, loud[0] / out.audio_rate


@pytest.mark.parametrize(
    ("container", "trim"), [("mp4", 0.0), ("mov", 0.0), ("mpegts", 0.0), ("mp4", 0.3)]
)
def test_sound_that_starts_late_stays_with_its_picture(
    render: Render, tmp_path: Path, container: str, trim: float
) -> None:
    ext = {"mpegts": "ts"}.get(container, container)
    clip = make_offset_clip(tmp_path / f"offset.{ext}", container=container)
    data = job_dict([{"uri": str(clip), "trim_start": trim, "volume": 1.0}])
    _, out = render(data)
    flash, beep = _flash_and_beep(out)
    assert abs(flash - (1.0 - trim)) < 0.05
    assert abs(beep - flash) <= 0.1, (flash, beep)  # within one frame at 10 fps


def test_duration_past_the_source_end_is_refused(render: Render, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "one.mp4", width=96, height=160, fps=10, seconds=1.0)
    with pytest.raises(InvalidJob, match=r"clips\[0\].*lasts 1\.0\d+ s.*duration 1\.5 s"):
        render(job_dict([{"uri": str(clip), "duration": 1.5}]))
    # Less than a frame over is the last frame's own length: accepted.
    result, _ = render(job_dict([{"uri": str(clip), "duration": 1.05}]))
    assert result.frames >= 10
