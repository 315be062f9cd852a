"""What compositing costs per frame: nothing to draw, one sprite, four sprites.

    python benchmarks/composite.py                  # 1080x1920, 300 frames per case
    python benchmarks/composite.py --frames 50 --divisor 8

The sprites are the reference reel's texts (benchmarks/reference.py) drawn for the output
size: one sprite is the stroked two-line title; four are the title, the boxed caption, the
shadowed call to action and the watermark, all shown at once. Each case composes decoded
frames of the reel's portrait clip exactly as the render does (each frame shown once, drawn
into in place) and, for comparison, as a preview does (into a copy). The figure is the CPU
time of the composing thread per frame (``time.thread_time``), median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `reference` sits beside this file
    sys.path.insert(0, str(HERE))

import reference  # noqa: E402

from gpu_worker.job import parse_job  # noqa: E402
from gpu_worker.render.composite import copy_frame  # noqa: E402
from gpu_worker.render.pipeline import Composition, Inputs, prepare  # noqa: E402
from gpu_worker.render.timeline import layers_at  # noqa: E402


def per_frame_ms(comp: Composition, frames: list, t: float, owned: bool) -> float:
    """CPU milliseconds per frame composing ``frames`` (fresh copies each) at time ``t``."""
    n = round(t * comp.fps)
    (layer,) = layers_at(comp.placements, comp.time_of(n))
    todo = [copy_frame(f) for f in frames]
    started = time.thread_time()
    for frame in todo:
        comp.compose(n, [(layer, frame)], owned=owned)
    return (time.thread_time() - started) / len(todo) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per case (default 300)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per case (default 5)")
    parser.add_argument("--divisor", type=int, default=1, help="shrink the frame (tests)")
    parser.add_argument("--seconds", type=float, default=reference.CLIP_SECONDS)
    args = parser.parse_args(argv)
    size = (reference._even(1080 / args.divisor), reference._even(1920 / args.divisor))
    media = reference.ensure_media(args.seconds, divisor=args.divisor)
    with tempfile.TemporaryDirectory() as tmp:
        data = reference.reference_job(
            media, Path(tmp) / "out.mp4", clip_seconds=args.seconds, size=size
        )
        job = parse_job(data)
        comp = prepare(job, Inputs(Path(tmp)))
        everything = [dataclasses.replace(t, start=0.0, end=comp.duration) for t in comp.texts]
        cases = {
            "nothing to draw": [],
            "one sprite (the title)": everything[:1],
            "four sprites": everything,
        }
        reader = comp.open_reader(1)  # the 1080x1920 30 fps clip: frames as decoded
        try:
            step = 1 / comp.fps
            count = min(args.frames, round(args.seconds * comp.fps) - 1)
            frames = [copy_frame(reader.frame_at(i * step)) for i in range(count)]
        finally:
            reader.close()
        t = args.seconds * 0.5 * 0.5  # mid-title: every sprite fully shown, none fading
        rows = []
        for name, texts in cases.items():
            comp.texts = texts
            comp.overlays, comp.captions = [], None
            covered = sum(layer.sprite.covered for layer in texts)
            render = [per_frame_ms(comp, frames, t, owned=True) for _ in range(args.repeats)]
            preview = [per_frame_ms(comp, frames, t, owned=False) for _ in range(args.repeats)]
            rows.append((name, covered, statistics.median(render), statistics.median(preview)))
    w, h = size
    print(f"Compositing a {w}x{h} frame, CPU ms per frame, median of {args.repeats} x {count}")
    print()
    print("| case | pixels blended | render (in place) | preview (into a copy) |")
    print("|---|---:|---:|---:|")
    for name, covered, render_ms, preview_ms in rows:
        print(f"| {name} | {covered:,} | {render_ms:.3f} | {preview_ms:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
