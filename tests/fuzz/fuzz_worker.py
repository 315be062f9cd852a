"""A fuzz worker process: reads cases (JSON lines) on stdin, renders each with
``gpu-worker render`` in-process, and writes one result line per case.

It runs apart from pytest so that a crash of the interpreter (a segfault in FFmpeg, FreeType
or Pillow) or a hang ends this process only: the parent sees which case was running, reports
it and starts a fresh worker. To replay cases by hand (JSON lines, as fuzz_runner.py sends
them), keeping each case's files in DIR:

    GPU_WORKER_FUZZ_KEEP=DIR python tests/fuzz/fuzz_worker.py < cases.jsonl
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

from fuzz_mutations import mutate  # noqa: E402

MEMORY_LIMIT = 3 * 1024**3  # address space of a worker: a runaway allocation fails here
_ERROR_LINE = re.compile(r"^error (\w+): (.*)$", re.MULTILINE)


def write_inputs(case: dict[str, Any], folder: Path) -> dict[str, str]:
    """The case's input files and job file in ``folder``; the mutations applied, by file."""
    applied = {}
    for name, spec in case["files"].items():
        data = Path(spec["seed"]).read_bytes()
        if spec.get("mutation") is not None:
            data, applied[name] = mutate(data, spec["mutation"])
        (folder / name).write_bytes(data)
    if "job_bytes" in case:
        job = base64.b64decode(case["job_bytes"])
    else:
        job = json.dumps(case["job"], ensure_ascii=False).encode()
    (folder / "job.json").write_bytes(job)
    return applied


def _frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def run_case(case: dict[str, Any], scratch: Path) -> dict[str, Any]:
    from gpu_worker.cli import main

    if case.get("selftest") == "crash":  # the harness's own test: a worker that dies
        os.abort()
    if case.get("selftest") == "hang":
        time.sleep(3600)

    folder = Path(tempfile.mkdtemp(prefix="case-", dir=scratch))
    result: dict[str, Any] = {"id": case["id"]}
    try:
        result["mutations"] = write_inputs(case, folder)
        out_dir = folder / "out"
        out_dir.mkdir()
        output = out_dir / "video.mp4"
        captured = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stderr(captured):
            exit_code = main(["-v", "render", str(folder / "job.json"), "-o", str(output)])
        result["seconds"] = round(time.perf_counter() - started, 3)
        result["exit"] = exit_code
        errors = _ERROR_LINE.findall(captured.getvalue())
        if exit_code == 0:
            result["code"] = "ok"
            result["frames"] = _frames(output) if output.exists() else 0
            output.unlink(missing_ok=True)
        elif errors:
            result["code"], result["message"] = errors[-1]
        else:
            result["code"], result["message"] = "none", captured.getvalue()[-2000:]
        if result["code"] == "internal":
            found = re.findall(r'"exception": "((?:[^"\\]|\\.)*)"', captured.getvalue())
            result["traceback"] = json.loads(f'"{found[-1]}"')[-3000:] if found else ""
        result["left_behind"] = sorted(p.name for p in out_dir.iterdir())
    finally:
        keep = os.environ.get("GPU_WORKER_FUZZ_KEEP")
        if keep:
            shutil.copytree(folder, Path(keep) / case["id"].replace("/", "_"), dirs_exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
    return result


def serve() -> None:
    """Answer cases from stdin until it closes; results go out on the original stdout only."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    results = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the results
    scratch = Path(tempfile.mkdtemp(prefix="gpu-worker-fuzz-"))
    import gpu_worker.cli
    import gpu_worker.render.pipeline  # loaded before the first case's clock runs

    results.write(json.dumps({"ready": gpu_worker.cli.__name__}) + "\n")
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            case = json.loads(line)
            results.write(json.dumps(run_case(case, scratch)) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    serve()
