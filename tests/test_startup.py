"""What ``gpu-worker render`` loads: OpenTelemetry only when something receives its spans or
metrics (an ``OTEL_*`` exporter or ``--trace-file``), and then the same spans as ever.

Each render runs in a fresh interpreter, the only place to see which modules a command loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import job_dict

from examples.samples import make_clip

ROOT = Path(__file__).resolve().parents[1]
ENGINE = {"probe", "render_text", "decode", "composite", "encode", "mux_audio"}

# Runs the command line, then says on its last stdout line which OpenTelemetry modules it loaded.
_WRAPPER = """
import json, sys
from gpu_worker.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
print(json.dumps({"code": code, "opentelemetry": loaded}))
"""


@pytest.fixture(scope="module")
def job_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("startup")
    make_clip(folder / "a.mp4", width=96, height=160, fps=10, seconds=1)
    path = folder / "job.json"
    path.write_text(json.dumps(job_dict([{"uri": "a.mp4"}], job_id="startup-job")))
    return path


def render(
    job: Path, out: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], str, str]:
    """``gpu-worker render JOB -o OUT ARGS`` with no ``OTEL_*`` variable but those in ``env``:
    the wrapper's report, what the command printed on stdout, and its stderr."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ECS_CONTAINER"))}
    environ |= {"GPU_WORKER_ENCODER": "x264", **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), environ.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, "render", str(job), "-o", str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
    )
    assert proc.returncode == 0, proc.stderr
    *printed, last = proc.stdout.splitlines()
    report = json.loads(last)
    assert report["code"] == 0, proc.stderr
    assert out.exists()
    return report, "\n".join(printed), proc.stderr


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"},
    ],
    ids=["unset", "none", "disabled"],
)
def test_a_render_with_nothing_to_export_never_loads_opentelemetry(
    job_file: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    report, stdout, stderr = render(job_file, tmp_path / "out.mp4", env=env)
    assert report["opentelemetry"] == []
    assert stdout.splitlines()[0] == str(tmp_path / "out.mp4")
    # The progress lines still name the job; there is no trace for them to name.
    logs = [json.loads(line) for line in stderr.splitlines()]
    assert logs and all(entry["job_id"] == "startup-job" for entry in logs)
    assert not any("trace_id" in entry for entry in logs)


def test_a_trace_file_holds_the_jobs_spans(job_file: Path, tmp_path: Path) -> None:
    trace_file = tmp_path / "trace.jsonl"
    report, stdout, stderr = render(job_file, tmp_path / "out.mp4", "--trace-file", str(trace_file))
    assert "opentelemetry.sdk.trace" in report["opentelemetry"]
    spans = [json.loads(line) for line in trace_file.read_text().splitlines()]
    root = spans[-1]
    assert root["name"] == "render_job" and root["parent_id"] is None
    assert root["attributes"]["job.id"] == "startup-job"
    assert root["attributes"]["video.frames"] == 10
    assert {s["name"] for s in spans[:-1]} <= ENGINE
    assert {"probe", "decode", "composite", "encode"} <= {s["name"] for s in spans}
    assert all(s["parent_id"] == root["span_id"] for s in spans[:-1])
    assert f"(trace id {root['trace_id']})" in stdout
    logs = [json.loads(line) for line in stderr.splitlines()]
    assert logs and all(entry["trace_id"] == root["trace_id"] for entry in logs)


@pytest.mark.parametrize(
    ("env", "exported"),
    [
        ({"OTEL_TRACES_EXPORTER": "console"}, '"name": "render_job"'),
        ({"OTEL_METRICS_EXPORTER": "console"}, '"name": "gpu_worker.jobs"'),
    ],
    ids=["traces", "metrics"],
)
def test_an_exporter_in_the_environment_gets_the_job(
    job_file: Path, tmp_path: Path, env: dict[str, str], exported: str
) -> None:
    report, stdout, _ = render(job_file, tmp_path / "out.mp4", "--quiet", env=env)
    assert "opentelemetry.sdk.trace" in report["opentelemetry"]
    assert exported in stdout
