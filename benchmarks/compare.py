"""Ours against what users would run instead, and against the floor, on two jobs: the reference
reel (three clips) and the ten-clip job (the same three inputs cycled into ten clips, 60 s).

    python benchmarks/compare.py                   # 3 runs each, Markdown to results/compare.md
    python benchmarks/compare.py --long            # also ours at 60 s and 180 s (memory)
    python benchmarks/compare.py --runs 1 --seconds 2 --only ours,floor --scenarios reel

Contenders, each a subprocess measured with ``os.wait4`` (wall time, user+system CPU, peak
RSS), run alternately within each scenario (run 1 of each, then run 2 of each…):

- ``ours``: ``gpu-worker render JOB --quiet`` with ``GPU_WORKER_ENCODER=x264``; before the
  timed runs, ``--traced-runs`` more with ``--trace-file RUN.jsonl`` give the time and CPU of
  each stage (tracing loads OpenTelemetry, which a plain render does not).
- ``ffmpeg``: the same composition as one ``ffmpeg`` command (``drawtext`` for the texts), when
  an ``ffmpeg`` binary is on the PATH (or given with ``--ffmpeg``).
- ``moviepy``: the same in MoviePy 2 (benchmarks/moviepy_reel.py), when it is installed; on
  the reel only (it is too slow for the longer job).
- ``floor``: the same decode, fit and encode with no text and no audio, through PyAV and the
  renderer's own filter graph (benchmarks/floor.py).

Every contender encodes libx264 ``veryfast`` crf 23 (AAC 192 kb/s where there is sound).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `reference` sits beside this file
    sys.path.insert(0, str(HERE))

import av  # noqa: E402
import reference  # noqa: E402
from PIL import ImageFont  # noqa: E402

from gpu_worker.render import fonts  # noqa: E402
from gpu_worker.render.text import wrap  # noqa: E402

RESULTS = HERE / "results"
CONTENDERS = ("ours", "ffmpeg", "moviepy", "floor")
SCENARIOS = {"reel": "The reference reel", "ten-clips": "The ten-clip job"}
TEN_CLIPS = 10
REEL_ONLY = {"moviepy": "reel only (too slow for the longer job)"}
PRESET, CRF, AUDIO_BITRATE = "veryfast", 23, "192k"
LONG_SECONDS = (60.0, 180.0)
MB = 1_000_000

# (name, numerator, denominator, metric, limit): ratio = numerator / denominator <= limit
RATIO_TARGETS = (
    ("ours/ffmpeg", "ours", "ffmpeg", "wall", 1.00),
    ("ours/ffmpeg", "ours", "ffmpeg", "cpu", 1.00),
    ("ours/floor", "ours", "floor", "wall", 1.05),
    ("ours/MoviePy", "ours", "moviepy", "wall", 0.2),
)
METRICS = {"wall": "wall", "cpu": "CPU"}
PEAK_TARGET_MB = 400.0
LONG_MEMORY_TOLERANCE = 0.10


# --------------------------------------------------------------------------------------------
# the composition, in the terms every contender needs


@dataclass(frozen=True)
class TextPlan:
    text: str
    lines: list[str]  # as our renderer wraps it
    wrap_width: int  # pixels
    font: str  # font file
    size: float
    color: list[int]  # RGBA 0..255
    opacity: float
    x: float  # fractions of the frame
    y: float
    anchor: tuple[float, float]  # where (x, y) sits in the text block, as fractions
    stroke: dict[str, Any] | None  # width, color
    shadow: dict[str, Any] | None  # dx, dy, color
    box: dict[str, Any] | None  # color, padding
    start: float
    end: float
    fade: float  # seconds of fade in and out; 0 for none


@dataclass(frozen=True)
class Plan:
    """The reference job resolved: clip files, texts with their font files and line breaks."""

    width: int
    height: int
    fps: int
    duration: float
    clips: list[tuple[str, float | None]]  # path, duration (None: the whole clip)
    texts: list[TextPlan]
    music: dict[str, Any] | None  # path, volume, fade_out

    def to_json(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "duration": self.duration,
            "clips": [{"path": p, "duration": d} for p, d in self.clips],
            "texts": [t.__dict__ for t in self.texts],
            "music": self.music,
            "encode": {"preset": PRESET, "crf": CRF, "audio_bitrate": AUDIO_BITRATE, "threads": 2},
        }


_ANCHORS = {
    "top-left": (0.0, 0.0),
    "top": (0.5, 0.0),
    "top-right": (1.0, 0.0),
    "left": (0.0, 0.5),
    "center": (0.5, 0.5),
    "right": (1.0, 0.5),
    "bottom-left": (0.0, 1.0),
    "bottom": (0.5, 1.0),
    "bottom-right": (1.0, 1.0),
}


def rgba(color: str) -> list[int]:
    """``#RRGGBB`` or ``#RRGGBBAA`` as [r, g, b, a]."""
    value = color.lstrip("#")
    if len(value) == 6:
        value += "FF"
    return [int(value[i : i + 2], 16) for i in range(0, 8, 2)]


