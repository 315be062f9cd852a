"""What Ken Burns motion and a logo cost, against the plain reference reel in the same run.

    python benchmarks/motion_logo.py            # 1 run each; Markdown to results/motion_logo.md
    python benchmarks/motion_logo.py --runs 3

Three renders of the reference reel (benchmarks/reference.py), alternating, each a
``gpu-worker render`` subprocess measured with ``os.wait4``: as it is (the baseline), with
``zoom_in`` (scale 1.15) on every clip, and with a logo (an SVG drawn 25 % of the frame wide)
on every frame. Then, in this process, the per-frame work itself: resampling one motion
frame of each base size the reel and a 4000x3000 photo give, and blending the logo into a
1080x1920 frame 1800 times (60 s at 30 fps).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import compare  # noqa: E402 - measuring a subprocess, beside this script
import reference  # noqa: E402

from gpu_worker.job import Motion, Overlay, Quality  # noqa: E402
from gpu_worker.limits import Limits  # noqa: E402
from gpu_worker.render.composite import planes_of, to_yuv_sprite  # noqa: E402
from gpu_worker.render.layers import SpriteLayer  # noqa: E402
from gpu_worker.render.motion import MotionSampler  # noqa: E402
from gpu_worker.render.overlays import draw_overlay  # noqa: E402

RESULTS = HERE / "results"
LOGO_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 80">
<rect x="2" y="2" width="196" height="76" rx="16" fill="#1B1B1B" fill-opacity="0.6"/>
<circle cx="40" cy="40" r="26" fill="#FFD166"/>
<path d="M80 56 L100 22 L120 56 Z M118 56 L140 30 L162 56 Z" fill="#FFFFFF"/>
</svg>
"""


def jobs(media: Path, work: Path) -> dict[str, Path]:
    """The three job files: baseline, zoom_in on every clip, a logo on every frame."""
    logo = work / "logo.svg"
    logo.write_text(LOGO_SVG)
    variants: dict[str, dict[str, Any]] = {}
    base = reference.reference_job(media, work / "base.mp4")
    variants["baseline"] = base
    zoom = reference.reference_job(media, work / "zoom.mp4")
    for clip in zoom["clips"]:
        clip["motion"] = {"type": "zoom_in", "scale": 1.15}
    variants["zoom_in"] = zoom
    logo_job = reference.reference_job(media, work / "logo.mp4")
    logo_job["overlays"] = [
        {"uri": str(logo), "x": 0.04, "y": 0.03, "anchor": "top-left", "width": 0.25}
    ]
    variants["logo"] = logo_job
    files = {}
    for name, job in variants.items():
        path = work / f"{name}.json"
        path.write_text(json.dumps(job, ensure_ascii=False))
        files[name] = path
    return files


def per_frame(fn: Any, frames: int) -> float:
    """CPU milliseconds (this thread's: other processes on the machine do not count) a call
    of ``fn(i)`` takes, the median of 5 rounds of ``frames`` calls."""
    rounds = []
    for _ in range(5):
        started = time.thread_time()
        for i in range(frames):
            fn(i)
        rounds.append((time.thread_time() - started) / frames * 1000)
    return statistics.median(rounds)


