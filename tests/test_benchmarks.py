"""benchmarks/compare.py on a tiny reel: the ffmpeg command and MoviePy plan it builds, how it
measures a process tree, and its report (ours and the floor, one run each)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from helpers import load_benchmark

ROOT = Path(__file__).resolve().parent.parent
CLIP_SECONDS = 0.5
DIVISOR = 8  # 1080x1920 -> 136x240


compare = load_benchmark("compare")
reference = sys.modules["reference"]  # imported by compare from benchmarks/
FFMPEG = shutil.which("ffmpeg")
SIZE = (136, 240)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reel")
    return Path(reference.ensure_media(CLIP_SECONDS, folder=folder, divisor=DIVISOR))


@pytest.fixture
def plan(media: Path, tmp_path: Path) -> Any:
    job = reference.reference_job(
        media, tmp_path / "ours.mp4", clip_seconds=CLIP_SECONDS, size=SIZE
    )
    return compare.make_plan(job, CLIP_SECONDS)


def _graph(cmd: list[str]) -> str:
    return cmd[cmd.index("-filter_complex") + 1]


def test_tiny_media_and_job(media: Path) -> None:
    with av.open(str(media / "landscape-1920x1080-30.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (240, 136)
    job = reference.reference_job(media, media / "o.mp4", clip_seconds=CLIP_SECONDS, size=SIZE)
    assert [t.get("start", 0.0) for t in job["texts"]] == pytest.approx([0.5 / 12, 0.5, 1.0, 0.0])
    assert job["texts"][2]["end"] == pytest.approx(1.5)
    assert reference.reference_job(media, media / "o.mp4") == reference.reference_job(
        media, media / "o.mp4", 1, clip_seconds=6.0, size=(1080, 1920)
    )


def test_long_jobs_cycle_the_clips_and_trim_the_last(media: Path) -> None:
    clips = reference.reference_clips(media, seconds=20.0)
    assert len(clips) == 4
    assert [c.get("duration") for c in clips] == [None, None, None, 2.0]
    assert clips[3]["uri"] == clips[0]["uri"]
    assert len(reference.reference_clips(media, seconds=180.0)) == 30


def test_ffmpeg_command_structure(plan: Any, tmp_path: Path) -> None:
    cmd = compare.ffmpeg_command(plan, tmp_path / "out.mp4", tmp_path / "texts")
    graph = _graph(cmd)
    assert graph.count("drawtext=") == 4
    assert graph.count("force_original_aspect_ratio=increase,crop=136:240,fps=30") == 3
    assert "concat=n=3:v=1:a=0" in graph
    assert graph.count("textfile=") == 3  # every text but the plain ASCII watermark
    assert "borderw=" in graph and "shadowx=" in graph and "box=1" in graph
    assert "alpha='clip(" in graph and "enable='gte(t," in graph
    assert "afade=t=out" in graph and "-stream_loop" in cmd
    for flag, value in [("-preset", "veryfast"), ("-crf", "23"), ("-c:v", "libx264")]:
        assert cmd[cmd.index(flag) + 1] == value
    files = sorted((tmp_path / "texts").iterdir())
    assert len(files) == 3
    assert files[0].read_text(encoding="utf-8") == "\n".join(plan.texts[0].lines)
    assert len(plan.texts[1].lines) == 2
    for text in plan.texts:
        assert Path(text.font).is_file()
        assert f"fontfile={text.font}" in graph


def test_filter_values_are_escaped() -> None:
    assert compare.filter_value("/fonts/a.ttf") == "/fonts/a.ttf"
    assert compare.filter_value("gte(t,1)") == "'gte(t,1)'"
    assert compare.filter_value("C:/x.ttf") == "'C\\:/x.ttf'"
    assert compare.filter_value("it's") == "it\\\\\\'s"


@pytest.mark.skipif(FFMPEG is None, reason="no ffmpeg on the PATH")
def test_ffmpeg_command_draws_the_texts(plan: Any, tmp_path: Path) -> None:
    frames = []
    for texts in (True, False):
        out = tmp_path / f"out-{texts}.mp4"
        cmd = compare.ffmpeg_command(plan, out, tmp_path / "texts", ffmpeg=FFMPEG, texts=texts)
        subprocess.run(cmd, check=True, timeout=60)
        assert compare.check_output(out, 1.5, audio=True) == ""
        with av.open(str(out)) as c:
            frames.append([f.to_ndarray(format="gray").astype(float) for f in c.decode(video=0)])
    with_text, without = frames
    title = slice(int(0.1 * 240), int(0.3 * 240))  # the title, shown at 0.2 s
    assert np.abs(with_text[6][title] - without[6][title]).mean() > 3
    caption = slice(int(0.62 * 240), int(0.82 * 240))  # the caption's box, at 0.75 s
    assert (with_text[22][caption] < without[22][caption] - 10).mean() > 0.2


def test_moviepy_plan_and_args(plan: Any, tmp_path: Path) -> None:
    data = plan.to_json()
    assert len(data["texts"]) == 4 and len(data["clips"]) == 3
    assert data["encode"] == {
        "preset": "veryfast",
        "crf": 23,
        "audio_bitrate": "192k",
        "threads": 2,
    }
    assert all(Path(t["font"]).is_file() for t in data["texts"])
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(data))
    args = compare.moviepy_args(plan_file, tmp_path / "mp.mp4")
    assert Path(args[1]).name == "moviepy_reel.py" and Path(args[1]).is_file()
    if importlib.util.find_spec("moviepy") is None:
        pytest.skip("MoviePy is not installed")
    sample = compare.measure(args, cwd=tmp_path, tree=True)
    assert sample.ok, sample.note
    assert compare.check_output(tmp_path / "mp.mp4", 1.5, audio=True) == ""


def test_measure_counts_children(tmp_path: Path) -> None:
    child = "b = bytearray(150_000_000); import time; time.sleep(0.3)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    sample = compare.measure([sys.executable, "-c", parent], tree=True)
    assert sample.ok and sample.peak >= 150 and sample.cpu > 0
    failed = compare.measure([sys.executable, "-c", "raise SystemExit(3)"])
    assert not failed.ok and failed.note.startswith("exit 3")


def test_compare_ours_and_floor(media: Path, tmp_path: Path) -> None:
    md = tmp_path / "compare.md"
    argv = ["--only", "ours,floor", "--runs", "1", "--seconds", str(CLIP_SECONDS)]
    argv += ["--divisor", str(DIVISOR), "--media", str(media), "--work", str(tmp_path / "w")]
    assert compare.main([*argv, "--markdown", str(md)]) == 0
    report = md.read_text()
    assert "| gpu-worker render | 1/1 |" in report
    assert "| floor (decode, fit, encode) | 1/1 |" in report
    assert "| ours/floor wall time |" in report
    assert "| ours/ffmpeg wall time | — | ≤ 0.95 | not run |" in report
    assert "| ours/MoviePy wall time | — | ≤ 0.2 | not run |" in report
    assert "| ours peak memory |" in report
    assert "136x240 at 30 fps, 1.5 s" in report