def make_plan(job: dict[str, Any], clip_seconds: float) -> Plan:
    """The job dict (benchmarks/reference.py) resolved for the other contenders."""
    out = job["output"]
    width, height = out["width"], out["height"]
    clips = [(c["uri"], c.get("duration")) for c in job["clips"]]
    duration = sum(d if d is not None else clip_seconds for _, d in clips)
    texts = []
    for spec in job["texts"]:
        face = fonts.resolve(spec["font"], spec.get("weight", 400), spec.get("italic", False))
        font = ImageFont.truetype(str(face.path), spec["size"], layout_engine=ImageFont.Layout.RAQM)
        wrap_width = spec.get("max_width", 0.9) * width
        animation = spec.get("animation", {})
        fades = animation.get("in", "none") != "none" or animation.get("out", "none") != "none"
        stroke = spec.get("stroke")
        shadow = spec.get("shadow")
        box = spec.get("background")
        texts.append(
            TextPlan(
                text=spec["text"],
                lines=wrap(spec["text"], font.getlength, wrap_width),
                wrap_width=round(wrap_width),
                font=str(face.path),
                size=spec["size"],
                color=rgba(spec.get("color", "#FFFFFF")),
                opacity=spec.get("opacity", 1.0),
                x=spec.get("x", 0.5),
                y=spec.get("y", 0.5),
                anchor=_ANCHORS[spec.get("anchor", "center")],
                stroke={"width": stroke["width"], "color": rgba(stroke["color"])}
                if stroke
                else None,
                shadow=(
                    {"dx": shadow["dx"], "dy": shadow["dy"], "color": rgba(shadow["color"])}
                    if shadow
                    else None
                ),
                box={"color": rgba(box["color"]), "padding": box["padding"]} if box else None,
                start=spec.get("start", 0.0),
                end=spec.get("end") or duration,
                fade=animation.get("duration", 0.5) if fades else 0.0,
            )
        )
    audio = job.get("audio")
    music = (
        {"path": audio["uri"], "volume": audio["volume"], "fade_out": audio["fade_out"]}
        if audio
        else None
    )
    return Plan(width, height, out["fps"], duration, clips, texts, music)


# --------------------------------------------------------------------------------------------
# the ffmpeg command


def _escape(value: str, chars: str) -> str:
    return "".join("\\" + c if c in chars else c for c in value)


def filter_value(value: str) -> str:
    """An option value safe inside ``-filter_complex``: as is when plain, else escaped for the
    option parser (``\\ ' :``) and quoted (or, holding a quote, escaped) for the graph parser."""
    if not any(c in value for c in "\\':,;[] \t\n"):
        return value
    inner = _escape(value, "\\':")
    if "'" not in inner:
        return f"'{inner}'"
    return _escape(inner, "\\'[],;")


def shell_join(argv: Sequence[str]) -> str:
    """``argv`` as a shell command to read and paste: double quotes where an argument holds
    single quotes (a filter graph), ``shlex`` quoting elsewhere."""
    parts = []
    for arg in argv:
        if "'" in arg and not any(c in arg for c in '"$`\\!'):
            parts.append(f'"{arg}"')
        else:
            parts.append(shlex.quote(arg))
    return " ".join(parts)


def _color(rgba_: Sequence[int], alpha: float = 1.0) -> str:
    r, g, b, a = rgba_
    return f"0x{r:02X}{g:02X}{b:02X}@{a / 255 * alpha:.3g}"


def _num(value: float) -> str:
    return f"{value:.6g}"


def drawtext(text: TextPlan, textfile: Path | None) -> str:
    """One ``drawtext`` filter for ``text``: the line breaks our renderer chose, its font file,
    stroke (border), shadow, box, fades (an alpha expression) and timing."""
    opts = [f"fontfile={filter_value(text.font)}"]
    body = "\n".join(text.lines)
    if textfile is not None:
        textfile.write_text(body, encoding="utf-8")
        opts += [f"textfile={filter_value(str(textfile))}", "expansion=none"]
    else:
        opts += [f"text={filter_value(body)}", "expansion=none"]
    opts.append(f"fontsize={_num(text.size)}")
    opts.append(f"fontcolor={_color(text.color)}")
    fx, fy = text.anchor
    opts.append(f"x={filter_value(f'w*{_num(text.x)}-tw*{_num(fx)}')}")
    opts.append(f"y={filter_value(f'h*{_num(text.y)}-th*{_num(fy)}')}")
    if text.stroke:
        opts += [
            f"borderw={round(text.stroke['width'])}",
            f"bordercolor={_color(text.stroke['color'])}",
        ]
    if text.shadow:
        opts += [
            f"shadowx={round(text.shadow['dx'])}",
            f"shadowy={round(text.shadow['dy'])}",
            f"shadowcolor={_color(text.shadow['color'])}",
        ]
    if text.box:
        opts += [
            "box=1",
            f"boxcolor={_color(text.box['color'])}",
            f"boxborderw={round(text.box['padding'])}",
        ]
    s, e, d = _num(text.start), _num(text.end), _num(text.fade)
    if text.fade > 0:
        fade = f"clip(min((t-{s})/{d},({e}-t)/{d}),0,1)"
        opts.append(
            f"alpha={filter_value(fade if text.opacity >= 1 else f'{fade}*{text.opacity}')}"
        )
    elif text.opacity < 1:
        opts.append(f"alpha={_num(text.opacity)}")
    opts.append(f"enable={filter_value(f'gte(t,{s})*lt(t,{e})')}")
    return "drawtext=" + ":".join(opts)


def _needs_textfile(text: str) -> bool:
    return any(not (c.isascii() and (c.isalnum() or c in " .-_")) for c in text)