def resample_cost(base: tuple[int, int], quality: Quality, frames: int = 30) -> float:
    """ms to resample one zoom_in frame from a ``base`` picture to 1080x1920."""
    rng = np.random.default_rng(0)
    w, h = base
    pixels = rng.integers(16, 235, (h * 3 // 2, w), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(pixels, format="yuv420p")
    sampler = MotionSampler(Motion(type="zoom_in"), frames / 30, 1080, 1920, quality)
    return per_frame(lambda i: sampler(frame, i / 30), frames)


def logo_cost(work: Path, frames: int = 1800) -> tuple[float, tuple[int, int]]:
    """ms to blend the logo into a 1080x1920 frame, and the logo's size."""
    logo = work / "logo.svg"
    logo.write_text(LOGO_SVG)
    spec = Overlay(uri=str(logo), x=0.04, y=0.03, anchor="top-left", width=0.25)
    picture = draw_overlay(spec, "overlays[0]", logo, 1080, 1920, Limits())
    sprite = to_yuv_sprite(picture.image, picture.x, picture.y)
    layer = SpriteLayer("overlays[0]", sprite, 0.0, 60.0, spec.animation, 1.0, 1920)
    arr = np.full((1920 * 3 // 2, 1080), 128, np.uint8)
    planes = planes_of(arr, 1080, 1920)
    return per_frame(lambda i: layer.draw(planes, i / 30), frames), picture.image.size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--work", type=Path, default=RESULTS / "motion_logo")
    parser.add_argument("--out", type=Path, default=RESULTS / "motion_logo.md")
    args = parser.parse_args(argv)
    compare.compile_bytecode()  # ours as installed: see compare.py
    args.work.mkdir(parents=True, exist_ok=True)
    media = reference.ensure_media()
    files = jobs(media, args.work)
    env = {**os.environ, "GPU_WORKER_ENCODER": "x264"}
    load_before = os.getloadavg()[0]
    samples: dict[str, list[compare.Sample]] = {name: [] for name in files}
    for run in range(args.runs):
        for name, job in files.items():
            sample = compare.measure(
                compare.ours_args(job, args.work / f"{name}.mp4"), env=env, tree=True
            )
            if not sample.ok:
                print(f"{name}: {sample.note}", file=sys.stderr)
                return 1
            samples[name].append(sample)
            print(f"run {run + 1} {name}: {sample.wall:.2f} s wall, {sample.cpu:.2f} s CPU")
    seconds = reference.CLIP_SECONDS * len(reference.CLIPS)
    frames = round(seconds * 30)
    wall = {n: statistics.median(s.wall for s in v) for n, v in samples.items()}
    cpu = {n: statistics.median(s.cpu for s in v) for n, v in samples.items()}
    lines = [
        "# Ken Burns motion and a logo against the reference reel",
        "",
        f"{os.cpu_count()} CPUs; {args.runs} run(s) each, medians; {seconds:g} s video, "
        f"{frames} frames, libx264 veryfast crf 23. Load average {load_before:.1f} before the "
        f"renders, {os.getloadavg()[0]:.1f} after: wall times count other processes' work "
        "where it is above the CPU count, CPU times much less so.",
        "",
        "| render | wall s | CPU s | wall / baseline | CPU / baseline | x real time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in files:
        lines.append(
            f"| {name} | {wall[name]:.2f} | {cpu[name]:.2f} | "
            f"{wall[name] / wall['baseline']:.3f} | {cpu[name] / cpu['baseline']:.3f} | "
            f"{seconds / wall[name]:.2f} |"
        )
    for name in ("zoom_in", "logo"):
        extra_cpu = (cpu[name] - cpu["baseline"]) / frames * 1000
        extra_wall = (wall[name] - wall["baseline"]) / frames * 1000
        lines.append(f"\n{name}: {extra_cpu:+.2f} ms CPU and {extra_wall:+.2f} ms wall a frame.")
    lines += [
        "",
        "Per-frame work alone, in this process (CPU time of the thread, median of 5 rounds):",
        "",
    ]
    for base in ((1080, 1920), (608, 1080), (1242, 2208)):
        costs = {q: resample_cost(base, q) for q in (Quality.STANDARD, Quality.HIGH)}
        lines.append(
            f"- zoom_in resample from a {base[0]}x{base[1]} base to 1080x1920: "
            f"{costs[Quality.STANDARD]:.2f} ms/frame bilinear (draft, standard), "
            f"{costs[Quality.HIGH]:.2f} ms/frame bicubic (high)"
        )
    cost, size = logo_cost(args.work)
    lines.append(
        f"- a {size[0]}x{size[1]} logo blended into a 1080x1920 frame: {cost:.3f} ms/frame "
        f"({cost / (1000 / 30) * 100:.2f} % of a 30 fps frame's time)"
    )
    report = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
