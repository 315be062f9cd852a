"""Wipes and slides read back from the video: a wipe's edge advances by the same number of
pixels each frame; a slide moves the outgoing and incoming pictures together."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import job_dict

from examples.samples import make_clip
from gpu_worker.job import parse_job
from gpu_worker.render.pipeline import preview_frame

W, H, FPS = 96, 160, 10


def clip(path: Path, **kw: Any) -> Path:
    return make_clip(path, width=W, height=H, fps=FPS, seconds=1.0, audio_hz=None, **kw)


def span(mask: np.ndarray) -> tuple[int, int]:
    """First and one-past-last index where ``mask`` holds (0, 0 when nowhere)."""
    where = np.nonzero(mask)[0]
    return (int(where[0]), int(where[-1]) + 1) if len(where) else (0, 0)


def transition_job(kind: str) -> dict[str, Any]:
    return job_dict(
        [{"uri": "a.mp4"}, {"uri": "b.mp4", "transition": {"type": kind, "duration": 0.8}}]
    )


@pytest.mark.parametrize("kind", ["wipe_left", "wipe_right", "wipe_up", "wipe_down"])
def test_wipe_edge_advances_evenly(tmp_path: Path, render: Callable[..., Any], kind: str) -> None:
    clip(tmp_path / "a.mp4", solid=(220, 30, 30))
    clip(tmp_path / "b.mp4", solid=(30, 30, 220))
    result, out = render(transition_job(kind))
    assert result.duration == pytest.approx(1.2)  # the two clips overlap by 0.8 s
    vertical = kind in ("wipe_up", "wipe_down")
    size = H if vertical else W
    edges = []
    for frame in out.frames[2:11]:  # 0.2 s to 1.0 s: the whole wipe
        line = frame[:, W // 2] if vertical else frame[H // 2]
        blue = line[:, 2].astype(int) > line[:, 0].astype(int)
        start, end = span(blue)
        towards_start = kind in ("wipe_left", "wipe_up")  # the new clip shows from the far side
        assert (end == size if towards_start else start == 0) or start == end
        assert blue.sum() == end - start  # one straight edge
        edges.append(end - start)
    step = size // 8
    assert edges == [k * step for k in range(9)]  # 12 (or 20) pixels every frame
    # preview shows the same frame, mid-wipe.
    preview = preview_frame(parse_job(transition_job(kind)), 0.6, base_dir=tmp_path)
    assert np.abs(np.asarray(preview).astype(int) - out.frames[6]).mean() < 3


SLIDES = {
    # kind: (vertical, red quarter's span at travel e, green's span at travel e)
    "slide_left": (False, lambda e: (0, max(0, 48 - e)), lambda e: (W - e, W)),
    "slide_right": (False, lambda e: (e, min(W, 48 + e)), lambda e: (0, e)),
    "slide_up": (True, lambda e: (0, max(0, 80 - e)), lambda e: (H - e, H)),
    "slide_down": (True, lambda e: (e, min(H, 80 + e)), lambda e: (0, e)),
}


@pytest.mark.parametrize("kind", list(SLIDES))
def test_slide_moves_both_pictures_together(
    tmp_path: Path, render: Callable[..., Any], kind: str
) -> None:
    clip(tmp_path / "a.mp4", marker=True)  # red top-left quarter, blue elsewhere
    clip(tmp_path / "b.mp4", solid=(30, 200, 30))
    _, out = render(transition_job(kind))
    vertical, red_at, green_at = SLIDES[kind]
    step = (H if vertical else W) // 8
    for k, frame in enumerate(out.frames[2:10]):
        line = frame[:, W // 4] if vertical else frame[H // 4]  # through the red quarter
        rgb = line.astype(int)
        red = (rgb[:, 0] > 150) & (rgb[:, 1] < 100) & (rgb[:, 2] < 100)
        green = (rgb[:, 1] > 150) & (rgb[:, 0] < 100)
        e = k * step
        got_red = span(red)
        expected_red = red_at(e)
        if expected_red[0] >= expected_red[1]:
            expected_red = (0, 0)
        assert got_red == expected_red, (k, got_red, expected_red)
        assert span(green) == (green_at(e) if e else (0, 0)), (k, span(green))
