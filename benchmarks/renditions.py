"""What three renditions of one job cost against one render, in the same run.

    python benchmarks/renditions.py             # 1 run each; Markdown to results/renditions.md
    python benchmarks/renditions.py --runs 3
    python benchmarks/renditions.py --clip-seconds 2 --divisor 2   # a quicker, smaller reel

Two renders of the reference reel (benchmarks/reference.py), alternating, each a
``gpu-worker render`` subprocess measured with ``os.wait4`` on libx264: as it is, 1080x1920
(the baseline), and the same job with ``outputs`` 1080x1920, 1080x1080 and 1920x1080 (every
input decoded once, each frame fitted and composed per rendition, three encoders). The
target: the three renditions cost at most 2.2 times the single render.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import compare  # noqa: E402 - measuring a subprocess, beside this script
import reference  # noqa: E402

RESULTS = HERE / "results"
TARGET = 2.2
FORMATS = [(1080, 1920), (1080, 1080), (1920, 1080)]


def jobs(media: Path, work: Path, clip_seconds: float, divisor: int) -> dict[str, Path]:
    """The two job files: the reel at 1080x1920, and the reel in the three formats."""

    def size(w: int, h: int) -> tuple[int, int]:
        return (w // divisor // 4 * 4, h // divisor // 4 * 4)  # 4:2:0 planes: sides of 4n

    base = reference.reference_job(
        media, work / "single.mp4", clip_seconds=clip_seconds, size=size(*FORMATS[0])
    )
    three: dict[str, Any] = json.loads(json.dumps(base))
    single = three.pop("output")
    three["outputs"] = []
    for w, h in FORMATS:
        width, height = size(w, h)
        three["outputs"].append(
            {
                **single,
                "uri": str(work / f"three-{width}x{height}.mp4"),
                "width": width,
                "height": height,
            }
        )
    files = {}
    for name, job in (("single", base), ("three", three)):
        path = work / f"{name}.json"
        path.write_text(json.dumps(job, ensure_ascii=False))
        files[name] = path
    return files


def render_args(job_file: Path) -> list[str]:
    """``gpu-worker render`` writing the outputs the job names."""
    return [*compare.ours_args(job_file, Path("-"))[:-3], "--quiet"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--clip-seconds", type=float, default=reference.CLIP_SECONDS)
    parser.add_argument("--divisor", type=int, default=1, help="shrink every size this much")
    parser.add_argument("--work", type=Path, default=RESULTS / "renditions")
    parser.add_argument("--out", type=Path, default=RESULTS / "renditions.md")
    args = parser.parse_args(argv)
    compare.compile_bytecode()  # ours as installed: see compare.py
    args.work.mkdir(parents=True, exist_ok=True)
    media = reference.ensure_media(args.clip_seconds, divisor=args.divisor)
    files = jobs(media, args.work, args.clip_seconds, args.divisor)
    env = {**os.environ, "GPU_WORKER_ENCODER": "x264", "GPU_WORKER_DECODER": "cpu"}
    load_before = os.getloadavg()[0]
    samples: dict[str, list[compare.Sample]] = {name: [] for name in files}
    for run in range(args.runs):
        for name, job in files.items():
            sample = compare.measure(render_args(job), env=env, tree=True)
            if not sample.ok:
                print(f"{name}: {sample.note}", file=sys.stderr)
                return 1
            samples[name].append(sample)
            print(f"run {run + 1} {name}: {sample.wall:.2f} s wall, {sample.cpu:.2f} s CPU")
    wall = {n: statistics.median(s.wall for s in v) for n, v in samples.items()}
    cpu = {n: statistics.median(s.cpu for s in v) for n, v in samples.items()}
    rss = {n: max(s.peak for s in v) for n, v in samples.items()}
    seconds = args.clip_seconds * len(reference.CLIPS)
    sizes = ", ".join(
        f"{w // args.divisor // 4 * 4}x{h // args.divisor // 4 * 4}" for w, h in FORMATS
    )
    cpu_ratio, wall_ratio = cpu["three"] / cpu["single"], wall["three"] / wall["single"]
    lines = [
        "# Three renditions against one render",
        "",
        f"{os.cpu_count()} CPUs; {args.runs} run(s) each, medians; {seconds:g} s video at "
        f"30 fps, libx264. Renditions: {sizes}; the single render is the first. Load average "
        f"{load_before:.1f} before the renders, {os.getloadavg()[0]:.1f} after: wall times "
        "count other processes' work where it is above the CPU count, CPU times much less so.",
        "",
        "| render | wall s | CPU s | peak RSS MB |",
        "|---|---:|---:|---:|",
    ]
    for name in files:
        lines.append(f"| {name} | {wall[name]:.2f} | {cpu[name]:.2f} | {rss[name]:.0f} |")
    verdict = "met" if cpu_ratio <= TARGET else "NOT met"
    lines += [
        "",
        f"Renditions ratio (three / single): CPU {cpu_ratio:.2f}x, wall {wall_ratio:.2f}x; "
        f"target ≤ {TARGET}x on CPU: {verdict}.",
    ]
    report = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
