"""benchmarks/compare.py on a tiny reel: the ffmpeg command and MoviePy plan it builds, how it
measures a process tree, how it reads ours's trace into stages, and its report (ours and the
floor, one run each, on the reel and the ten-clip job)."""

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


def _span(name: str, span_id: str, parent: str | None, seconds: float, **attrs: Any) -> str:
    return json.dumps(
        {"name": name, "trace_id": "t" * 32, "span_id": span_id, "parent_id": parent,
         "seconds": seconds, "attributes": attrs}
    )  # fmt: skip


def test_trace_read_into_stages(tmp_path: Path) -> None:
    cpu = "stage.cpu_seconds"
    lines = [
        _span("probe", "p", "root", 0.1, **{cpu: 0.05}),
        _span("render_text", "t", "root", 0.2, **{cpu: 0.2}),
        _span("decode", "d0", "root", 1.0, clip=0, **{cpu: 0.9}),
        _span("encode", "e0", "root", 2.0, clip=0, **{cpu: 0.5}),
        _span("decode", "d1", "root", 1.5, clip=1, **{cpu: 1.1}),
        _span("encode", "e1", "root", 2.5, clip=1, **{cpu: 0.5}),
        _span("composite", "c0", "root", 0.25, clip=0, **{cpu: 0.25}),
        _span("mux_audio", "m", "root", 0.5, **{cpu: 0.4}),
        _span("http.get", "x", "d0", 9.0),  # not a child of the root: not a stage
        "",
        _span("render_job", "root", None, 8.2,
              **{"job.render_seconds": 8.0, "job.render_cpu_seconds": 12.0}),
    ]  # fmt: skip
    trace = tmp_path / "trace.jsonl"
    trace.write_text("\n".join(lines) + "\n")
    stages = compare.read_stages(trace)
    assert set(stages) == {*compare.STAGES, "render_job"}
    assert stages["decode"].wall == pytest.approx(2.5)
    assert stages["decode"].cpu == pytest.approx(2.0)
    assert stages["encode"].wall == pytest.approx(4.5)
    assert stages["render_job"] == compare.StageTime(8.0, 12.0)

    sample = compare.Sample(wall=9.0, cpu=13.5, peak=100.0, ok=True)
    rows = compare.stage_rows(stages, sample)
    # 12.0 minus probe, render_text, decode, composite and mux_audio
    assert rows[compare.ENCODE_REST] == (None, pytest.approx(12.0 - 0.05 - 0.2 - 2.0 - 0.25 - 0.4))
    assert rows[compare.RENDER_ROW] == (8.0, 12.0)
    assert rows[compare.OUTSIDE] == (pytest.approx(1.0), pytest.approx(1.5))
    assert rows[compare.PROCESS] == (9.0, 13.5)

    other = {**rows, "decode": (3.5, 3.0), "gpu_upload": (0.1, None)}
    table = compare.median_rows([rows, other])
    assert [name for name, _, _ in table] == [
        *compare.STAGES, "gpu_upload", compare.ENCODE_REST, compare.RENDER_ROW,
        compare.OUTSIDE, compare.PROCESS,
    ]  # fmt: skip
    assert table[2] == ("decode", pytest.approx(3.0), pytest.approx(2.5))
    assert table[len(compare.STAGES)] == ("gpu_upload", pytest.approx(0.1), None)


def test_trace_without_cpu_attributes(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text(
        "\n".join(
            [
                _span("decode", "d", "root", 1.0, **{"stage.cpu_seconds": 0.8}),
                _span("decode", "d2", "root", 1.0),  # one clip without: the sum is unknown
                _span("encode", "e", "root", 2.0),
                _span("render_job", "root", None, 4.0),
            ]
        )
    )
    stages = compare.read_stages(trace)
    assert stages["decode"] == compare.StageTime(2.0, None)
    assert stages["render_job"] == compare.StageTime(4.0, None)
    rows = compare.stage_rows(stages, compare.Sample(wall=5.0, cpu=4.5, peak=1.0, ok=True))
    assert compare.ENCODE_REST not in rows
    assert rows[compare.OUTSIDE] == (1.0, None)


def test_ten_clip_scenario(media: Path, tmp_path: Path) -> None:
    args = compare.build_parser().parse_args(["--seconds", str(CLIP_SECONDS)])
    names = ["ours", "ffmpeg", "moviepy", "floor"]
    ten = compare.build_scenario("ten-clips", names, media, tmp_path, args, SIZE, FFMPEG)
    assert len(ten.plan.clips) == 10 and ten.plan.duration == pytest.approx(10 * CLIP_SECONDS)
    assert [c.name for c in ten.contenders] == ["ours", "ffmpeg", "floor"]
    assert set(ten.left_out) == {"moviepy"}
    assert "concat=n=10:v=1:a=0" in _graph(ten.contenders[1].argv)
    reel = compare.build_scenario("reel", names, media, tmp_path, args, SIZE, FFMPEG)
    assert len(reel.plan.clips) == 3 and not reel.left_out
    assert [c.name for c in reel.contenders] == names
    with pytest.raises(SystemExit, match="unknown scenario"):
        compare.main(["--scenarios", "reel,short"])


def _stage_value(report: str, section: str, row: str) -> list[str]:
    """The cells of ``row`` in the stage table of ``section``."""
    part = report.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    table = part.split("### Where ours spends its time", 1)[1]
    line = next(ln for ln in table.splitlines() if ln.startswith(f"| {row} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_compare_ours_and_floor(media: Path, tmp_path: Path) -> None:
    md = tmp_path / "compare.md"
    argv = ["--only", "ours,floor", "--runs", "1", "--seconds", str(CLIP_SECONDS)]
    argv += ["--divisor", str(DIVISOR), "--media", str(media), "--work", str(tmp_path / "w")]
    assert compare.main([*argv, "--markdown", str(md)]) == 0
    report = md.read_text()
    assert "- reel: 3 clips of 0.5 s, 1.5 s, 136x240 at 30 fps" in report
    assert "- ten-clips: 10 clips of 0.5 s, 5 s, 136x240 at 30 fps" in report
    assert "alternating (run 1 of each, then run 2 of each…)" in report
    for section in ("The reference reel (reel)", "The ten-clip job (ten-clips)"):
        body = report.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
        assert "| gpu-worker render | 1/1 |" in body
        assert "| floor (decode, fit, encode) | 1/1 |" in body
        assert "| ours/floor wall time |" in body
        assert "| ours/ffmpeg wall time | — | ≤ 1.00 | not run |" in body
        assert "| ours/ffmpeg CPU time | — | ≤ 1.00 | not run |" in body
        assert "| ours peak memory |" in body
        for row in ("decode", "encode", compare.PROCESS):
            wall, _cpu = _stage_value(report, section, row)
            assert float(wall) > 0
    assert "| ours/MoviePy wall time | — | ≤ 0.20 | not run |" in report
    assert len(list((tmp_path / "w" / "ten-clips" / "traces").glob("run*.jsonl"))) == 1


def test_composite_benchmark_reports_the_three_cases(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    composite = load_benchmark("composite")
    monkeypatch.setattr(composite.reference, "MEDIA", tmp_path)
    assert (
        composite.main(["--frames", "6", "--repeats", "1", "--divisor", "8", "--seconds", "0.5"])
        == 0
    )
    table = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ")][1:]
    assert [r[0].strip() for r in rows] == [
        "nothing to draw",
        "one sprite (the title)",
        "four sprites",
    ]
    covered = [int(r[1].replace(",", "")) for r in rows]
    assert covered[0] == 0 < covered[1] < covered[2]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)
