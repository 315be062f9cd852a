"""Ken Burns motion: the window maths as tables, and a zoom read back from the video, its two
marks measured to sub-pixel as centroids, smooth where FFmpeg's ``zoompan`` shakes."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.filter
import numpy as np
import pytest
from helpers import job_dict
from PIL import Image

from gpu_worker.job import Easing, Fit, MotionKind, parse_job
from gpu_worker.render.motion import base_size, eased, window
from gpu_worker.render.pipeline import preview_frame

W, H, FPS, SECONDS, SCALE = 96, 160, 10, 2.0, 1.15
ZI, ZO = MotionKind.ZOOM_IN, MotionKind.ZOOM_OUT
PL, PR, PU, PD = MotionKind.PAN_LEFT, MotionKind.PAN_RIGHT, MotionKind.PAN_UP, MotionKind.PAN_DOWN


@pytest.mark.parametrize(
    ("kind", "p", "box"),
    [
        (ZI, 0.0, (0, 0, 100, 200)),
        (ZI, 1.0, (25, 50, 75, 150)),  # scale 2: half the size, centred
        (ZI, 0.5, (50 - 50 / 2**0.5, 100 - 100 / 2**0.5, 50 + 50 / 2**0.5, 100 + 100 / 2**0.5)),
        (ZO, 0.0, (25, 50, 75, 150)),
        (ZO, 1.0, (0, 0, 100, 200)),
        (PL, 0.0, (50, 50, 100, 150)),  # travels left, from the right edge
        (PL, 1.0, (0, 50, 50, 150)),
        (PR, 0.5, (25, 50, 75, 150)),
        (PR, 1.0, (50, 50, 100, 150)),
        (PU, 0.0, (25, 100, 75, 200)),
        (PU, 1.0, (25, 0, 75, 100)),
        (PD, 0.25, (25, 25, 75, 125)),
    ],
)
def test_window(kind: MotionKind, p: float, box: tuple[float, ...]) -> None:
    assert window(kind, 2.0, p, 100, 200) == pytest.approx(box)


def test_easing() -> None:
    assert [eased(p, Easing.LINEAR) for p in (0, 0.25, 1, 1.5)] == [0, 0.25, 1, 1]
    smooth = [eased(k / 10, Easing.EASE_IN_OUT) for k in range(11)]
    steps = np.diff(smooth)
    assert smooth[0] == 0 and smooth[5] == pytest.approx(0.5) and smooth[10] == pytest.approx(1)
    assert (steps > 0).all() and steps[0] < steps[4] and steps[-1] < steps[5]  # slow, fast, slow


@pytest.mark.parametrize(
    ("fit", "src", "base"),
    [
        (Fit.COVER, (4000, 3000), (1242, 2208)),  # a big photo: what the tightest window needs
        (Fit.COVER, (1920, 1080), (608, 1080)),  # a landscape video: its own pixels, no more
        (Fit.COVER, (1080, 1920), (1080, 1920)),
        (Fit.CONTAIN, (640, 480), (1242, 2208)),
        (Fit.BLUR, (4000, 3000), (1242, 2208)),
    ],
)
def test_base_size(fit: Fit, src: tuple[int, int], base: tuple[int, int]) -> None:
    assert base_size(fit, 1.15, *src, 1080, 1920) == base


def marks_photo(path: Path) -> Path:
    """A 192x320 photo (twice the output): two soft white marks 80 px apart on grey."""
    y, x = np.mgrid[0:320, 0:192].astype(np.float32)
    lum = np.full((320, 192), 40.0, np.float32)
    for cx in (56.0, 136.0):
        lum += 200 * np.exp(-((x - cx) ** 2 + (y - 160) ** 2) / (2 * 4.0**2))
    rgb = np.repeat(np.clip(lum, 0, 255)[..., None], 3, axis=2).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def mark_distance(frame: np.ndarray) -> float:
    """Horizontal distance between the two marks' centroids, to a fraction of a pixel."""
    lum = frame.astype(np.float64).mean(axis=2) if frame.ndim == 3 else frame.astype(np.float64)
    weights = np.clip(lum - np.median(lum) - 20, 0, None)
    cols = np.arange(lum.shape[1], dtype=np.float64)
    half = lum.shape[1] // 2
    centroids = []
    for part in (slice(0, half), slice(half, None)):
        mass = weights[:, part].sum(axis=0)
        centroids.append(float((mass * cols[part]).sum() / mass.sum()))
    return centroids[1] - centroids[0]


def zoompan_frames(photo: Path, frames: int) -> list[np.ndarray]:
    """The same zoom by FFmpeg's ``zoompan`` (crop on whole pixels, then scale)."""
    with av.open(str(photo)) as container:
        still = next(container.decode(video=0)).reformat(format="yuv420p")
    graph = av.filter.Graph()
    src = graph.add_buffer(
        width=still.width, height=still.height, format="yuv420p", time_base=Fraction(1, FPS)
    )
    zoom = (
        f"z='pow({SCALE},on/{frames})':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2'"
        f":d={frames}:s={W}x{H}:fps={FPS}"
    )
    pan = graph.add("zoompan", zoom)
    sink = graph.add("buffersink")
    src.link_to(pan)
    pan.link_to(sink)
    graph.configure()
    still.pts = 0
    graph.push(still)
    out: list[np.ndarray] = []
    while len(out) < frames:
        frame = graph.pull()
        assert isinstance(frame, av.VideoFrame)
        out.append(frame.to_ndarray(format="gray"))
    return out


