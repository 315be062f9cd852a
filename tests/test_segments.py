"""A render split into segments and joined: the same video as one render, frame for frame."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import job_dict, read_output, run_cli

from examples.samples import make_clip, make_music
from gpu_worker.job import parse_job
from gpu_worker.render.pipeline import render_job
from gpu_worker.render.segments import join_segments, plan_spans, render_segment

FPS = 10


def luma(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray").astype(float) for f in container.decode(video=0)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


def keyframes(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
    order = sorted(packets, key=lambda p: p.pts or 0)
    return [i for i, p in enumerate(order) if p.is_keyframe]


@pytest.fixture(scope="module")
def reel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """Two clips crossfading across a segment boundary, a text, looped music."""
    d = tmp_path_factory.mktemp("segments")
    make_clip(d / "a.mp4", width=96, height=160, fps=FPS, seconds=3.5, hue=0.1)
    make_clip(d / "b.mp4", width=120, height=160, fps=FPS, seconds=3.5, hue=0.6)
    make_music(d / "m.m4a", seconds=1.3)
    data = job_dict(
        [{"uri": "a.mp4"}, {"uri": "b.mp4", "transition": {"type": "crossfade", "duration": 1}}],
        texts=[{"text": "Hi", "font": "Roboto", "size": 24, "start": 1.5, "end": 4.5}],
        audio={"uri": "m.m4a", "loop": True},
        output={"poster": True},
    )
    return d, data


@pytest.fixture(scope="module")
def single_and_joined(reel: tuple[Path, dict[str, object]]) -> tuple[Path, Path, list[int]]:
    d, data = reel
    job = parse_job(json.loads(json.dumps(data)))
    single = render_job(job, base_dir=d, output=d / "single.mp4")
    spans = plan_spans(single.frames, FPS, 3, min_seconds=2)
    parts = [render_segment(job, s, base_dir=d, output=d / f"part{s.index}.mp4") for s in spans]
    join_segments(job, parts, base_dir=d, output=d / "joined.mp4", encoder=single.encoder)
    return d / "single.mp4", d / "joined.mp4", [s.start for s in spans]


def test_plan_cuts_on_the_keyframe_grid_and_never_below_the_minimum() -> None:
    spans = plan_spans(60 * 30, 30, 8)
    assert len(spans) == 8
    assert spans[0].start == 0 and spans[-1].stop == 1800
    assert all(a.stop == b.start for a, b in itertools.pairwise(spans))
    assert all(s.start % 60 == 0 and s.stop - s.start >= 4 * 30 for s in spans)
    assert len(plan_spans(60 * 30, 30, 100)) == 15  # 4 s at least: 15 segments of a minute
    assert len(plan_spans(7 * 30, 30, 8)) == 1  # too short to split
    assert plan_spans(9 * 30 + 7, 30, 2)[-1].stop == 9 * 30 + 7


def test_joined_video_matches_the_single_render(
    single_and_joined: tuple[Path, Path, list[int]],
) -> None:
    single, joined, starts = single_and_joined
    a, b = read_output(single), read_output(joined)
    assert len(starts) == 3
    assert len(b.frames) == len(a.frames) == 60
    assert b.duration == pytest.approx(a.duration, abs=1e-3)
    assert b.times == pytest.approx(a.times)
    # Within encoder noise everywhere, boundaries included (luma PSNR).
    worst = min(psnr(x, y) for x, y in zip(luma(single), luma(joined), strict=True))
    assert worst >= 40
    # Every segment starts on a keyframe of the joined file.
    assert set(starts) <= set(keyframes(joined))


def test_soundtrack_is_encoded_once_for_the_whole_timeline(
    single_and_joined: tuple[Path, Path, list[int]],
) -> None:
    single, joined, _ = single_and_joined
    a, b = read_output(single), read_output(joined)
    assert b.audio.shape == a.audio.shape
    assert np.array_equal(a.audio, b.audio)  # no click, no drift at the boundaries
    with av.open(str(joined)) as container:
        assert len(container.streams.audio) == 1


def test_joined_file_is_faststart_with_the_same_poster(
    single_and_joined: tuple[Path, Path, list[int]],
) -> None:
    single, joined, _ = single_and_joined
    head = joined.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (
        head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat")
    )
    assert single.with_suffix(".jpg").read_bytes() == joined.with_suffix(".jpg").read_bytes()


def test_cli_renders_in_processes(reel: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    d, data = reel
    (d / "job.json").write_text(json.dumps(data))
    run = run_cli(
        "render", str(d / "job.json"), "-o", str(tmp_path / "cli.mp4"), "--segments", "2", "--quiet"
    )
    assert run.returncode == 0, run.stderr
    out = read_output(tmp_path / "cli.mp4")
    assert len(out.frames) == 60
    assert out.audio.shape[1] == pytest.approx(6 * 48_000, abs=2048)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # segments removed


def test_the_service_splits_only_videos_longer_than_the_setting() -> None:
    from gpu_worker.service.segments import plan

    job = parse_job(json.loads(json.dumps(job_dict([{"uri": "a.mp4"}], output={"fps": 30}))))
    assert [(s.start, s.stop) for s in plan(job, 60 * 30, 12)] == [
        (0, 360),
        (360, 720),
        (720, 1080),
        (1080, 1440),
        (1440, 1800),
    ]
    assert len(plan(job, 60 * 30, 0)) == 1  # 0: off
    assert len(plan(job, 12 * 30, 12)) == 1  # not longer than the setting
    assert [s.stop - s.start for s in plan(job, 13 * 30, 12)] == [180, 210]
    assert len(plan(job, 7 * 30, 3)) == 1  # two segments would leave one under 4 s
    assert [s.stop - s.start for s in plan(job, 20 * 30, 4)] == [120] * 5