def ffmpeg_command(
    plan: Plan, output: Path, textdir: Path, *, ffmpeg: str = "ffmpeg", texts: bool = True
) -> list[str]:
    """The reel as one ffmpeg command, the way its users write it: every clip scaled to cover,
    cropped, taken to the output rate, concatenated; four ``drawtext`` filters; the music
    looped, at its volume, faded out; libx264 veryfast crf 23 and AAC. Texts other than plain
    ASCII go through ``textfile=`` files written into ``textdir`` (no escaping to get wrong)."""
    w, h, fps = plan.width, plan.height, plan.fps
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    for path, duration in plan.clips:
        if duration is not None:
            cmd += ["-t", _num(duration)]
        cmd += ["-i", path]
    graph = []
    for i in range(len(plan.clips)):
        graph.append(
            f"[{i}:v]scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},"
            f"fps={fps},setsar=1,format=yuv420p[v{i}]"
        )
    joined = "".join(f"[v{i}]" for i in range(len(plan.clips)))
    last = "base"
    graph.append(f"{joined}concat=n={len(plan.clips)}:v=1:a=0[{last}]")
    if texts and plan.texts:
        textdir.mkdir(parents=True, exist_ok=True)
        filters = []
        for i, text in enumerate(plan.texts):
            file = textdir / f"text{i}.txt" if _needs_textfile(text.text) else None
            filters.append(drawtext(text, file))
        graph.append(f"[{last}]" + ",".join(filters) + "[vout]")
        last = "vout"
    maps = ["-map", f"[{last}]"]
    if plan.music is not None:
        music = plan.music
        cmd += ["-stream_loop", "-1", "-i", music["path"]]
        chain = f"volume={_num(music['volume'])}"
        if music["fade_out"] > 0:
            start = plan.duration - music["fade_out"]
            chain += f",afade=t=out:st={_num(start)}:d={_num(music['fade_out'])}"
        graph.append(f"[{len(plan.clips)}:a]{chain}[aout]")
        maps += ["-map", "[aout]"]
    cmd += ["-filter_complex", ";".join(graph), *maps]
    cmd += ["-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-pix_fmt", "yuv420p"]
    if plan.music is not None:
        cmd += ["-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", "48000"]
    cmd += ["-t", _num(plan.duration), "-movflags", "+faststart", str(output)]
    return cmd


def moviepy_args(plan_file: Path, output: Path, python: str = sys.executable) -> list[str]:
    return [python, str(HERE / "moviepy_reel.py"), str(plan_file), str(output)]


def floor_args(job_file: Path, output: Path, python: str = sys.executable) -> list[str]:
    return [python, str(HERE / "floor.py"), str(job_file), str(output)]


def ours_args(job_file: Path, output: Path) -> list[str]:
    exe = Path(sys.executable).parent / "gpu-worker"
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "gpu_worker"]
    return [*head, "render", str(job_file), "-o", str(output), "--quiet"]


# --------------------------------------------------------------------------------------------
# measuring one process (and its children)


