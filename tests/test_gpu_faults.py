"""A GPU worker never fails a job for its own fault: start checks, CPU fallback, health."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import av
import pytest
from aws_fixtures import SECRET, Aws, Media, Receiver, job, worker_env
from helpers import read_output, run_cli
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gpu_worker.client import verify_webhook
from gpu_worker.observability.setup import setup_telemetry
from gpu_worker.observability.spans import serve_hooks
from gpu_worker.render.encoder import EncoderChoice, choose_encoder, nvenc_probe
from gpu_worker.service.health import FALLBACKS_IN_A_ROW, Health, read_health
from gpu_worker.service.messages import Outcome

pytest_plugins = ["aws_fixtures"]

NO_NVENC = not nvenc_probe()[0]


class FailingNvenc(EncoderChoice):
    """Stands in for NVENC on a machine without it: libx264 frames, reported as the GPU's,
    until the GPU "fails" after ``fail_after`` frames as a driver reset would."""

    def __init__(self, fail_after: int) -> None:
        super().__init__("libx264", "stand-in for h264_nvenc")
        object.__setattr__(self, "fail_after", fail_after)
        object.__setattr__(self, "sent", 0)

    @property
    def hardware(self) -> bool:
        return True

    def encode(self, stream: av.VideoStream, frame: av.VideoFrame | None) -> list[av.Packet]:
        object.__setattr__(self, "sent", self.sent + 1)
        if self.sent > self.fail_after:  # type: ignore[attr-defined]
            raise av.error.ExternalError(-542398533, "Generic error in an external library")
        return stream.encode(frame)


def flaky(fail_after: int) -> Any:
    """An encoder choice for Worker(encoder_for=...): the failing GPU unless x264 is asked."""
    return lambda setting: choose_encoder("x264") if setting == "x264" else FailingNvenc(fail_after)


def events(receiver: Receiver) -> list[dict[str, Any]]:
    return [verify_webhook(r.headers, r.body, SECRET) for r in receiver.posts()]


# --------------------------------------------------------------------------------------------
# at start


@pytest.mark.skipif(not NO_NVENC, reason="NVENC works on this machine")
def test_serve_with_nvenc_forced_where_none_opens_exits_1_and_leaves_the_job(
    aws: Aws, media: Media, receiver: Receiver, serve: Any, make_worker: Any, tmp_path: Path
) -> None:
    # Given a job waiting in the queue
    aws.send(json.dumps(job(aws, [aws.put("in/a.mp4", media.clip)], job_id="waits-1")))
    # When a worker forced onto NVENC starts on a machine without it
    first = serve(worker_env(aws, receiver.url, tmp_path / "a", GPU_WORKER_ENCODER="nvenc"))
    assert first.process.wait(60) == 1
    # Then it said why in one line, received nothing, sent nothing
    assert first.lines[-1].startswith("error encoder_unavailable: GPU_WORKER_ENCODER=nvenc but")
    assert aws.counts() == (1, 0) and receiver.posts() == []
    # And a CPU worker started after it renders the job
    (ctx,) = make_worker().poll_once(wait=1)
    assert ctx.outcome is Outcome.COMPLETED
    (event,) = events(receiver)
    assert event["type"] == "video.completed" and event["encoder"] == "libx264"


# --------------------------------------------------------------------------------------------
# during a job


def test_nvenc_failing_mid_job_renders_it_again_on_libx264(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any
) -> None:
    # Given a worker traced as `serve` traces it, whose GPU encoder fails after 4 frames
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry = setup_telemetry(span_exporters=[spans], metric_readers=[metrics])
    worker = make_worker(hooks=serve_hooks(telemetry), GPU_WORKER_ENCODER="auto")
    worker.runner.encoder_for = flaky(fail_after=4)
    aws.send(json.dumps(job(aws, [aws.put("in/a.mp4", media.clip)], job_id="gpu-reset-1")))

    (ctx,) = worker.poll_once(wait=1)

    # Then the job completed, rendered from the start by libx264: every frame is there
    assert ctx.outcome is Outcome.COMPLETED and ctx.error is None
    assert ctx.fallback is not None and "failed while encoding" in ctx.fallback
    (event,) = events(receiver)
    assert event["type"] == "video.completed" and event["encoder"] == "libx264"
    local = worker.root / "check.mp4"
    local.write_bytes(aws.get("out/gpu-reset-1.mp4"))
    assert len(read_output(local).frames) == 10
    assert aws.counts() == (0, 0)
    # And the span and the metric say so
    (root,) = [s for s in spans.get_finished_spans() if s.name == "render_job"]
    assert root.attributes is not None and root.attributes["encoder.fallback"] is True
    telemetry.force_flush()
    data = metrics.get_metrics_data()
    (fallbacks,) = [
        m
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "gpu_worker.encoder.fallbacks"
    ]
    assert [p.value for p in fallbacks.data.data_points] == [1]  # type: ignore[union-attr]
    assert worker.health.fallbacks_in_a_row == 1 and worker.health.problem() is None


def test_an_unreadable_input_on_the_gpu_path_is_the_jobs_fault(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any
) -> None:
    # Given a worker on the GPU path and a clip cut off in the middle
    worker = make_worker(GPU_WORKER_ENCODER="auto")
    worker.runner.encoder_for = flaky(fail_after=1000)
    data = media.clip.read_bytes()
    bad = aws.put("in/cut.mp4", data[: len(data) // 3])
    aws.send(json.dumps(job(aws, [bad], job_id="cut-1")))
    (ctx,) = worker.poll_once(wait=1)
    # Then the job fails for its input, once, and the GPU is not blamed
    assert ctx.outcome is Outcome.FAILED and ctx.error is not None
    assert ctx.error.code == "input_unreadable" and ctx.fallback is None
    (event,) = events(receiver)
    assert event["type"] == "video.failed" and event["error"]["code"] == "input_unreadable"
    assert worker.health.fallbacks_in_a_row == 0


def test_three_fallbacks_in_a_row_make_the_worker_unhealthy_and_lose_nothing(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any
) -> None:
    # Given four jobs and a worker whose GPU fails on every job
    worker = make_worker(GPU_WORKER_ENCODER="auto")
    worker.runner.encoder_for = flaky(fail_after=2)
    clip = aws.put("in/a.mp4", media.clip)
    for n in range(FALLBACKS_IN_A_ROW + 1):
        aws.send(json.dumps(job(aws, [clip], job_id=f"reset-{n}")))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run()))
    thread.start()
    thread.join(60)
    # Then it rendered three of them on the CPU, took no fourth, and stopped with exit 1
    assert codes == [1]
    done = sorted(e["job_id"] for e in events(receiver) if e["type"] == "video.completed")
    assert len(done) == FALLBACKS_IN_A_ROW and all(e["error"] is None for e in events(receiver))
    assert aws.counts() == (1, 0)  # the fourth waits for a healthy worker
    healthy, why = read_health(worker.settings.health_file)
    assert not healthy and "the GPU failed on 3 jobs in a row" in why
    run = run_cli(
        "doctor", "--serving", env={"GPU_WORKER_HEALTH_FILE": str(worker.settings.health_file)}
    )
    assert run.returncode == 1 and "unhealthy: the GPU failed on 3 jobs in a row" in run.stdout


def test_a_gpu_success_resets_the_count() -> None:
    health = Health(None, poll_wait=20)
    for fallback in (True, True, False, True, True):
        health.rendered(fallback=fallback, why="x")
    assert health.fallbacks_in_a_row == 2 and health.gave_up is None
    health.rendered(fallback=True, why="NVENC reset")
    assert health.gave_up is not None and "last: NVENC reset" in health.gave_up


# --------------------------------------------------------------------------------------------
# the health check reads the serving process itself


def test_health_file_of_a_serving_worker(
    aws: Aws, receiver: Receiver, serve: Any, tmp_path: Path
) -> None:
    env = worker_env(aws, receiver.url, tmp_path / "s")
    health_file = tmp_path / "s" / "health.json"
    assert run_cli("doctor", "--serving", env=env).returncode == 1  # not serving yet
    worker = serve(env)
    worker.wait_for("serving")
    deadline = time.monotonic() + 10
    while not health_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    run = run_cli("doctor", "--serving", env=env)
    assert run.returncode == 0 and run.stdout.startswith("ok: serving (pid")
    # A file the worker stopped writing (killed, or its main thread stuck) is unhealthy
    worker.stop()
    state = json.loads(health_file.read_text())
    state["time"] -= 120
    health_file.write_text(json.dumps(state))
    run = run_cli("doctor", "--serving", env=env)
    assert run.returncode == 1 and "has not written its health for" in run.stdout


def test_a_poll_stuck_past_the_wait_and_margin_is_unhealthy() -> None:
    now = [100.0]
    health = Health(None, poll_wait=20, clock=lambda: now[0])
    with health.polling("worker-0"):
        now[0] += 45
        assert health.problem() is None  # a long poll of 20 s plus a margin is fine
        now[0] += 10
        assert health.problem() == "worker-0 has waited on the queue for 55 s"
    assert health.problem() is None
