"""The queue worker end to end, over real protocols: moto's S3 and SQS, a webhook receiver, an
ECS agent stand-in, and `python -m gpu_worker serve` killed or stopped mid-render."""

from __future__ import annotations

import json
import signal
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aws_fixtures import (
    SECRET,
    Aws,
    Media,
    Receiver,
    client,
    job,
    s3_endpoint,
    worker_env,
)
from helpers import CALL, PUSHB_1, hinted_font

from gpu_worker.client import submit_job, verify_webhook
from gpu_worker.render.media import probe
from gpu_worker.render.stages import StageRecord
from gpu_worker.service.messages import JobContext, Outcome
from gpu_worker.service.queue import retry_visibility
from gpu_worker.service.shutdown import finish_in_time
from gpu_worker.service.webhook import webhook_id

pytest_plugins = ["aws_fixtures"]

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# pure parts


@pytest.mark.parametrize(
    ("receive_count", "base", "cap", "seconds"),
    [
        (1, 30, 900, 30),
        (2, 30, 900, 60),
        (3, 30, 900, 120),
        (5, 30, 900, 480),
        (6, 30, 900, 900),  # 960 capped
        (40, 30, 900, 900),
        (1, 1, 900, 1),
        (3, 1, 900, 4),
        (0, 30, 900, 30),  # a missing count counts as the first
        (3, 0, 900, 0),  # base 0: straight back
        (30, 60, 100_000, 43_200),  # never beyond SQS's 12 hours
    ],
)
def test_retry_visibility(receive_count: int, base: float, cap: float, seconds: int) -> None:
    assert retry_visibility(receive_count, base, cap) == seconds


@pytest.mark.parametrize(
    ("per_frame", "left_frames", "seconds_left", "finish"),
    [
        (None, 1000, 5.0, True),  # no estimate yet: keep going, look again next frame
        (None, 1000, 0.0, False),  # past the deadline
        (0.01, 100, 5.0, True),
        (0.01, 1000, 5.0, False),
        (0.05, 100, 5.0, True),  # exactly on time
        (0.05, 101, 5.0, False),
        (0.01, 0, 0.5, True),
    ],
)
def test_finish_in_time(
    per_frame: float | None, left_frames: int, seconds_left: float, finish: bool
) -> None:
    assert finish_in_time(per_frame, left_frames, seconds_left) is finish


def test_job_context_from_a_message() -> None:
    ctx = JobContext.from_message(
        {
            "MessageId": "m-1",
            "ReceiptHandle": "r",
            "Body": "{}",
            "Attributes": {"SentTimestamp": "1700000000000", "ApproximateReceiveCount": "3"},
            "MessageAttributes": {"traceparent": {"StringValue": "00-abc-def-01"}},
        }
    )
    ctx.received_at = 1_700_000_012.5
    assert (ctx.receive_count, ctx.traceparent, ctx.queue_wait) == (3, "00-abc-def-01", 12.5)
    assert ctx.subject == "sqs-message-m-1"
    bare = JobContext.from_message({"MessageId": "m-2", "ReceiptHandle": "r"})
    assert (bare.receive_count, bare.traceparent, bare.queue_wait) == (1, None, None)


# --------------------------------------------------------------------------------------------
# in-process worker


class Recorder:
    """A ``job_hooks`` like the telemetry layer's: sees each context and every stage."""

    def __init__(self) -> None:
        self.contexts: list[JobContext] = []
        self.job_ids: list[str | None] = []
        self.stages: list[StageRecord] = []
        self.started = threading.Event()

    @contextmanager
    def __call__(self, ctx: JobContext) -> Iterator[None]:
        self.job_ids.append(ctx.job_id)  # known on entry, for the root span
        self.contexts.append(ctx)
        ctx.clock.listeners.append(self.stages.append)
        self.started.set()
        yield
        assert ctx.outcome is not None  # decided before the hook closes

    def named(self, name: str) -> list[StageRecord]:
        return [s for s in self.stages if s.name == name]


def webhooks(receiver: Receiver) -> list[dict[str, Any]]:
    """Every webhook received, each checked against the secret."""
    return [verify_webhook(r.headers, r.body, SECRET) for r in receiver.posts()]