@dataclass
class Sample:
    wall: float  # seconds
    cpu: float  # user + system seconds, the process and the children it waited for
    peak: float  # MB (10^6 bytes)
    ok: bool
    note: str = ""


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return found


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants now."""
    page = os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        todo += _children(p)
    return total


class _TreeSampler(threading.Thread):
    """Polls the summed RSS of a process tree (a process's ``ru_maxrss`` does not add its
    children's memory to its own, nor say whether they ran at the same time)."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak = pid, every, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, _tree_rss(self.pid))
            self.done.wait(self.every)


def measure(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    tree: bool = False,
    log: Path | None = None,
) -> Sample:
    """Run ``argv`` to its end. ``tree``: peak memory is the most the process and its
    descendants held at once (sampled every 50 ms), or the largest single ``ru_maxrss`` if
    that is more."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=err, stderr=err
        )
        sampler = _TreeSampler(proc.pid) if tree else None
        if sampler is not None:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if sampler is not None:
            sampler.done.set()
            sampler.join()
        err.seek(0)
        text = err.read().decode(errors="replace")
    if log is not None:
        log.write_text(text)
    peak = usage.ru_maxrss * 1024  # KiB on Linux
    if sampler is not None:
        peak = max(peak, sampler.peak)
    note = "" if proc.returncode == 0 else f"exit {proc.returncode}: {text.strip()[-600:]}"
    return Sample(wall, usage.ru_utime + usage.ru_stime, peak / MB, proc.returncode == 0, note)


def check_output(path: Path, seconds: float, audio: bool) -> str:
    """'' when ``path`` is a video of about ``seconds`` (with sound when ``audio``), else why."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return "no video stream"
            if audio and not c.streams.audio:
                return "no audio stream"
            v = c.streams.video[0]
            length = float(v.duration * v.time_base) if v.duration and v.time_base else 0.0
            length = length or (c.duration or 0) / av.time_base
    except (OSError, av.error.FFmpegError) as exc:
        return f"unreadable output: {exc}"
    if abs(length - seconds) > 0.2:
        return f"lasts {length:.2f} s, not {seconds:.2f} s"
    return ""


# --------------------------------------------------------------------------------------------
# where ours spends its time: its trace files

ROOT_SPAN = "render_job"
STAGES = ("probe", "render_text", "decode", "composite", "encode", "mux_audio")
STAGE_CPU = "stage.cpu_seconds"  # CPU of the thread that did the stage's work
RENDER_CPU = "job.render_cpu_seconds"  # process CPU from the first stage to the result
RENDER_SECONDS = "job.render_seconds"  # the same interval's wall time
ENCODE_REST = "encode, x264 threads and the frame loop"
RENDER_ROW = "render (first stage to result)"
OUTSIDE = "start-up and exit (outside the render)"
PROCESS = "whole process (wait4)"
ROW_ORDER = (*STAGES, ENCODE_REST, RENDER_ROW, OUTSIDE, PROCESS)

Row = tuple[float | None, float | None]  # (wall, CPU) seconds; None: not measured


@dataclass(frozen=True)
class StageTime:
    wall: float  # seconds, the spans' lengths summed
    cpu: float | None  # their CPU seconds summed; None where a span does not carry it


def _plus(a: StageTime | None, b: StageTime) -> StageTime:
    if a is None:
        return b
    cpu = a.cpu + b.cpu if a.cpu is not None and b.cpu is not None else None
    return StageTime(a.wall + b.wall, cpu)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def read_stages(path: Path) -> dict[str, StageTime]:
    """One render's trace file (``--trace-file``: a finished span a JSON line) by stage: each
    child span of the ``render_job`` root summed by name (decode, composite and encode come once
    per clip) with its ``stage.cpu_seconds``, and under ``render_job`` the render itself: its
    ``job.render_seconds`` (the span's length where absent) and ``job.render_cpu_seconds``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    spans = [json.loads(line) for line in lines if line.strip()]
    roots = {s["span_id"] for s in spans if s.get("name") == ROOT_SPAN}
    found: dict[str, StageTime] = {}
    for span in spans:
        attrs = span.get("attributes") or {}
        if span.get("name") == ROOT_SPAN:
            wall = attrs.get(RENDER_SECONDS, span["seconds"])
            time_ = StageTime(float(wall), _number(attrs.get(RENDER_CPU)))
        elif span.get("parent_id") in roots:
            time_ = StageTime(float(span["seconds"]), _number(attrs.get(STAGE_CPU)))
        else:
            continue
        found[span["name"]] = _plus(found.get(span["name"]), time_)
    return found


def _cpu_of(stages: dict[str, StageTime], names: Sequence[str]) -> float | None:
    """The CPU of ``names`` summed (a stage that did not run counts 0); None if one lacks it."""
    total = 0.0
    for name in names:
        cpu = stages[name].cpu if name in stages else 0.0
        if cpu is None:
            return None
        total += cpu
    return total


def stage_rows(stages: dict[str, StageTime], sample: Sample) -> dict[str, Row]:
    """One run's rows of the "where ours spends its time" table: the stages, then what the
    render's CPU holds beyond the other stages' threads, the render, what the process spent
    outside it (``sample``, from ``wait4``) and the whole process."""
    rows: dict[str, Row] = {n: (t.wall, t.cpu) for n, t in stages.items() if n != ROOT_SPAN}
    root = stages.get(ROOT_SPAN)
    if root is not None:
        others = _cpu_of(stages, [n for n in STAGES if n != "encode"])
        if root.cpu is not None and others is not None:
            rows[ENCODE_REST] = (None, root.cpu - others)
        rows[RENDER_ROW] = (root.wall, root.cpu)
        outside_cpu = sample.cpu - root.cpu if root.cpu is not None else None
        rows[OUTSIDE] = (sample.wall - root.wall, outside_cpu)
    rows[PROCESS] = (sample.wall, sample.cpu)
    return rows


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def median_rows(runs: Sequence[dict[str, Row]]) -> list[tuple[str, float | None, float | None]]:
    """Each row's median wall and CPU over the runs, in table order (stages first)."""
    names = list(dict.fromkeys(n for run in runs for n in run))
    last_stage = len(STAGES) - 0.5  # an unknown child span goes after the known stages
    names.sort(key=lambda n: ROW_ORDER.index(n) if n in ROW_ORDER else last_stage)
    return [
        (
            name,
            _median([run[name][0] for run in runs if name in run]),
            _median([run[name][1] for run in runs if name in run]),
        )
        for name in names
    ]


# --------------------------------------------------------------------------------------------
# the benchmark


@dataclass
class Contender:
    name: str
    label: str
    argv: list[str]
    output: Path
    audio: bool
    env: dict[str, str] | None = None
    cwd: Path | None = None
    tree: bool = False
    trace_dir: Path | None = None  # where each run writes its trace file (ours)
    samples: list[Sample] = field(default_factory=list)
    stages: list[dict[str, Row]] = field(default_factory=list)  # one per traced run

    def median(self, metric: str) -> float | None:
        values = [getattr(s, metric) for s in self.samples if s.ok]
        return statistics.median(values) if values else None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _first_line(argv: list[str]) -> str:
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({exc})"
    return (run.stdout or run.stderr).strip().splitlines()[0] if run.returncode == 0 else "?"


def machine_info(ffmpeg: str | None) -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    libs = ", ".join(f"{k} {'.'.join(map(str, v))}" for k, v in av.library_versions.items())
    info = {
        "CPU": cpu,
        "cores": f"{usable} usable of {os.cpu_count()}",
        "load average at start": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "memory": _meminfo(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "PyAV": f"{av.__version__} ({libs})",
        "ffmpeg CLI": _first_line([ffmpeg, "-version"]) if ffmpeg else "not found",
        "MoviePy": _version("moviepy") or "not installed",
    }
    if _version("imageio-ffmpeg"):
        try:
            import imageio_ffmpeg

            ffv = imageio_ffmpeg.get_ffmpeg_version()
        except Exception as exc:  # its binary may be missing on some platforms
            ffv = f"? ({exc})"
        info["MoviePy's ffmpeg"] = f"imageio-ffmpeg {_version('imageio-ffmpeg')}, ffmpeg {ffv}"
    return info


def _meminfo() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="gpu-worker against one ffmpeg command, MoviePy and the decode+encode floor",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each contender (default 3)")
    parser.add_argument(
        "--traced-runs",
        type=int,
        default=1,
        help="extra runs of ours with --trace-file, after the timed ones, for the stage table "
        "(default 1; the timed runs are not traced)",
    )
    parser.add_argument(
        "--only", help=f"comma-separated contenders (default all available: {','.join(CONTENDERS)})"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated jobs to run (default {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=reference.CLIP_SECONDS,
        help="length of each clip (default 6: an 18 s reel, a 60 s ten-clip job; shorter for "
        "quick development)",
    )
    parser.add_argument(
        "--divisor",
        type=int,
        default=1,
        help="divide every picture side by this (tests; default 1: the real reel)",
    )
    parser.add_argument("--long", action="store_true", help="also ours at 60 s and 180 s, once")
    parser.add_argument(
        "--long-seconds",
        default=",".join(f"{s:g}" for s in LONG_SECONDS),
        help="video lengths of the --long runs (default 60,180)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=RESULTS / "compare.md",
        help="Markdown report (default benchmarks/results/compare.md)",
    )
    parser.add_argument("--media", type=Path, help="where the inputs are generated and reused")
    parser.add_argument("--work", type=Path, help="outputs and job files (default: a temp dir)")
    parser.add_argument("--ffmpeg", help="the ffmpeg binary (default: `ffmpeg` on the PATH)")
    parser.add_argument(
        "--show-commands", action="store_true", help="print each contender's command"
    )
    return parser


def _pick(only: str | None, available: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The contenders to run, and why the others are not."""
    wanted = [c.strip() for c in only.split(",")] if only else list(CONTENDERS)
    unknown = [c for c in wanted if c not in CONTENDERS]
    if unknown:
        raise SystemExit(f"unknown contender(s): {', '.join(unknown)}; pick from {CONTENDERS}")
    skipped = {c: why for c, why in available.items() if c in wanted and why}
    return [c for c in CONTENDERS if c in wanted and not available.get(c)], skipped


def _pick_scenarios(text: str) -> list[str]:
    wanted = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in SCENARIOS]
    if unknown or not wanted:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; pick from {list(SCENARIOS)}")
    return [name for name in SCENARIOS if name in wanted]


def compile_bytecode() -> None:
    """Compile gpu_worker's modules once, as ``pip install`` does for an installed worker.
    With PYTHONDONTWRITEBYTECODE set (this machine and the images set it), an editable
    install would otherwise compile every module again at each start: about 0.12 s of CPU
    that no installed worker pays (measured on a short render)."""
    import compileall

    import gpu_worker

    compileall.compile_dir(str(Path(gpu_worker.__file__).parent), quiet=1)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    scenario_names = _pick_scenarios(args.scenarios)
    compile_bytecode()
    command_line = shlex.join(
        ["python", "benchmarks/compare.py", *(sys.argv[1:] if argv is None else argv)]
    )
    ffmpeg = args.ffmpeg or shutil.which("ffmpeg")
    why_not = {
        "ours": "",
        "floor": "",
        "ffmpeg": "" if ffmpeg else "no `ffmpeg` on the PATH (apt-get install ffmpeg)",
        "moviepy": ""
        if importlib.util.find_spec("moviepy")
        else "MoviePy is not installed (pip install 'moviepy>=2')",
    }
    names, skipped = _pick(args.only, why_not)
    for name, why in skipped.items():
        print(f"skipping {name}: {why}", file=sys.stderr)

    divisor = max(1, args.divisor)
    size = (reference._even(1080 / divisor), reference._even(1920 / divisor))
    media = reference.ensure_media(args.seconds, folder=args.media, divisor=divisor)
    work_tmp = None if args.work else tempfile.TemporaryDirectory(prefix="compare-")
    work = args.work or Path(work_tmp.name if work_tmp else ".")
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, scenario_names, names, skipped, media, work, size, ffmpeg, command_line)
    finally:
        if work_tmp is not None:
            work_tmp.cleanup()


@dataclass
class Scenario:
    """One job every contender renders: its plan, the contenders that run it and their runs."""

    name: str
    plan: Plan
    contenders: list[Contender]
    left_out: dict[str, str]  # contender -> why it does not run this job
    ffmpeg_line: str | None


def scenario_job(
    name: str, media: Path, output: Path, clip_seconds: float, size: tuple[int, int]
) -> dict[str, Any]:
    """The reel (the three inputs once) or the ten-clip job (them cycled into ten clips)."""
    opts: dict[str, Any] = {"clip_seconds": clip_seconds, "size": size}
    if name == "reel":
        return reference.reference_job(media, output, **opts)
    return reference.reference_job(media, output, seconds=TEN_CLIPS * clip_seconds, **opts)


def build_scenario(
    name: str,
    names: list[str],
    media: Path,
    work: Path,
    args: argparse.Namespace,
    size: tuple[int, int],
    ffmpeg: str | None,
) -> Scenario:
    """The job files of scenario ``name`` in ``work/name`` and each contender's command."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    job = scenario_job(name, media, folder / "ours.mp4", args.seconds, size)
    job_file = folder / "job.json"
    job_file.write_text(json.dumps(job, indent=2, ensure_ascii=False))
    plan = make_plan(job, args.seconds)
    plan_file = folder / "moviepy-plan.json"
    plan_file.write_text(json.dumps(plan.to_json(), indent=2, ensure_ascii=False))
    env = {**os.environ, "GPU_WORKER_ENCODER": "x264"}
    ffmpeg_argv = ffmpeg_command(
        plan, folder / "ffmpeg.mp4", folder / "texts", ffmpeg=ffmpeg or "ffmpeg"
    )

    built = {
        "ours": Contender(
            "ours", "gpu-worker render", ours_args(job_file, folder / "ours.mp4"),
            folder / "ours.mp4", audio=True, env=env, trace_dir=folder / "traces",
        ),
        "ffmpeg": Contender(
            "ffmpeg", "one ffmpeg command", ffmpeg_argv, folder / "ffmpeg.mp4", audio=True,
        ),
        "moviepy": Contender(
            "moviepy", "MoviePy 2", moviepy_args(plan_file, folder / "moviepy.mp4"),
            folder / "moviepy.mp4", audio=True, cwd=folder, tree=True,
        ),
        "floor": Contender(
            "floor", "floor (decode, fit, encode)", floor_args(job_file, folder / "floor.mp4"),
            folder / "floor.mp4", audio=False,
        ),
    }  # fmt: skip
    left_out = {n: why for n, why in REEL_ONLY.items() if name != "reel" and n in names}
    contenders = [built[n] for n in names if n not in left_out]
    ffmpeg_line = shell_join(ffmpeg_argv) if ffmpeg else None
    return Scenario(name, plan, contenders, left_out, ffmpeg_line)


def run_once(c: Contender, run: int, plan: Plan, log: Path, traced: bool = False) -> Sample:
    """One run of ``c``, its output checked; ``traced`` (ours): with a trace file, read
    into ``c.stages``."""
    c.output.unlink(missing_ok=True)
    argv, trace = c.argv, None
    if traced and c.trace_dir is not None:
        trace = c.trace_dir / f"run{run}.jsonl"
        trace.unlink(missing_ok=True)
        argv = [*argv, "--trace-file", str(trace)]
    sample = measure(argv, env=c.env, cwd=c.cwd, tree=c.tree, log=log)
    if sample.ok:
        problem = check_output(c.output, plan.duration, c.audio)
        if problem:
            sample.ok, sample.note = False, f"bad output: {problem}"
    if sample.ok and trace is not None and trace.exists():
        c.stages.append(stage_rows(read_stages(trace), sample))
    return sample


def run_scenario(scenario: Scenario, runs: int, work: Path, traced_runs: int = 1) -> None:
    """First ``traced_runs`` runs of ours with a trace file, for where its time goes (they
    also warm the file cache); then ``runs`` rounds of every contender, one after the other
    in each round. Tracing loads OpenTelemetry, which a plain render does not: the timed
    runs are untraced."""
    for c in scenario.contenders:
        if c.trace_dir is None:
            continue
        for run in range(1, traced_runs + 1):
            log = work / scenario.name / f"{c.name}-traced.log"
            sample = run_once(c, run, scenario.plan, log, traced=True)
            print(
                f"{scenario.name} traced run {run}/{traced_runs} {c.name:8} {sample.wall:7.2f} "
                f"s wall {sample.cpu:7.2f} s CPU  {'ok' if sample.ok else sample.note}",
                file=sys.stderr,
                flush=True,
            )
    for run in range(1, runs + 1):
        for c in scenario.contenders:
            sample = run_once(c, run, scenario.plan, work / scenario.name / f"{c.name}.log")
            c.samples.append(sample)
            state = "ok" if sample.ok else f"FAILED ({sample.note})"
            print(
                f"{scenario.name} run {run}/{runs} {c.name:8} {sample.wall:7.2f} s wall "
                f"{sample.cpu:7.2f} s CPU {sample.peak:7.0f} MB peak  {state}",
                file=sys.stderr,
                flush=True,
            )


def run_long(
    args: argparse.Namespace, media: Path, work: Path, size: tuple[int, int]
) -> list[tuple[float, Sample]]:
    """Ours once at each ``--long-seconds`` length (the reel's clips cycled): memory growth."""
    opts: dict[str, Any] = {"clip_seconds": args.seconds, "size": size}
    env = {**os.environ, "GPU_WORKER_ENCODER": "x264"}
    long_rows: list[tuple[float, Sample]] = []
    for seconds in (float(s) for s in args.long_seconds.split(",") if s.strip()):
        out = work / f"ours-{seconds:g}s.mp4"
        long_job = work / f"job-{seconds:g}s.json"
        reference.write_job(long_job, media, out, seconds=seconds, **opts)
        out.unlink(missing_ok=True)
        sample = measure(ours_args(long_job, out), env=env, log=work / "ours-long.log")
        if sample.ok:
            problem = check_output(out, seconds, True)
            if problem:
                sample.ok, sample.note = False, f"bad output: {problem}"
        long_rows.append((seconds, sample))
        print(
            f"long {seconds:g} s: {sample.wall:.2f} s wall {sample.cpu:.2f} s CPU "
            f"{sample.peak:.0f} MB peak {'ok' if sample.ok else sample.note}",
            file=sys.stderr,
            flush=True,
        )
        out.unlink(missing_ok=True)
    return long_rows


def _run(
    args: argparse.Namespace,
    scenario_names: list[str],
    names: list[str],
    skipped: dict[str, str],
    media: Path,
    work: Path,
    size: tuple[int, int],
    ffmpeg: str | None,
    command_line: str,
) -> int:
    scenarios = [
        build_scenario(name, names, media, work, args, size, ffmpeg) for name in scenario_names
    ]
    if args.show_commands:
        for scenario in scenarios:
            for c in scenario.contenders:
                print(f"# {scenario.name}: {c.name}\n{shell_join(c.argv)}\n")

    info = machine_info(ffmpeg)
    started = dt.datetime.now(dt.UTC)
    for scenario in scenarios:
        run_scenario(scenario, args.runs, work, args.traced_runs)
    long_rows = run_long(args, media, work, size) if args.long else []

    report = render_report(scenarios, skipped, long_rows, info, started, command_line, args)
    print(report)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(report)
    print(f"written: {args.markdown}", file=sys.stderr)
    failed = [c.name for sc in scenarios for c in sc.contenders if not any(s.ok for s in c.samples)]
    return 1 if failed or any(not s.ok for _, s in long_rows) else 0


# --------------------------------------------------------------------------------------------
# the report


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def verdict(value: float | None, limit: float) -> str:
    if value is None:
        return "not run"
    return "PASS" if value <= limit else "FAIL"


def ratios(contenders: Sequence[Contender]) -> list[tuple[str, str, float | None, float]]:
    """(name, metric, ratio or None when a side is missing, limit) for each ratio target."""
    by = {c.name: c for c in contenders}
    rows = []
    for name, num, den, metric, limit in RATIO_TARGETS:
        a = by[num].median(metric) if num in by else None
        b = by[den].median(metric) if den in by else None
        rows.append((name, metric, a / b if a is not None and b else None, limit))
    return rows


def describe(scenario: Scenario, clip_seconds: float) -> str:
    plan = scenario.plan
    return (
        f"{scenario.name}: {len(plan.clips)} clips of {clip_seconds:g} s, {plan.duration:g} s, "
        f"{plan.width}x{plan.height} at {plan.fps} fps, {len(plan.texts)} texts, music"
    )


def _header(
    scenarios: Sequence[Scenario],
    started: dt.datetime,
    command_line: str,
    args: argparse.Namespace,
) -> list[str]:
    return [
        "# gpu-worker against one ffmpeg command, MoviePy and the floor",
        "",
        f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{command_line}`",
        *(f"- {describe(sc, args.seconds)}" for sc in scenarios),
        f"- every contender encodes libx264 {PRESET} crf {CRF} (AAC {AUDIO_BITRATE} with sound)",
        f"- method: one scenario after the other; within each, {args.runs} run(s) of each "
        "contender, alternating (run 1 of each, then run 2 of each…), each run a fresh "
        "process; medians below",
    ]


def _target_rows(scenario: Scenario) -> list[str]:
    lines = ["| target | value | limit | result |", "|---|---|---|---|"]
    for (name, metric, value, limit), (_, num, den, _, _) in zip(
        ratios(scenario.contenders), RATIO_TARGETS, strict=True
    ):
        why = scenario.left_out.get(num) or scenario.left_out.get(den)
        result = f"not run: {why}" if why else verdict(value, limit)
        lines.append(
            f"| {name} {METRICS[metric]} time | {_fmt(value)} | ≤ {limit:.2f} | {result} |"
        )
    by = {c.name: c for c in scenario.contenders}
    peak = by["ours"].median("peak") if "ours" in by else None
    lines.append(
        f"| ours peak memory | {_fmt(peak, 0)} MB | ≤ {PEAK_TARGET_MB:g} MB | "
        f"{verdict(peak, PEAK_TARGET_MB)} |"
    )
    return lines


def _cpu_info(scenario: Scenario) -> list[str]:
    """CPU ratios of the pairs with no CPU target, for information."""
    by = {c.name: c for c in scenario.contenders}
    targeted = {(a, b) for _, a, b, metric, _ in RATIO_TARGETS if metric == "cpu"}
    pairs = dict.fromkeys((n, a, b) for n, a, b, _, _ in RATIO_TARGETS if (a, b) not in targeted)
    shown = []
    for name, a, b in pairs:
        if a in by and b in by:
            x, y = by[a].median("cpu"), by[b].median("cpu")
            shown.append(f"{name} {_fmt(x / y if x is not None and y else None)}")
    return ["", f"CPU-time ratios (for information): {', '.join(shown)}"] if shown else []


def _stage_table(scenario: Scenario) -> list[str]:
    ours = next((c for c in scenario.contenders if c.name == "ours"), None)
    if ours is None:
        return []
    lines = ["", "### Where ours spends its time", ""]
    if not ours.stages:
        return [*lines, "No trace read: no run of ours succeeded."]
    lines += [
        f"Medians over {len(ours.stages)} traced run(s), seconds; a stage's spans are summed "
        "per run (decode, composite and encode once per clip).",
        "",
        "| where | wall s | CPU s |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {_fmt(w)} | {_fmt(c)} |" for n, w, c in median_rows(ours.stages)]
    return lines


def _scenario_section(
    scenario: Scenario, skipped: dict[str, str], args: argparse.Namespace
) -> list[str]:
    lines = [
        "",
        f"## {SCENARIOS[scenario.name]} ({scenario.name})",
        "",
        describe(scenario, args.seconds) + ".",
        "",
        "| contender | runs ok | wall s | CPU s | peak MB | output MB |",
        "|---|---|---|---|---|---|",
    ]
    for c in scenario.contenders:
        ok = sum(s.ok for s in c.samples)
        size = c.output.stat().st_size / MB if c.output.exists() else None
        lines.append(
            f"| {c.label} | {ok}/{len(c.samples)} | {_fmt(c.median('wall'))} | "
            f"{_fmt(c.median('cpu'))} | {_fmt(c.median('peak'), 0)} | {_fmt(size, 1)} |"
        )
    for name, why in {**skipped, **scenario.left_out}.items():
        lines.append(f"| {name} | not run: {why} | | | | |")
    lines += ["", *_target_rows(scenario), *_cpu_info(scenario), *_stage_table(scenario)]
    return lines


def _long_section(long_rows: Sequence[tuple[float, Sample]]) -> list[str]:
    if not long_rows:
        return []
    done = [(s, x) for s, x in long_rows if x.ok]
    growth = done[-1][1].peak / done[0][1].peak if len(done) >= 2 else None
    limit = 1 + LONG_MEMORY_TOLERANCE
    shown = f"{done[-1][0]:g} s / {done[0][0]:g} s" if len(done) >= 2 else "long runs"
    lines = [
        "",
        "## Long videos (ours, one run each)",
        "",
        "| video | wall s | s per video minute | CPU s | peak MB | result |",
        "|---|---|---|---|---|---|",
    ]
    for seconds, s in long_rows:
        lines.append(
            f"| {seconds:g} s | {s.wall:.2f} | {s.wall / seconds * 60:.1f} | {s.cpu:.2f} | "
            f"{s.peak:.0f} | {'ok' if s.ok else s.note} |"
        )
    lines += [
        "",
        "| target | value | limit | result |",
        "|---|---|---|---|",
        f"| ours peak memory {shown} | {_fmt(growth)} | ≤ {limit:g} | {verdict(growth, limit)} |",
    ]
    return lines


HOW_MEASURED = [
    "",
    "## How it is measured",
    "",
    "- gpu_worker's bytecode is compiled before the runs, as `pip install` leaves an "
    "installed worker (an editable install with PYTHONDONTWRITEBYTECODE set would compile "
    "every module again at each start).",
    "- Each contender is one subprocess (the MoviePy one starts ffmpeg children itself); "
    "`os.wait4` gives wall time, CPU (user + system, including children the process "
    "waited for) and peak resident memory (`ru_maxrss`).",
    "- `ours`, `ffmpeg` and `floor` are single processes: their peak is their own "
    "`ru_maxrss`. MoviePy's peak is the most its Python process and all its ffmpeg "
    "children (one reader per clip and the writer) held at the same moment, sampled every "
    "50 ms from /proc, or the largest single process's `ru_maxrss` if that is more.",
    "- The floor decodes each clip with PyAV (frame threads, a few frames ahead in a "
    "thread, as the renderer does), picks the frame at each output time by timestamp, "
    "fits it with the renderer's own filters (`filter_chain`) and encodes with the "
    "renderer's libx264 options: no text, no compositing, no audio.",
    "- The ffmpeg command is what a user writes: each clip scaled to cover, cropped, "
    "`fps` to the output rate, concatenated, four `drawtext` filters (line breaks as our "
    "renderer wraps; drawtext cannot centre lines within a block), music looped with "
    "`volume` and `afade`. MoviePy wraps the two-line texts itself (`method='caption'`) "
    "and draws the shadow as a second, offset text clip.",
    "- Where ours spends its time comes from separate traced runs before the timed ones "
    "(`--trace-file`, a fresh file per run; tracing adds OpenTelemetry's start-up): "
    "the children of the `render_job` span are the stages, summed by name. Frame-by-frame "
    "stages are the render loop's time in them, so work in other threads overlaps and the "
    "stages' wall times need not add up to the render's. A stage's CPU is its "
    "`stage.cpu_seconds`, the CPU of the thread that did its work (— where the trace does "
    "not carry it). The render's CPU (`job.render_cpu_seconds`) is the whole process's from "
    "the first stage to the result; what it holds beyond probe, render_text, decode, "
    "composite and mux_audio is the encode row below them (x264's own threads, the encode "
    "calls and the frame loop); the process CPU from `wait4` beyond the render's is start-up "
    "(imports, settings) and exit.",
]


def render_report(
    scenarios: Sequence[Scenario],
    skipped: dict[str, str],
    long_rows: Sequence[tuple[float, Sample]],
    info: dict[str, str],
    started: dt.datetime,
    command_line: str,
    args: argparse.Namespace,
) -> str:
    lines = _header(scenarios, started, command_line, args)
    for scenario in scenarios:
        lines += _scenario_section(scenario, skipped, args)
    lines += _long_section(long_rows)
    failures = [
        (f"{sc.name} {c.name}", s.note)
        for sc in scenarios
        for c in sc.contenders
        for s in c.samples
        if not s.ok
    ]
    failures += [(f"ours {sec:g} s", s.note) for sec, s in long_rows if not s.ok]
    if failures:
        lines += ["", "## Failures", ""] + [f"- {n}: {note}" for n, note in failures]
    lines += [*HOW_MEASURED, "", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    commands = [sc for sc in scenarios if sc.ffmpeg_line]
    if commands:
        lines += ["", "## The ffmpeg commands"]
        for sc in commands:
            lines += ["", f"### {sc.name}", "", "```sh", str(sc.ffmpeg_line), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
