"""Render the reference reel (benchmarks/reference.py: three grainy 6 s clips at 16 Mbit/s
covering 1080x1920 at 30 fps, four texts, music) N times with tracing on, and write the
trace file that benchmarks/cost.py reads.

    python benchmarks/run_reference.py --runs 3 --out benchmarks/results/traces.jsonl

The inputs are generated once into benchmarks/media, which git ignores. On a GPU instance
name it, so cost.py prices the right row:

    python benchmarks/run_reference.py --runs 5 --host-type g5.xlarge \\
        --out benchmarks/results/g5.jsonl

(``OTEL_RESOURCE_ATTRIBUTES=host.type=g5.xlarge`` does the same.) The encoder is chosen as
the worker chooses it (NVENC when a session opens); ``--encoder`` forces one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import reference  # noqa: E402 - the reference reel beside this script

RESULTS = HERE / "results"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="renders (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS / "traces.jsonl", help="trace file")
    parser.add_argument("--append", action="store_true", help="add to --out, do not replace")
    parser.add_argument("--job", type=Path, help="job file (default: the reference reel)")
    parser.add_argument("--work", type=Path, default=RESULTS, help="inputs and output folder")
    parser.add_argument("--host-type", help="EC2 instance type, recorded as host.type")
    parser.add_argument("--encoder", choices=("auto", "nvenc", "x264"), help="force an encoder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.host_type:
        extra = f"host.type={args.host_type}"
        current = os.environ.get("OTEL_RESOURCE_ATTRIBUTES")
        os.environ["OTEL_RESOURCE_ATTRIBUTES"] = f"{current},{extra}" if current else extra

    from gpu_worker.job import load_job
    from gpu_worker.observability.jsonlines import JsonLinesSpanExporter
    from gpu_worker.observability.setup import setup_telemetry
    from gpu_worker.observability.spans import traced_job
    from gpu_worker.render.encoder import choose_encoder
    from gpu_worker.render.pipeline import render_job
    from gpu_worker.settings import Settings

    args.work.mkdir(parents=True, exist_ok=True)
    output = args.work / "reference.mp4"
    if args.job is None:
        args.job = reference.write_job(
            args.work / "reference.json", reference.ensure_media(), output
        )
    base_dir = args.job.resolve().parent
    job = load_job(args.job)
    settings = Settings.from_env()
    encoder = choose_encoder(args.encoder or settings.encoder)
    telemetry = setup_telemetry(
        span_exporters=[JsonLinesSpanExporter(args.out, append=args.append)]
    )
    print(f"{args.runs} x {args.job.name} with {encoder.name} -> {args.out}", flush=True)
    try:
        for run in range(1, args.runs + 1):
            started = time.perf_counter()
            with traced_job(
                telemetry,
                job.job_id,
                worker_kind=encoder.kind,
                attributes={"benchmark.run": run, "benchmark.job": args.job.name},
            ) as jt:
                result = render_job(
                    job,
                    base_dir=base_dir,
                    output=output,
                    clock=jt.clock,
                    encoder=encoder,
                    limits=settings.limits,
                    decoder=settings.decoder,
                )
                jt.result(result)
            seconds = time.perf_counter() - started
            stages = ", ".join(f"{k} {v:.2f}" for k, v in sorted(result.timings.items()))
            print(
                f"run {run}: {seconds:.2f} s for {result.duration:.1f} s of "
                f"{result.width}x{result.height}@{result.fps} ({stages})",
                flush=True,
            )
    finally:
        telemetry.shutdown()
    resource = dict(telemetry.resource.attributes)
    summary = {k: resource.get(k) for k in ("host.type", "host.arch", "gpu_worker.cpu_count")}
    print(f"traces: {args.out} ({json.dumps(summary)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
