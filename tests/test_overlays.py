"""Image overlays read back from the video: where the logo's pixels land and with what alpha,
SVGs drawn at the size shown, and bad pictures refused with the contract's codes."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import job_dict
from PIL import Image

from examples.samples import make_clip
from gpu_worker.errors import GpuWorkerError
from gpu_worker.job import parse_job
from gpu_worker.limits import Limits
from gpu_worker.render.pipeline import Inputs as PipelineInputs
from gpu_worker.render.pipeline import prepare, preview_frame, render_job


def black_clip(folder: Path, seconds: float = 0.5) -> Path:
    return make_clip(
        folder / "black.mp4",
        width=96,
        height=160,
        fps=10,
        seconds=seconds,
        solid=(0, 0, 0),
        audio_hz=None,
    )


def logo_png(path: Path) -> Path:
    """A 40x20 white logo: the left half at 50 % alpha, the right half opaque."""
    rgba = np.zeros((20, 40, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:, :20, 3] = 128
    rgba[:, 20:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def overlay_job(overlay: dict[str, Any], seconds: float = 0.5) -> dict[str, Any]:
    return job_dict([{"uri": "black.mp4", "duration": seconds}], overlays=[overlay])


def luma(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32).mean(axis=2)


def test_png_logo_pixels_where_placed_with_its_alpha(
    tmp_path: Path, render: Callable[..., Any]
) -> None:
    black_clip(tmp_path)
    logo_png(tmp_path / "logo.png")
    # Own pixels (40x20), its top-left corner at (24, 40).
    _, out = render(overlay_job({"uri": "logo.png", "x": 0.25, "y": 0.25, "anchor": "top-left"}))
    frame = luma(out.frames[2])
    assert frame[44:56, 26:42].mean() == pytest.approx(128, abs=10)  # 50 % white over black
    assert frame[44:56, 46:62].mean() > 240  # opaque white
    assert frame[:36].max() < 20 and frame[64:].max() < 20  # nothing above or below
    assert frame[:, :20].max() < 20 and frame[:, 68:].max() < 20  # nor left or right
    cols = np.nonzero(frame[50] > 60)[0]
    rows = np.nonzero(frame[:, 50] > 60)[0]
    assert (cols.min(), cols.max()) == (24, 63)
    assert (rows.min(), rows.max()) == (40, 59)
    spec = {"uri": "logo.png", "x": 0.25, "y": 0.25, "anchor": "top-left"}
    preview = preview_frame(parse_job(overlay_job(spec)), 0.2, base_dir=tmp_path)
    assert np.abs(luma(np.asarray(preview)) - frame).mean() < 2  # preview shows it too


def test_overlay_width_opacity_and_timing(tmp_path: Path, render: Callable[..., Any]) -> None:
    black_clip(tmp_path, 1.0)
    logo_png(tmp_path / "logo.png")
    spec = {"uri": "logo.png", "width": 0.5, "opacity": 0.5, "start": 0.3, "end": 0.7}
    _, out = render(overlay_job(spec, 1.0))
    before, during, after = (luma(out.frames[i]) for i in (2, 5, 8))
    assert before.max() < 20 and after.max() < 20
    # 48 px wide (half of 96), so 24 px high, centred: columns 24..71, rows 68..91.
    cols = np.nonzero(during[80] > 40)[0]
    rows = np.nonzero(during[:, 60] > 40)[0]
    assert (cols.min(), cols.max()) == (24, 71)
    assert (rows.min(), rows.max()) == (68, 91)
    assert during[74:86, 52:68].mean() == pytest.approx(128, abs=10)  # opaque half, at 50 %


SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 10">'
    '<rect width="40" height="10" fill="#FF0000"/><circle cx="20" cy="5" r="4" fill="#00FF00"/>'
    "</svg>"
)


def test_svg_drawn_at_the_size_shown(tmp_path: Path, render: Callable[..., Any]) -> None:
    black_clip(tmp_path)
    (tmp_path / "logo.svg").write_text(SVG)
    _, out = render(overlay_job({"uri": "logo.svg", "width": 0.75, "y": 0.1, "anchor": "top"}))
    frame = out.frames[2].astype(np.int16)
    red = (frame[..., 0] > 150) & (frame[..., 1] < 100)
    rows, cols = np.nonzero(red)
    # 72 x 18 px, centred horizontally (12..83), from row 16.
    assert cols.min() == 12 and cols.max() == 83
    assert rows.min() == 16 and rows.max() == 33
    green = (frame[..., 1] > 150) & (frame[..., 0] < 100)
    assert green[20:30, 44:52].all()  # the circle, sharp at the centre


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (its data holds almost nothing)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _embedded(data: bytes, mime: str = "image/png") -> str:
    uri = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        f'<image href="{uri}" width="10" height="10"/></svg>'
    )


@pytest.mark.parametrize(
    ("name", "content", "spec", "code"),
    [
        ("bomb-inside.svg", _embedded(_png_declaring(100_000, 100_000)), {}, "limit_exceeded"),
        ("wide-inside.svg", _embedded(_png_declaring(5000, 10)), {}, "limit_exceeded"),
        (
            "nested.svg",
            _embedded(
                b'<svg xmlns="http://www.w3.org/2000/svg"><image href="/etc/passwd"/></svg>',
                "image/svg+xml",
            ),
            {},
            "input_forbidden",
        ),
        (
            "stylesheet.svg",
            '<?xml-stylesheet href="https://example.com/s.css"?>'
            '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
            {},
            "input_forbidden",
        ),
        (
            "href.svg",
            '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
            ' width="10" height="10"><image xlink:href="file:///etc/hostname" width="10"'
            ' height="10"/></svg>',
            {},
            "input_forbidden",
        ),
        (
            "url.svg",
            '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            '<rect width="10" height="10" style="fill: url(https://example.com/p.svg#g)"/></svg>',
            {},
            "input_forbidden",
        ),
        (
            "relative.svg",
            '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            '<image href="other.png" width="10" height="10"/></svg>',
            {},
            "input_forbidden",
        ),
        (
            "entity.svg",
            '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaa">]>'
            '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&a;</text></svg>',
            {},
            "input_forbidden",
        ),
        ("bomb.png", _png_declaring(100_000, 100_000), {}, "limit_exceeded"),
        ("wide.png", _png_declaring(5000, 10), {}, "limit_exceeded"),
        ("text.png", b"hello, not a picture", {}, "unsupported_input"),
        ("ok.png", None, {"x": 1.0, "anchor": "top-left"}, "invalid_job"),  # right of the frame
        ("ok.png", None, {"y": 0.0, "anchor": "bottom"}, "invalid_job"),  # above it
        ("ok.png", None, {"start": 5.0}, "invalid_job"),  # after the video ends
        (
            "huge.svg",
            '<svg xmlns="http://www.w3.org/2000/svg" width="9000" height="10"/>',
            {},
            "limit_exceeded",
        ),
    ],
)
def test_bad_overlays_refused_before_any_frame(
    tmp_path: Path, name: str, content: str | bytes | None, spec: dict[str, Any], code: str
) -> None:
    black_clip(tmp_path)
    path = tmp_path / name
    if content is None:
        logo_png(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    job = parse_job(overlay_job({"uri": name, **spec}))
    with pytest.raises(GpuWorkerError) as caught:
        prepare(job, PipelineInputs(tmp_path), Limits())
    assert caught.value.code == code
    assert name.split(".")[0] in str(caught.value) or "overlays[0]" in str(caught.value)
    assert not (tmp_path / "out.mp4").exists()


def test_overlay_half_outside_is_cut_and_listed_as_input(tmp_path: Path) -> None:
    black_clip(tmp_path)
    logo_png(tmp_path / "logo.png")
    job = parse_job(overlay_job({"uri": "logo.png", "x": 0.0, "y": 0.0}))
    assert [(ref.uri, ref.label) for ref in job.inputs()][-1] == ("logo.png", "overlays[0]")
    comp = prepare(job, PipelineInputs(tmp_path), Limits())
    sprite = comp.overlays[0].sprite
    assert (sprite.x, sprite.y, sprite.width, sprite.height) == (0, 0, 20, 10)
    render_job(job, base_dir=tmp_path, output=tmp_path / "o.mp4")


def test_svg_with_an_embedded_picture_is_drawn(tmp_path: Path, render: Callable[..., Any]) -> None:
    black_clip(tmp_path)
    png = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 255, 0)).save(png, format="PNG")
    (tmp_path / "embed.svg").write_text(_embedded(png.getvalue()))
    _, out = render(overlay_job({"uri": "embed.svg", "width": 0.5}))
    frame = out.frames[2].astype(np.int16)
    green = (frame[..., 1] > 150) & (frame[..., 0] < 100)
    rows, cols = np.nonzero(green)
    assert (cols.min(), cols.max()) == (24, 71) and (rows.min(), rows.max()) == (56, 103)


def test_webp_with_alpha_like_png(tmp_path: Path, render: Callable[..., Any]) -> None:
    black_clip(tmp_path)
    with Image.open(logo_png(tmp_path / "logo.png")) as png:
        png.save(tmp_path / "logo.webp", lossless=True)
    _, out = render(overlay_job({"uri": "logo.webp", "x": 0.25, "y": 0.25, "anchor": "top-left"}))
    frame = luma(out.frames[2])
    assert frame[44:56, 26:42].mean() == pytest.approx(128, abs=10)
    assert frame[44:56, 46:62].mean() > 240


def test_overlay_count_limit(tmp_path: Path) -> None:
    black_clip(tmp_path)
    logo_png(tmp_path / "logo.png")
    job = parse_job(job_dict([{"uri": "black.mp4"}], overlays=[{"uri": "logo.png"}] * 3))
    with pytest.raises(GpuWorkerError) as caught:
        prepare(job, PipelineInputs(tmp_path), Limits(max_overlays=2))
    assert caught.value.code == "limit_exceeded"
