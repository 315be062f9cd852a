"""What HDR costs: an HLG clip against an SDR clip of the same size, codec and bit depth.

    python benchmarks/hdr.py                  # 1080p, 2 s at 30 fps, 3 runs each
    python benchmarks/hdr.py --output 1080x1920     # a 1080p source in a vertical reel
    python benchmarks/hdr.py --seconds 1 --runs 1 --size 640x360

Both sources are HEVC 10-bit (libx265) made here: a moving pattern tagged HLG BT.2020 (an
iPhone's default), and its SDR twin, the same pictures as the worker maps them, tagged
BT.709 (so both renders encode the same pictures). Each is rendered by
``render_job`` (libx264; CPU decoding unless NVDEC opens) to the same output, alternately,
and the best wall and CPU (all threads) times of each are kept. Reported: the HLG/SDR render
time ratios (the target is at most 1.25; on a busy machine the CPU ratio is the steadier),
and the tone mapping's own cost in ms per source frame: the same fitting filter graph run on
the decoded frames with and without the LUT, measured in the same command. The LUT itself
is built once per worker process, before the timed renders (its time is reported too).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpu_worker.job import Fit, parse_job  # noqa: E402
from gpu_worker.render.clips import _Fitter  # noqa: E402
from gpu_worker.render.colour import ColourTags, plan_for  # noqa: E402
from gpu_worker.render.encoder import X264, EncoderChoice  # noqa: E402
from gpu_worker.render.pipeline import render_job  # noqa: E402

HLG = {"primaries": 9, "trc": 18, "matrix": 9}
SDR = {"primaries": 1, "trc": 1, "matrix": 1}


def make_source(path: Path, width: int, height: int, frames: int, tags: dict[str, int]) -> Path:
    """A moving colour pattern as 10-bit HEVC with the given colour tags."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx265", rate=30)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p10le"
        ctx = stream.codec_context
        ctx.options = {"preset": "ultrafast", "crf": "20", "x265-params": "log-level=error"}
        ctx.color_primaries, ctx.color_trc, ctx.colorspace = (
            tags["primaries"],
            tags["trc"],
            tags["matrix"],
        )
        ctx.color_range = 1
        for i in range(frames):
            t = i / 30
            luma = 0.45 + 0.3 * np.sin(x / width * 6 + t) * np.cos(y / height * 4 - t)
            u = 0.1 * np.sin(x / width * 3 - t)
            v = 0.1 * np.cos(y / height * 5 + t)
            planes = [
                np.round(64 + 876 * luma),
                np.round(512 + 896 * u[::2, ::2]),
                np.round(512 + 896 * v[::2, ::2]),
            ]
            data = np.concatenate([p.ravel() for p in planes]).astype(np.uint16)
            frame = av.VideoFrame.from_ndarray(
                data.reshape(height * 3 // 2, width), format="yuv420p10le"
            )
            frame.color_primaries, frame.color_trc, frame.colorspace = (
                tags["primaries"],
                tags["trc"],
                tags["matrix"],
            )
            frame.color_range = 1
            frame.pts = i
            frame.time_base = Fraction(1, 30)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_sdr_twin(hlg: Path, path: Path, width: int, height: int) -> Path:
    """The same scene as an SDR master: the HLG clip's pictures as the worker maps them,
    stored as 10-bit HEVC tagged BT.709, so both renders encode the same pictures and
    differ only by the HDR handling."""
    plan = plan_for(ColourTags(9, 9, 18), width, height, hlg.name)
    with av.open(str(hlg)) as source, av.open(str(path), "w") as out:
        stream = out.add_stream("libx265", rate=30)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p10le"
        ctx = stream.codec_context
        ctx.options = {"preset": "ultrafast", "crf": "20", "x265-params": "log-level=error"}
        ctx.color_primaries = ctx.color_trc = ctx.colorspace = SDR["matrix"]
        ctx.color_range = 1
        fitter = None
        for frame in source.decode(video=0):
            if fitter is None:
                fitter = _Fitter(frame, frame.time_base, 0, Fit.COVER, width, height, plan)
            mapped = fitter(frame).reformat(format="yuv420p10le")
            mapped.color_primaries = mapped.color_trc = mapped.colorspace = SDR["matrix"]
            mapped.color_range = 1
            mapped.pts, mapped.time_base = frame.pts, frame.time_base
            for packet in stream.encode(mapped):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def render_seconds(
    source: Path, out: Path, width: int, height: int
) -> tuple[float, float, dict[str, float]]:
    """Wall and CPU (all threads) seconds of one render, and its stage times."""
    job = parse_job(
        {
            "version": 1,
            "job_id": "hdr-bench",
            "output": {"uri": str(out), "width": width, "height": height, "fps": 30},
            "clips": [{"uri": str(source), "volume": 0}],
        }
    )
    start, cpu = time.perf_counter(), time.process_time()
    result = render_job(
        job, base_dir=out.parent, output=out, encoder=EncoderChoice(X264, "benchmark")
    )
    return time.perf_counter() - start, time.process_time() - cpu, result.timings


def fit_ms(source: Path, width: int, height: int, hdr: bool) -> tuple[float, float]:
    """Wall and CPU ms per frame of the fitting filter graph alone on ``source``'s decoded
    frames, with the LUT (``hdr``) or reading the same pixels as SDR BT.709."""
    with av.open(str(source)) as container:
        frames = list(container.decode(video=0))
    tags = ColourTags(9, 9, 18) if hdr else ColourTags(1, 1, 1)
    plan = plan_for(tags, width, height, source.name)
    fitter = _Fitter(frames[0], frames[0].time_base, 0, Fit.COVER, width, height, plan)
    fitter(frames[0])  # warm up
    start, cpu = time.perf_counter(), time.process_time()
    for frame in frames:
        fitter(frame)
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    return wall / len(frames) * 1000, used / len(frames) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", default="1920x1080", help="the sources' size")
    parser.add_argument("--output", help="the videos' size (default: the sources')")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    out_w, out_h = (int(v) for v in (args.output or args.size).split("x"))
    frames = max(1, round(args.seconds * 30))
    with tempfile.TemporaryDirectory(prefix="hdr-bench-") as tmp:
        folder = Path(tmp)
        # The LUT is built once per process (then cached): timed apart, not in the renders.
        start = time.perf_counter()
        plan_for(ColourTags(9, 9, 18), width, height, "warm-up")
        lut_build_s = time.perf_counter() - start
        hlg = make_source(folder / "hlg.mp4", width, height, frames, HLG)
        sdr = make_sdr_twin(hlg, folder / "sdr.mp4", width, height)
        times: dict[str, list[float]] = {"hlg": [], "sdr": []}
        cpu: dict[str, list[float]] = {"hlg": [], "sdr": []}
        stages: dict[str, dict[str, float]] = {}
        for _ in range(args.runs):
            for name, source in (("sdr", sdr), ("hlg", hlg)):
                wall, used, timings = render_seconds(
                    source, folder / f"{name}-out.mp4", out_w, out_h
                )
                if not times[name] or wall < min(times[name]):
                    stages[name] = timings
                times[name].append(wall)
                cpu[name].append(used)
        lut_ms = fit_ms(hlg, out_w, out_h, True)
        plain_ms = fit_ms(hlg, out_w, out_h, False)
    best = {name: min(values) for name, values in times.items()}
    best_cpu = {name: min(values) for name, values in cpu.items()}
    report = {
        "size": f"{width}x{height}",
        "output": f"{out_w}x{out_h}",
        "frames": frames,
        "runs": args.runs,
        "render_s": {name: round(value, 3) for name, value in best.items()},
        "render_ms_per_frame": {k: round(v / frames * 1000, 2) for k, v in best.items()},
        "hlg_over_sdr": round(best["hlg"] / best["sdr"], 3),
        "render_cpu_s": {name: round(value, 3) for name, value in best_cpu.items()},
        "hlg_over_sdr_cpu": round(best_cpu["hlg"] / best_cpu["sdr"], 3),
        "fit_ms_per_frame": {"with_lut": round(lut_ms[0], 2), "without": round(plain_ms[0], 2)},
        "fit_cpu_ms_per_frame": {
            "with_lut": round(lut_ms[1], 2),
            "without": round(plain_ms[1], 2),
        },
        "tone_mapping_ms_per_frame": round(lut_ms[0] - plain_ms[0], 2),
        "tone_mapping_cpu_ms_per_frame": round(lut_ms[1] - plain_ms[1], 2),
        "stages_s_of_best_render": {
            name: {k: round(v, 3) for k, v in sorted(t.items())} for name, t in stages.items()
        },
        "lut_build_s_once_per_process": round(lut_build_s, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
