"""Send-to-webhook latency of one long job with K ``gpu-worker serve`` processes on a local
moto server (S3 + SQS): K = 1 renders it whole; K > 1 splits it into K segments
(``GPU_WORKER_SEGMENT_SECONDS`` = length / K), rendered side by side and joined.

    python benchmarks/latency.py [--seconds 60] [--workers 1,2,4] [--divisor 1]

Reports, per K: the latency from ``SendMessage`` to the webhook's arrival, the join's own
seconds (stream copy plus the soundtrack's AAC encode), the parent's own segment, and the CPU
seconds all the serve processes used. K processes on one machine share its cores, so the
speed-up measured here is not the one separate tasks would give; from the measured figures
it then *projects* the latency with 8 to 32 tasks, each rendering one segment on a machine
like this one (see ``project``), labelled as a projection.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import reference  # noqa: E402

MIN_SEGMENT = 4.0  # gpu_worker.render.segments.MIN_SEGMENT_SECONDS
SECRET = "whsec_" + base64.b64encode(b"latency-benchmark-secret-key-32b").decode()


class Hooks(BaseHTTPRequestHandler):
    """Records each webhook with its arrival time."""

    arrived: ClassVar[list[tuple[float, dict[str, Any]]]] = []
    cond: ClassVar[threading.Condition] = threading.Condition()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.cond:
            self.arrived.append((time.time(), json.loads(body)))
            self.cond.notify_all()
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(
    k: int, seconds: float, env: dict[str, str], aws: dict[str, Any], job: dict[str, Any]
) -> dict[str, Any]:
    """One job served by ``k`` processes; its latency, stage seconds and CPU seconds."""
    split = 0.0 if k == 1 else max(MIN_SEGMENT, seconds / k)
    scratch = Path(tempfile.mkdtemp(prefix="latency-"))
    full = {
        **os.environ,
        **env,
        "GPU_WORKER_SEGMENT_SECONDS": f"{split:g}",
        "GPU_WORKER_SCRATCH_DIR": str(scratch),
        "PYTHONPATH": str(HERE.parent),
    }
    cpu_before = _children_cpu()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gpu_worker", "serve"],
            env=full,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(k)
    ]
    try:
        for proc in procs:  # each is polling before the job is sent
            assert proc.stderr is not None
            for line in proc.stderr:
                if "serving " in line:
                    break
            threading.Thread(target=proc.stderr.read, daemon=True).start()
        job = {**job, "job_id": f"latency-{k}-{uuid.uuid4().hex[:6]}"}
        before = len(Hooks.arrived)
        sent = time.time()
        aws["sqs"].send_message(QueueUrl=aws["queue"], MessageBody=json.dumps(job))
        with Hooks.cond:
            while len(Hooks.arrived) == before:
                if not Hooks.cond.wait(600):
                    raise SystemExit(f"K={k}: no webhook within 600 s")
            arrived, event = Hooks.arrived[before]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(120)
    if event["type"] != "video.completed":
        raise SystemExit(f"K={k}: {event['type']}: {event.get('error')}")
    return {
        "k": k,
        "segment_seconds": split,
        "latency": arrived - sent,
        "timings": event["timings"],
        "cpu": _children_cpu() - cpu_before,
        "frames": round(event["output"]["duration"] * event["output"]["fps"]),
    }


def project(runs: list[dict[str, Any]], seconds: float, tasks: int) -> float:
    """Latency with ``tasks`` tasks, each on a machine like this one: the job's fixed stages
    (fetch, probe, upload, webhook) + one segment of ``seconds / n`` (n = tasks, at most one
    per 4 s) at the whole render's measured speed, plus a segment's own fetch and probe, + the
    measured join. A projection: start-up, queue hops and S3 from a real region are not in it."""
    whole = runs[0]
    t = whole["timings"]
    fixed = sum(t.get(name, 0.0) for name in ("output_check", "fetch_inputs", "upload", "webhook"))
    prep = t.get("probe", 0.0) + t.get("render_text", 0.0)
    per_second = (whole["latency"] - fixed - prep) / seconds  # render seconds per video second
    joins = [r["timings"].get("join", 0.0) for r in runs[1:]]
    join = sum(joins) / len(joins) if joins else 0.0
    n = max(1, min(tasks, math.floor(seconds / MIN_SEGMENT)))
    segment = t.get("fetch_inputs", 0.0) + prep + per_second * seconds / n
    return fixed + prep + segment + join


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the video")
    parser.add_argument("--workers", default="1,2,4", help="K values, comma-separated")
    parser.add_argument("--divisor", type=int, default=1, help="shrink the reel (quick runs)")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.workers.split(",")]
    if ks[0] != 1:
        ks.insert(0, 1)  # the whole render is the baseline of every ratio and the projection

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    media = reference.ensure_media(divisor=args.divisor)
    size = (1080 // args.divisor // 2 * 2, 1920 // args.divisor // 2 * 2)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    creds = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }
    client: Any = boto3.session.Session().client
    kw = {"region_name": "us-east-1", "endpoint_url": endpoint}
    kw.update({k.lower(): v for k, v in creds.items()})
    s3, sqs = client("s3", **kw), client("sqs", **kw)
    s3.create_bucket(Bucket="media")
    queue = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    hooks = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()

    job = reference.reference_job(media, Path("out.mp4"), seconds=args.seconds, size=size)
    uploaded: dict[str, str] = {}
    for clip in job["clips"]:
        path = Path(clip["uri"])
        if clip["uri"] not in uploaded:
            s3.upload_file(str(path), "media", f"in/{path.name}")
            uploaded[clip["uri"]] = f"s3://media/in/{path.name}"
        clip["uri"] = uploaded[clip["uri"]]
    if job.get("audio"):
        path = Path(job["audio"]["uri"])
        s3.upload_file(str(path), "media", f"in/{path.name}")
        job["audio"]["uri"] = f"s3://media/in/{path.name}"
    job["output"]["uri"] = "s3://media/out/latency.mp4"
    env = {
        **creds,
        "SQS_QUEUE_URL": queue,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "WEBHOOK_URL": f"http://127.0.0.1:{hooks.server_address[1]}/hook",
        "WEBHOOK_SECRET": SECRET,
        "GPU_WORKER_WEBHOOK_ALLOW_PRIVATE": "1",
        "GPU_WORKER_POLL_WAIT": "1",
        "GPU_WORKER_ENCODER": "x264",
        "GPU_WORKER_DECODER": "cpu",
        "GPU_WORKER_VISIBILITY_TIMEOUT": "60",
    }
    runs = []
    for k in ks:
        run = run_once(k, args.seconds, env, {"sqs": sqs, "queue": queue}, job)
        runs.append(run)
        print(f"K={k}: {run['latency']:.1f} s", file=sys.stderr)
    hooks.shutdown()
    server.stop()

    base = runs[0]["latency"]
    print(
        f"## Send to webhook, a {args.seconds:g} s reel {size[0]}x{size[1]}, "
        f"{os.cpu_count()} CPUs here (measured)\n"
    )
    print("| serve processes | segments of | latency | vs K=1 | join | parent's segment | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        t = run["timings"]
        seg = f"{run['segment_seconds']:g} s" if run["segment_seconds"] else "whole"
        print(
            f"| {run['k']} | {seg} | {run['latency']:.1f} s | "
            f"{base / run['latency']:.2f}x | {t.get('join', 0.0):.2f} s | "
            f"{t.get('segment', 0.0):.1f} s | {run['cpu']:.0f} |"
        )
    print("\n## Projection: one task per segment, each on a machine like this one (not measured)\n")
    print("| tasks | segments | projected latency |")
    print("|---|---|---|")
    for tasks in (8, 16, 32):
        n = max(1, min(tasks, math.floor(args.seconds / MIN_SEGMENT)))
        print(f"| {tasks} | {n} | {project(runs, args.seconds, tasks):.1f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