def test_end_to_end(
    aws: Aws,
    media: Media,
    receiver: Receiver,
    ecs_agent: Receiver,
    make_worker: Any,
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    worker = make_worker(hooks=recorder, ECS_AGENT_URI=ecs_agent.url)
    clips = [aws.put("in/a.mp4", media.clip), aws.put("in/b.mp4", media.clip2)]
    spec = job(
        aws,
        clips,
        job_id="hotel-42",
        output={"poster": True},
        audio={"uri": aws.put("in/music.m4a", media.music)},
        texts=[{"text": "Hi", "font_uri": aws.put("fonts/Bold.ttf", media.font), "size": 14}],
        metadata={"listing": 42},
    )
    spec["clips"][1]["transition"] = {"type": "crossfade", "duration": 0.3}
    trace = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    submit_job(aws.queue_url, spec, sqs=aws.sqs, traceparent=trace)

    (ctx,) = worker.poll_once(wait=1)

    assert ctx.outcome is Outcome.COMPLETED and ctx.error is None
    assert aws.object_keys() == sorted(
        [
            "fonts/Bold.ttf",
            "in/a.mp4",
            "in/b.mp4",
            "in/music.m4a",
            "out/hotel-42.jpg",
            "out/hotel-42.mp4",
        ]
    )
    local = tmp_path / "check.mp4"
    local.write_bytes(aws.get("out/hotel-42.mp4"))
    info = probe(local, "output")
    assert info.video is not None and info.audio is not None
    assert (info.video.width, info.video.height) == (64, 112)
    assert aws.get("out/hotel-42.jpg")[:3] == b"\xff\xd8\xff"

    (event,) = webhooks(receiver)
    assert receiver.posts()[0].headers["webhook-id"] == webhook_id("hotel-42", "video.completed")
    assert event["type"] == "video.completed" and event["job_id"] == "hotel-42"
    assert event["error"] is None and event["metadata"] == {"listing": 42}
    output = event["output"]
    assert output["uri"] == f"s3://{aws.bucket}/out/hotel-42.mp4"
    assert output["poster_uri"] == f"s3://{aws.bucket}/out/hotel-42.jpg"
    assert (output["width"], output["height"]) == (64, 112)
    assert output["size_bytes"] == len(aws.get("out/hotel-42.mp4"))
    assert 1.5 < output["duration"] < 2.0
    assert event["encoder"] == "libx264"
    assert {"fetch_inputs", "probe", "encode", "upload"} <= set(event["timings"])

    assert aws.counts() == (0, 0)  # the message is gone
    puts = [r.json() for r in ecs_agent.requests]
    assert puts[0] == {"ProtectionEnabled": True, "ExpiresInMinutes": 30}
    assert puts[-1] == {"ProtectionEnabled": False}
    assert all(r.path == "/task-protection/v1/state" for r in ecs_agent.requests)

    assert recorder.contexts == [ctx] and recorder.job_ids == ["hotel-42"]
    assert ctx.result is not None and ctx.result.frames == 17
    assert ctx.job_id == "hotel-42" and ctx.traceparent == trace and ctx.receive_count == 1
    assert ctx.queue_wait is not None and 0 <= ctx.queue_wait < 30
    fetched = recorder.named("fetch_inputs")
    assert sorted(s.attributes["uri"] for s in fetched) == sorted(
        [*clips, spec["audio"]["uri"], spec["texts"][0]["font_uri"]]
    )
    assert all(s.attributes["bytes"] > 0 for s in fetched)
    assert len(recorder.named("upload")) == 1
    (hook,) = recorder.named("webhook")
    assert hook.attributes["delivered"] is True
    assert [p.name for p in worker.root.iterdir()] == ["fonts"]  # no job folder left


def test_served_jobs_are_traced(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any
) -> None:
    # Given the worker wired to telemetry as `gpu-worker serve` wires it
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gpu_worker.observability.setup import setup_telemetry
    from gpu_worker.observability.spans import serve_hooks

    spans = InMemorySpanExporter()
    telemetry = setup_telemetry(span_exporters=[spans])
    worker = make_worker(hooks=serve_hooks(telemetry))
    trace = "00-" + "3" * 32 + "-" + "4" * 16 + "-01"
    submit_job(
        aws.queue_url,
        job(aws, [aws.put("in/a.mp4", media.clip)], job_id="traced-1"),
        sqs=aws.sqs,
        traceparent=trace,
    )
    submit_job(
        aws.queue_url, job(aws, [aws.put("in/gone.mp4", b"")], job_id="traced-2"), sqs=aws.sqs
    )
    # When both messages are served
    done = worker.poll_once(wait=1)
    if len(done) < 2:
        done += worker.poll_once(wait=1)
    telemetry.force_flush()
    # Then each has its render_job root span with the stages as children
    roots = {
        s.attributes["job.id"]: s for s in spans.get_finished_spans() if s.name == "render_job"
    }
    ok, failed = roots["traced-1"], roots["traced-2"]
    assert format(ok.context.trace_id, "032x") == "3" * 32  # continues the backend's trace
    assert ok.attributes["job.outcome"] == "succeeded"
    assert ok.attributes["job.queue_wait_seconds"] >= 0
    assert ok.attributes["video.encoder"] == "libx264"
    children = {
        s.name
        for s in spans.get_finished_spans()
        if s.parent and s.parent.span_id == ok.context.span_id
    }
    assert {
        "fetch_inputs",
        "probe",
        "render_text",
        "decode",
        "composite",
        "encode",
        "mux_audio",
        "upload",
        "webhook",
    } <= children
    (attempt,) = [e for e in ok.events if e.name == "webhook.attempt"]
    assert attempt.attributes["http.response.status_code"] == 200
    assert attempt.attributes["webhook.id"] == webhook_id("traced-1", "video.completed")
    assert ok.attributes["webhook.outcome"] == "delivered"
    assert failed.attributes["error.code"] == "input_unreadable"
    assert failed.status.status_code.name == "ERROR"
    telemetry.shutdown()


def test_redelivered_job_gives_the_same_key_and_webhook_id(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any
) -> None:
    recorder = Recorder()
    worker = make_worker(hooks=recorder)
    font = aws.put("fonts/Bold.ttf", media.font)
    spec = job(
        aws, [aws.put("a.mp4", media.clip)], texts=[{"text": "Again", "font_uri": font, "size": 12}]
    )
    edited = {**spec, "texts": [{"text": "Edited", "font_uri": font, "size": 12}]}
    # the job, the same id with an edited body, then that edited body delivered again
    for body in (spec, edited, edited):
        aws.send(json.dumps(body))
    outcomes = [c.outcome for _ in range(3) for c in worker.poll_once(wait=1)]
    assert outcomes == [Outcome.COMPLETED] * 3
    assert [k for k in aws.object_keys() if k.startswith("out/")] == [f"out/{spec['job_id']}.mp4"]
    ids = {r.headers["webhook-id"] for r in receiver.posts()}
    assert len(receiver.posts()) == 3 and len(ids) == 1
    fonts = [
        s.attributes["cached"]
        for s in recorder.named("fetch_inputs")
        if "fonts/" in s.attributes["uri"]
    ]
    assert fonts == [False, True]  # fetched once per worker; nothing fetched the third time
    # the edited job is rendered again; its second delivery finds its output and is not
    assert [s.attributes["found"] for s in recorder.named("output_check")] == [False, False, True]
    assert len(recorder.named("encode")) == 2
    _, second, third = webhooks(receiver)
    assert third["output"] == second["output"] and third["encoder"] == second["encoder"]
    assert second["output"]["size_bytes"] == len(aws.get(f"out/{spec['job_id']}.mp4"))


def test_poison_messages_fail_once_and_are_deleted(
    aws: Aws, receiver: Receiver, make_worker: Any
) -> None:
    worker = make_worker()
    junk = "".join(chr(0x41 + (i * 7919) % 26) for i in range(1_000_000))
    bodies = [
        "this is { not json",
        json.dumps({"version": 1, "job_id": 5, "clips": "all of them", "output": []}),
        junk,
        json.dumps(job(aws, [f"s3://{aws.bucket}/a.mp4"], job_id="bad-1", texts=[{"text": 3}])),
    ]
    for body in bodies:
        aws.send(body)
    contexts = [c for _ in bodies for c in worker.poll_once(wait=1)]
    assert [c.outcome for c in contexts] == [Outcome.FAILED] * 4
    events = webhooks(receiver)
    assert [e["error"]["code"] for e in events] == ["invalid_job"] * 4
    assert all(e["type"] == "video.failed" for e in events)
    assert [e["job_id"] for e in events] == [None, None, None, "bad-1"]
    assert "texts[0]" in events[3]["error"]["message"]
    assert aws.counts() == (0, 0)
    assert worker.poll_once(wait=0) == []  # alive, nothing left


def _huge_png() -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


HOSTILE = {
    # name: (what the object holds, the error code the job must fail with)
    "hls playlist named .mp4": ("playlist", "unsupported_input"),
    "concat script named .mp4": ("concat", "unsupported_input"),
    "text file": ("text", "input_unreadable"),
    "zero bytes": ("empty", "input_unreadable"),
    "truncated mp4": ("truncated", "input_unreadable"),
    "png declaring 100000x100000": ("huge", "limit_exceeded"),
    "key with ../": ("dotdot", "input_forbidden"),
    "local path": ("local", "input_forbidden"),
    "file:// uri": ("file-uri", "input_forbidden"),
    "bucket not allowed": ("other-bucket", "input_forbidden"),
    "missing object": ("missing", "input_not_found"),
    "font_uri that is no font": ("bad-font", "input_unreadable"),
    "font whose hinting fails": ("bad-hinting", "input_unreadable"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_inputs_fail_with_a_clear_code(
    case: str, aws: Aws, media: Media, receiver: Receiver, make_worker: Any
) -> None:
    kind, code = HOSTILE[case]
    worker = make_worker()
    outside = str(media.clip)  # a real video outside the scratch folder: never to be read
    texts: list[dict[str, Any]] = []
    clip = aws.put("in/ok.mp4", media.clip)
    if kind == "playlist":
        uri = aws.put("in/x.mp4", f"#EXTM3U\n#EXTINF:1,\n{outside}\n#EXT-X-ENDLIST\n".encode())
    elif kind == "concat":
        uri = aws.put("in/x.mp4", f"ffconcat version 1.0\nfile '{outside}'\n".encode())
    elif kind == "text":
        uri = aws.put("in/x.mp4", b"just some notes, not a video\n" * 20)
    elif kind == "empty":
        uri = aws.put("in/x.mp4", b"")
    elif kind == "truncated":
        uri = aws.put("in/x.mp4", media.clip.read_bytes()[: media.clip.stat().st_size // 3])
    elif kind == "huge":
        uri = aws.put("in/x.png", _huge_png())
    elif kind == "dotdot":
        uri = f"s3://{aws.bucket}/in/../../etc/passwd"
    elif kind == "local":
        uri = outside
    elif kind == "file-uri":
        uri = f"file://{outside}"
    elif kind == "other-bucket":
        aws.s3.create_bucket(Bucket=f"{aws.bucket}-x")
        aws.s3.put_object(Bucket=f"{aws.bucket}-x", Key="a.mp4", Body=media.clip.read_bytes())
        uri = f"s3://{aws.bucket}-x/a.mp4"
    elif kind == "missing":
        uri = f"s3://{aws.bucket}/in/nothing.mp4"
    elif kind == "bad-font":
        uri = clip
        texts = [{"text": "x", "size": 10, "font_uri": aws.put("f/x.ttf", b"not a font" * 50)}]
    else:
        uri = clip
        font = hinted_font(prep=bytes([PUSHB_1, 200, CALL]))  # calls a function never defined
        texts = [{"text": "Hotel", "size": 10, "font_uri": aws.put("f/h.ttf", font)}]
    aws.send(json.dumps(job(aws, [clip, uri], texts=texts)))

    (ctx,) = worker.poll_once(wait=1)

    assert ctx.outcome is Outcome.FAILED
    assert ctx.error is not None and ctx.error.code == code
    if kind in ("bad-font", "bad-hinting"):  # named as the job names it
        assert ctx.error.message.startswith(f"font {texts[0]['font_uri']}: ")
    (event,) = webhooks(receiver)
    assert event["type"] == "video.failed" and event["error"]["code"] == code
    assert event["job_id"] == ctx.job_id
    assert aws.counts() == (0, 0)
    assert not [k for k in aws.object_keys() if k.startswith("out/")]
    assert [p.name for p in worker.root.iterdir()] in ([], ["fonts"])


def test_s3_errors_are_retried_then_dead_lettered(
    aws: Aws, failing_s3: ThreadingHTTPServer, receiver: Receiver, make_worker: Any
) -> None:
    worker = make_worker(s3=client("s3", s3_endpoint(failing_s3), attempts=1))
    assert worker.max_receives == 2  # read from the queue's redrive policy
    body = json.dumps(job(aws, [f"s3://{aws.bucket}/a.mp4"], job_id="flaky-1"))
    aws.send(body)

    (first,) = worker.poll_once(wait=1)
    assert first.outcome is Outcome.RETRY and first.error is not None
    assert first.error.code == "transient"
    assert receiver.posts() == []  # not the last attempt: no webhook yet
    assert worker.poll_once(wait=0) == []  # hidden for a while (1 s, then 2 s)
    assert aws.counts() == (0, 1)

    (second,) = worker.poll_once(wait=3)
    assert second.outcome is Outcome.RETRY and second.receive_count == 2
    (event,) = webhooks(receiver)  # the last attempt tells the backend
    assert event["type"] == "video.failed" and event["job_id"] == "flaky-1"
    assert event["error"]["code"] == "transient" and "dead-letter" in event["error"]["message"]

    assert worker.poll_once(wait=4) == []  # SQS moves it to the dead-letter queue
    assert aws.counts() == (0, 0)
    (dead,) = aws.sqs.receive_message(QueueUrl=aws.dlq_url, WaitTimeSeconds=1)["Messages"]
    assert dead["Body"] == body


def test_undelivered_webhook_is_handed_on_and_does_not_fail_the_render(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.stop()
    worker = make_worker(GPU_WORKER_WEBHOOK_TIMEOUT="1")
    spec = job(aws, [aws.put("a.mp4", media.clip)], job_id="quiet-1")
    aws.send(json.dumps(spec))
    (ctx,) = worker.poll_once(wait=1)
    assert ctx.outcome is Outcome.COMPLETED
    assert ctx.delivery is not None and not ctx.delivery.delivered and ctx.delivery.pending
    assert "out/quiet-1.mp4" in aws.object_keys() and aws.counts() == (0, 0)
    assert aws.waiting(aws.webhook_queue_url) == 1  # the job's message is gone, not its webhook
    assert any("quiet-1" in r.message and "retry queue" in r.message for r in caplog.records)


def test_webhooks_outlast_a_receiver_that_refuses_for_a_while(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any, tmp_path: Path
) -> None:
    # In production the backend refuses for two minutes from the first webhook on and the
    # schedule is 30 s, 2 min, 10 min...; here it refuses for 2 s, the first round lasts 1 s
    # and the schedule is 1 s, 1 s, 2 s (worker_env): the same story in seconds.
    # Two workers, each rendering and delivering from the same queues.
    recorder = Recorder()
    workers = [
        make_worker(
            hooks=recorder,
            GPU_WORKER_WEBHOOK_TIMEOUT="1",
            GPU_WORKER_HEALTH_FILE=str(tmp_path / f"health-{n}.json"),  # one per worker
        )
        for n in range(2)
    ]
    clip = aws.put("a.mp4", media.clip)
    job_ids = [f"outage-{n}" for n in range(3)]
    receiver.refuse_for(2.0)
    for job_id in job_ids:
        aws.send(json.dumps(job(aws, [clip], job_id=job_id)))
    threads = [threading.Thread(target=worker.run) for worker in workers]
    for thread in threads:
        thread.start()
    try:
        receiver.wait_for_accepted(3, timeout=30)
        deadline = time.monotonic() + 5
        while aws.waiting(aws.webhook_queue_url) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for worker in workers:
            worker.shutdown.request()
        for thread in threads:
            thread.join(10)

    expected = {webhook_id(j, "video.completed"): j for j in job_ids}
    accepted = receiver.accepted()
    # each webhook-id accepted exactly once, every one after the receiver came back
    assert sorted(r.headers["webhook-id"] for r in accepted) == sorted(expected)
    assert all(r.at >= receiver.refusing_until for r in accepted)
    refused = [r for r in receiver.posts() if r.status == 503]
    assert refused and all(r.at < receiver.refusing_until for r in refused)
    for request in receiver.posts():  # the same body under one id, signed afresh each time
        event = verify_webhook(request.headers, request.body, SECRET)
        assert event["job_id"] == expected[request.headers["webhook-id"]]
        same = [
            r for r in receiver.posts() if r.headers["webhook-id"] == request.headers["webhook-id"]
        ]
        assert {r.body for r in same} == {request.body}
    handed_on = [s for s in recorder.named("webhook") if s.attributes["pending"]]
    assert handed_on  # the job's own round gave up: the retry queue delivered
    # no job rendered twice, nothing left anywhere
    assert len(recorder.named("encode")) == 3
    assert sorted(k for k in aws.object_keys() if k.startswith("out/")) == sorted(
        f"out/{j}.mp4" for j in job_ids
    )
    assert aws.counts() == (0, 0)
    assert aws.waiting(aws.webhook_queue_url) == 0 and aws.waiting(aws.webhook_dlq_url) == 0


def test_a_410_dead_letters_the_webhook_at_once_and_replay_sends_it(
    aws: Aws,
    receiver: Receiver,
    make_worker: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gpu_worker import cli

    worker = make_worker()
    receiver.fail(1, 410)
    aws.send("this is { not json")  # fails at once: a video.failed, no render
    (ctx,) = worker.poll_once(wait=1)
    assert ctx.outcome is Outcome.FAILED
    assert ctx.delivery is not None and ctx.delivery.dead_lettered
    (refused,) = receiver.posts()  # not retried
    assert refused.status == 410
    assert aws.counts() == (0, 0) and aws.waiting(aws.webhook_queue_url) == 0
    (dead,) = aws.sqs.receive_message(QueueUrl=aws.webhook_dlq_url, WaitTimeSeconds=1)["Messages"]
    record = json.loads(dead["Body"])
    assert record["webhook_id"] == refused.headers["webhook-id"]
    assert record["dead_letter_reason"] == "not retryable: HTTP 410"
    aws.sqs.change_message_visibility(
        QueueUrl=aws.webhook_dlq_url, ReceiptHandle=dead["ReceiptHandle"], VisibilityTimeout=0
    )

    for name, value in worker_env(aws, receiver.url, tmp_path / "replay").items():
        monkeypatch.setenv(name, value)
    assert cli.main(["webhooks", "replay", "--dry-run", "--limit", "1"]) == 0
    assert receiver.posts() == [refused]  # a dry run sends nothing
    assert cli.main(["webhooks", "replay", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert f"delivered {refused.headers['webhook-id']} video.failed" in out
    assert "1 delivered, 0 left" in out
    _, again = receiver.posts()
    assert again.status == 200 and again.body == refused.body
    assert again.headers["webhook-id"] == refused.headers["webhook-id"]
    assert verify_webhook(again.headers, again.body, SECRET)["error"]["code"] == "invalid_job"
    assert aws.waiting(aws.webhook_dlq_url) == 0


def test_run_serves_concurrently_until_stopped(
    aws: Aws, media: Media, receiver: Receiver, ecs_agent: Receiver, make_worker: Any
) -> None:
    worker = make_worker(GPU_WORKER_CONCURRENCY="2", ECS_AGENT_URI=ecs_agent.url)
    clip = aws.put("a.mp4", media.clip)
    for n in range(3):
        aws.send(json.dumps(job(aws, [clip], job_id=f"many-{n}")))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run()))
    thread.start()
    receiver.wait_for(3, timeout=30)
    worker.shutdown.request()
    thread.join(10)
    assert codes == [0]
    assert sorted(e["job_id"] for e in webhooks(receiver)) == ["many-0", "many-1", "many-2"]
    assert aws.counts() == (0, 0)
    states = [r.json()["ProtectionEnabled"] for r in ecs_agent.requests]
    assert states[0] is True and states[-1] is False  # off once nothing is in hand


# --------------------------------------------------------------------------------------------
# a real `gpu-worker serve` process, killed and stopped


def slow_job(aws: Aws, media: Media, job_id: str) -> dict[str, Any]:
    """Some seconds of real rendering on a small machine: 8 s upscaled, "high" quality."""
    return job(
        aws,
        [aws.put("in/long.mp4", media.long_clip)],
        job_id=job_id,
        output={"width": 432, "height": 768, "fps": 30, "quality": "high"},
    )


def test_sigkill_mid_render_loses_nothing(
    aws: Aws, media: Media, receiver: Receiver, serve: Any, make_worker: Any, tmp_path: Path
) -> None:
    env = worker_env(aws, receiver.url, tmp_path / "a", GPU_WORKER_VISIBILITY_TIMEOUT="2")
    first = serve(env)
    aws.send(json.dumps(slow_job(aws, media, "killed-1")))
    first.wait_for("killed-1: frames")
    first.process.send_signal(signal.SIGKILL)
    assert first.process.wait(10) == -signal.SIGKILL

    # A second worker gets the job once the visibility timeout runs out, and keeps it
    # (heartbeat) although its render outlasts that timeout: nobody else can take it.
    recorder = Recorder()
    second = make_worker(hooks=recorder, GPU_WORKER_VISIBILITY_TIMEOUT="2")
    results: list[JobContext] = []
    thread = threading.Thread(target=lambda: results.extend(second.poll_once(wait=10)))
    thread.start()
    assert recorder.started.wait(15)
    rival: list[Any] = []
    while thread.is_alive():
        rival += aws.sqs.receive_message(QueueUrl=aws.queue_url, WaitTimeSeconds=1).get(
            "Messages", []
        )
    thread.join()
    assert rival == []
    (ctx,) = results
    assert ctx.outcome is Outcome.COMPLETED and ctx.receive_count == 2
    assert [k for k in aws.object_keys() if k.startswith("out/")] == ["out/killed-1.mp4"]
    (event,) = webhooks(receiver)
    assert event["type"] == "video.completed" and event["job_id"] == "killed-1"
    assert aws.counts() == (0, 0)


@pytest.mark.parametrize(("deadline", "finished"), [("60", True), ("1", False)])
def test_sigterm_mid_render_finishes_or_releases_and_exits_0(
    deadline: str,
    finished: bool,
    aws: Aws,
    media: Media,
    receiver: Receiver,
    serve: Any,
    tmp_path: Path,
) -> None:
    scratch = tmp_path / "scratch"
    worker = serve(worker_env(aws, receiver.url, scratch, GPU_WORKER_STOP_DEADLINE=deadline))
    aws.send(json.dumps(slow_job(aws, media, "stopped-1")))
    worker.wait_for("stopped-1: frames")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(30) == 0
    outputs = [k for k in aws.object_keys() if k.startswith("out/")]
    if finished:
        assert outputs == ["out/stopped-1.mp4"]
        (event,) = webhooks(receiver)
        assert event["type"] == "video.completed"
        assert aws.counts() == (0, 0)
    else:
        assert outputs == [] and receiver.posts() == []
        assert aws.counts() == (1, 0)  # visible again at once, not after 30 s
    assert list(scratch.iterdir()) == []  # the worker's scratch folder is gone


def test_sigkill_between_upload_and_webhook_renders_once_and_delivers_once(
    aws: Aws, media: Media, receiver: Receiver, serve: Any, make_worker: Any, tmp_path: Path
) -> None:
    env = worker_env(aws, receiver.url, tmp_path / "a", GPU_WORKER_VISIBILITY_TIMEOUT="2")
    first = serve(env)
    spec = job(aws, [aws.put("in/a.mp4", media.clip)], job_id="uploaded-1")
    aws.send(json.dumps(spec))
    receiver.hold()  # the webhook POST hangs: the video is uploaded, the webhook in flight
    receiver.fail(1, 503)
    receiver.wait_for(1, timeout=30)
    first.process.send_signal(signal.SIGKILL)
    assert first.process.wait(10) == -signal.SIGKILL
    receiver.release()
    before = aws.s3.head_object(Bucket=aws.bucket, Key="out/uploaded-1.mp4")

    recorder = Recorder()
    second = make_worker(hooks=recorder, GPU_WORKER_VISIBILITY_TIMEOUT="2")
    (ctx,) = second.poll_once(wait=10)

    assert ctx.outcome is Outcome.COMPLETED and ctx.receive_count == 2
    assert [s.attributes["found"] for s in recorder.named("output_check")] == [True]
    assert not recorder.named("fetch_inputs") and not recorder.named("encode")  # no render
    after = aws.s3.head_object(Bucket=aws.bucket, Key="out/uploaded-1.mp4")
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
    assert [k for k in aws.object_keys() if k.startswith("out/")] == ["out/uploaded-1.mp4"]
    (delivered,) = receiver.accepted()
    assert delivered.headers["webhook-id"] == webhook_id("uploaded-1", "video.completed")
    event = verify_webhook(delivered.headers, delivered.body, SECRET)
    assert event["output"]["size_bytes"] == before["ContentLength"]
    assert (event["output"]["width"], event["output"]["height"]) == (64, 112)
    assert event["encoder"] == "libx264" and 0.9 < event["output"]["duration"] < 1.2
    assert aws.counts() == (0, 0) and aws.waiting(aws.webhook_queue_url) == 0