def jitter(distances: list[float]) -> float:
    """How far the distance strays from a smooth curve: the largest second difference."""
    return float(np.abs(np.diff(distances, 2)).max())


@pytest.mark.parametrize("quality", ["standard", "high"])  # bilinear, bicubic
def test_zoom_in_grows_smoothly_where_zoompan_shakes(
    tmp_path: Path, render: Callable[..., Any], quality: str
) -> None:
    marks_photo(tmp_path / "photo.png")
    clip = {"uri": "photo.png", "duration": SECONDS, "motion": {"type": "zoom_in", "scale": SCALE}}
    _, out = render(job_dict([clip], output={"quality": quality}))
    ours = [mark_distance(f) for f in out.frames]
    n = len(ours)
    assert n == round(SECONDS * FPS)
    # The marks are 80 source px apart: 40 output px at first, 40 * 1.15 when fully zoomed.
    assert ours[0] == pytest.approx(40, abs=0.3)
    assert ours[-1] == pytest.approx(40 * SCALE ** ((n - 1) / n), abs=0.3)
    assert (np.diff(ours) > 0).all()  # grows every frame of the video
    # The pictures as composed, before the encoder's own noise: on the zoom's curve to a
    # tenth of a pixel (beside a constant bias of the measurement) and smooth to a few
    # hundredths, where zoompan, placing its crop on whole source pixels, steps unevenly.
    job = parse_job(job_dict([clip], output={"quality": quality}))
    composed = [
        mark_distance(np.asarray(preview_frame(job, k / FPS, base_dir=tmp_path))) for k in range(n)
    ]
    assert (np.diff(composed) > 0).all()
    off = np.array(composed) - 40 * SCALE ** (np.arange(n) / n)
    assert np.abs(off - off.mean()).max() < 0.1
    theirs = [mark_distance(f) for f in zoompan_frames(tmp_path / "photo.png", n)]
    print(f"jitter: ours {jitter(composed):.3f} px, zoompan {jitter(theirs):.3f} px")
    assert jitter(composed) < 0.06
    assert jitter(theirs) > 3 * jitter(composed), (jitter(composed), jitter(theirs))


def test_pan_moves_the_picture_at_constant_speed(
    tmp_path: Path, render: Callable[..., Any]
) -> None:
    marks_photo(tmp_path / "photo.png")
    clip = {"uri": "photo.png", "duration": SECONDS, "motion": {"type": "pan_right", "scale": 1.2}}
    _, out = render(job_dict([clip]))
    lefts = []
    for frame in out.frames:
        lum = frame.astype(np.float64).mean(axis=2)
        weights = np.clip(lum - np.median(lum) - 20, 0, None)[:, : W // 2]
        mass = weights.sum(axis=0)
        lefts.append(float((mass * np.arange(W // 2)).sum() / mass.sum()))
    steps = np.diff(lefts)
    # The window travels right: the picture moves left, by the same fraction of a pixel a frame.
    free = W * 1.2 - W  # output pixels the window travels
    assert steps.mean() == pytest.approx(-free / len(out.frames), abs=0.03)
    assert steps == pytest.approx(-free / len(out.frames), abs=0.2)  # the encoder's noise
    assert distance_kept(out.frames)


def distance_kept(frames: list[np.ndarray]) -> bool:
    """A pan keeps the marks' distance (the picture is enlarged by 1.2 throughout)."""
    distances = [mark_distance(f) for f in frames]
    return bool(np.allclose(distances, 40 * 1.2, atol=0.3))


def test_pan_on_a_rotated_phone_video(tmp_path: Path, render: Callable[..., Any]) -> None:
    # Filmed upright on a phone (stored turned), red in the top-left quarter as seen.
    from examples.samples import make_clip

    make_clip(
        tmp_path / "phone.mp4",
        width=W,
        height=H,
        fps=FPS,
        seconds=1.0,
        rotation=90,
        marker=True,
        audio_hz=None,
    )
    clip = {"uri": "phone.mp4", "motion": {"type": "pan_right", "scale": 2.0}}
    _, out = render(job_dict([clip]))
    red = [
        float(((f[..., 0] > 150) & (f[..., 2] < 100)).mean()) for f in out.frames
    ]  # fraction of the frame that is red
    # A window half as wide travels from the left half to the right half: at first the red
    # quarter fills the top half of the frame, then it slides out to the left.
    assert red[0] == pytest.approx(0.5, abs=0.03)
    assert red[-1] < 0.1
    assert (np.diff(red) < 0).all()
