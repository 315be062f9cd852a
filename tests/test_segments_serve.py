"""Long jobs split over the queue, against the moto server: the plan, the segment messages,
the join, and the faults (a segment worker dying, a segment twice, two joins, a parent dying)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aws_fixtures import SECRET, Aws, Media, Receiver, job, worker_env

from gpu_worker.client import verify_webhook
from gpu_worker.job import parse_job
from gpu_worker.render.media import probe
from gpu_worker.render.stages import StageRecord
from gpu_worker.service import segments
from gpu_worker.service.messages import JobContext, Outcome
from gpu_worker.service.segments import Parts
from gpu_worker.service.storage import S3Uri
from gpu_worker.service.worker import Worker

pytest_plugins = ["aws_fixtures"]

SPLIT = {"GPU_WORKER_SEGMENT_SECONDS": "2"}  # an 8 s video: two segments of 4 s


class Stages:
    """Every stage of every message the workers handled."""

    def __init__(self) -> None:
        self.records: list[StageRecord] = []
        self.contexts: list[JobContext] = []
        self.started = threading.Event()
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, ctx: JobContext) -> Iterator[None]:
        with self._lock:
            self.contexts.append(ctx)
        self.started.set()
        ctx.clock.listeners.append(self._add)
        yield

    def _add(self, record: StageRecord) -> None:
        with self._lock:
            self.records.append(record)

    def named(self, name: str) -> list[StageRecord]:
        return [r for r in self.records if r.name == name]


def long_job(aws: Aws, media: Media, job_id: str) -> dict[str, Any]:
    return job(
        aws,
        [aws.put("in/long.mp4", media.long_clip)],
        job_id=job_id,
        audio={"uri": aws.put("in/m.m4a", media.music), "loop": True},
    )


def finished(aws: Aws, receiver: Receiver, job_id: str, tmp_path: Path) -> dict[str, Any]:
    """The one webhook, after checking the one output and that nothing temporary is left."""
    (post,) = receiver.posts()
    event = verify_webhook(post.headers, post.body, SECRET)
    assert event["type"] == "video.completed" and event["job_id"] == job_id
    assert [k for k in aws.object_keys() if k.startswith("out/")] == [f"out/{job_id}.mp4"]
    local = tmp_path / "check.mp4"
    local.write_bytes(aws.get(f"out/{job_id}.mp4"))
    info = probe(local, "output")
    assert info.video is not None and info.audio is not None
    assert info.duration == pytest.approx(8.0, abs=0.05)
    assert aws.counts() == (0, 0)
    return event


def started_key(segment: dict[str, Any]) -> str:
    """The key of the object a worker writes when it starts ``segment``."""
    job = parse_job(segment["job"])
    output = S3Uri.parse(job.output.uri, "output")
    return Parts(output, job, segment["count"]).started(segment["index"]).key


def health(tmp_path: Path, i: int) -> dict[str, str]:
    """A health file of its own for each worker that runs in this process."""
    return {"GPU_WORKER_HEALTH_FILE": str(tmp_path / f"health-{i}.json")}


@contextmanager
def running(*workers: Worker) -> Iterator[None]:
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for worker in workers:
            worker.shutdown.request()
        for thread in threads:
            thread.join(30)


def test_a_long_job_is_split_joined_and_notified_once(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any, tmp_path: Path
) -> None:
    stages = Stages()
    parent = make_worker(hooks=stages, **SPLIT)
    helper = make_worker(hooks=stages, **SPLIT)
    trace = "00-" + "3" * 32 + "-" + "4" * 16 + "-01"
    aws.sqs.send_message(
        QueueUrl=aws.queue_url,
        MessageBody=json.dumps(long_job(aws, media, "long-1")),
        MessageAttributes={"traceparent": {"DataType": "String", "StringValue": trace}},
    )
    result: list[JobContext] = []
    thread = threading.Thread(target=lambda: result.extend(parent.poll_once(wait=5)), daemon=True)
    thread.start()
    assert stages.started.wait(10)
    # The segment message, and the same segment delivered a second time.
    (message,) = aws.sqs.receive_message(
        QueueUrl=aws.queue_url, WaitTimeSeconds=10, MessageAttributeNames=["All"]
    )["Messages"]
    body = json.loads(message["Body"])
    assert body["kind"] == "segment" and (body["index"], body["start"], body["stop"]) == (1, 40, 80)
    # Each segment is traced under the job's trace.
    assert message["MessageAttributes"]["traceparent"]["StringValue"].split("-")[1] == "3" * 32
    aws.sqs.change_message_visibility(
        QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    aws.send(message["Body"])
    first = helper.poll_once(wait=5)
    second = helper.poll_once(wait=5)
    thread.join(60)

    assert [c.outcome for c in [*first, *second, *result]] == [Outcome.COMPLETED] * 3
    assert len(stages.named("encode")) == 2  # the parent's segment and one helper's: no third
    (join,) = stages.named("join")
    assert join.attributes["segments"] == 2
    event = finished(aws, receiver, "long-1", tmp_path)
    assert {"fan_out", "segment", "wait_segments", "join"} <= set(event["timings"])
    assert [c.job_id for c in stages.contexts].count("long-1") == 3


def test_a_segment_worker_killed_mid_segment_is_replaced(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any, tmp_path: Path
) -> None:
    env = {**SPLIT, "GPU_WORKER_VISIBILITY_TIMEOUT": "2"}
    stages = Stages()
    parent, helper = make_worker(hooks=stages, **env), make_worker(**env)
    aws.send(json.dumps(long_job(aws, media, "long-2")))
    result: list[JobContext] = []
    thread = threading.Thread(target=lambda: result.extend(parent.poll_once(wait=5)), daemon=True)
    thread.start()
    assert stages.started.wait(10)
    # A worker takes the segment and dies with it: SQS hands it out again after 2 s.
    (taken,) = aws.sqs.receive_message(
        QueueUrl=aws.queue_url, WaitTimeSeconds=10, VisibilityTimeout=2
    )["Messages"]
    segment = json.loads(taken["Body"])
    assert segment["kind"] == "segment"
    started = started_key(segment)  # as a worker marks a segment it starts
    aws.s3.put_object(Bucket=aws.bucket, Key=started, Body=b"worker")
    (again,) = helper.poll_once(wait=10)
    thread.join(60)
    assert again.outcome is Outcome.COMPLETED and again.receive_count == 2
    assert [c.outcome for c in result] == [Outcome.COMPLETED]
    finished(aws, receiver, "long-2", tmp_path)


def test_two_deliveries_of_a_job_race_and_one_joins(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any, tmp_path: Path
) -> None:
    stages = Stages()
    workers = [make_worker(hooks=stages, **SPLIT, **health(tmp_path, i)) for i in range(3)]
    body = json.dumps(long_job(aws, media, "long-3"))
    aws.send(body)
    aws.send(body)
    with running(*workers):
        receiver.wait_for(1, timeout=90)
        deadline = time.monotonic() + 30
        while aws.counts() != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert len(stages.named("fan_out")) == 2  # both deliveries split the job
    assert len(stages.named("join")) == 1  # one joined it
    finished(aws, receiver, "long-3", tmp_path)


def test_a_parent_that_dies_after_fanning_out_loses_nothing(
    aws: Aws, media: Media, receiver: Receiver, serve: Any, make_worker: Any, tmp_path: Path
) -> None:
    env = {**SPLIT, "GPU_WORKER_VISIBILITY_TIMEOUT": "2"}
    first = serve(worker_env(aws, receiver.url, tmp_path / "a", **env))
    aws.send(json.dumps(long_job(aws, media, "long-4")))
    first.wait_for("long-4: split into 2 segments")
    first.process.send_signal(signal.SIGKILL)
    assert first.process.wait(10) == -signal.SIGKILL

    stages = Stages()
    workers = [make_worker(hooks=stages, **env, **health(tmp_path, i)) for i in range(2)]
    with running(*workers):
        receiver.wait_for(1, timeout=90)
        deadline = time.monotonic() + 30
        while aws.counts() != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert len(stages.named("join")) == 1
    finished(aws, receiver, "long-4", tmp_path)


def test_each_segment_is_traced_under_the_job(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any
) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gpu_worker.observability.setup import setup_telemetry
    from gpu_worker.observability.spans import serve_hooks

    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry = setup_telemetry(span_exporters=[spans], metric_readers=[metrics])
    parent = make_worker(hooks=serve_hooks(telemetry), **SPLIT)
    helper = make_worker(hooks=serve_hooks(telemetry), **SPLIT)
    aws.send(json.dumps(long_job(aws, media, "long-5")))
    result: list[JobContext] = []
    thread = threading.Thread(target=lambda: result.extend(parent.poll_once(wait=5)), daemon=True)
    thread.start()
    (segment,) = helper.poll_once(wait=10)
    thread.join(60)
    telemetry.force_flush()
    finished_spans = spans.get_finished_spans()
    (job_root,) = [s for s in finished_spans if s.name == "render_job"]
    (part,) = [s for s in finished_spans if s.name == "render_segment"]
    assert segment.outcome is Outcome.COMPLETED and job_root.parent is None
    assert part.attributes is not None and part.attributes["segment.index"] == 1  # 0: the parent
    assert part.parent is not None and part.parent.span_id == job_root.context.span_id
    assert part.context.trace_id == job_root.context.trace_id
    children = {
        s.name
        for s in spans.get_finished_spans()
        if s.parent and s.parent.span_id == job_root.context.span_id
    }
    assert {"fan_out", "segment", "wait_segments", "join", "upload", "webhook"} <= children
    # The split video is one job in the metrics, not one per segment
    jobs = [
        point.value  # type: ignore[union-attr]
        for rm in metrics.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "gpu_worker.jobs"
        for point in m.data.data_points
    ]
    assert sum(jobs) == 1


def test_a_worker_alone_renders_every_segment_itself(
    aws: Aws,
    media: Media,
    receiver: Receiver,
    make_worker: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(segments, "HEAD_START", 0.5)  # no other worker will come
    stages = Stages()
    worker = make_worker(hooks=stages, **SPLIT)
    aws.send(json.dumps(long_job(aws, media, "long-6")))
    (ctx,) = worker.poll_once(wait=5)  # no other worker: the parent renders both segments
    assert ctx.outcome is Outcome.COMPLETED
    assert sorted(r.attributes["index"] for r in stages.named("segment")) == [0, 1]
    # The segment message it sent finds the job done and ends without rendering.
    (leftover,) = worker.poll_once(wait=5)
    assert leftover.outcome is Outcome.COMPLETED and len(stages.named("encode")) == 2
    finished(aws, receiver, "long-6", tmp_path)


def test_a_segment_that_fails_for_good_fails_the_job_once(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any
) -> None:
    stages = Stages()
    parent = make_worker(hooks=stages, **SPLIT)
    aws.send(json.dumps(long_job(aws, media, "long-7")))
    result: list[JobContext] = []
    thread = threading.Thread(target=lambda: result.extend(parent.poll_once(wait=5)), daemon=True)
    thread.start()
    assert stages.started.wait(10)
    # A worker takes the segment, finds its input unreadable, says so and ends the message.
    (taken,) = aws.sqs.receive_message(QueueUrl=aws.queue_url, WaitTimeSeconds=10)["Messages"]
    segment = json.loads(taken["Body"])
    aws.s3.put_object(Bucket=aws.bucket, Key=started_key(segment), Body=b"worker")
    error = started_key(segment).replace(".started", ".error.json")
    body = {"code": "input_unreadable", "message": "clips[0]: in/long.mp4: cannot decode"}
    aws.s3.put_object(Bucket=aws.bucket, Key=error, Body=json.dumps(body).encode())
    aws.sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=taken["ReceiptHandle"])
    thread.join(60)

    (ctx,) = result
    assert ctx.outcome is Outcome.FAILED and ctx.error is not None
    assert ctx.error.code == "input_unreadable"
    (post,) = receiver.posts()
    event = verify_webhook(post.headers, post.body, SECRET)
    assert event["type"] == "video.failed" and event["error"]["code"] == "input_unreadable"
    assert [k for k in aws.object_keys() if k.startswith("out/")] == []  # nothing left
    assert aws.counts() == (0, 0)
