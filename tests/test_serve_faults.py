"""The serve loop under faults: SQS errors, a stop racing a long poll or a late job, bounded
memory over hundreds of jobs."""

from __future__ import annotations

import json
import logging
import resource
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aws_fixtures import SECRET, Aws, Media, Receiver, job, worker_env

from gpu_worker.client import verify_webhook
from gpu_worker.errors import TransientError
from gpu_worker.render import text as text_module
from gpu_worker.render.pipeline import RenderResult
from gpu_worker.service.messages import Outcome
from gpu_worker.service.worker import Worker
from gpu_worker.settings import Settings

pytest_plugins = ["aws_fixtures"]


class FlakySqs:
    """The real (moto) SQS client, except that the named calls fail their first ``times``.
    Calls on the webhook queues (``aws_fixtures`` names them ``webhooks-…``), which the
    worker's webhook thread polls beside its job threads, pass straight through, uncounted."""

    def __init__(self, sqs: Any, **times: int) -> None:
        self.sqs = sqs
        self.left = dict(times)
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.sqs, name)

        def call(**kwargs: Any) -> Any:
            if "/webhooks-" in str(kwargs.get("QueueUrl", "")):
                return real(**kwargs)
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.left.get(name, 0) > 0:
                self.left[name] -= 1
                raise ConnectionError(f"{name}: connection reset by peer")
            return real(**kwargs)

        return call


def events(receiver: Receiver) -> list[dict[str, Any]]:
    return [verify_webhook(r.headers, r.body, SECRET) for r in receiver.posts()]


def worker_on(aws: Aws, receiver: Receiver, tmp_path: Path, sqs: Any, **env: str) -> Worker:
    settings = Settings.from_env(worker_env(aws, receiver.url, tmp_path / "scratch", **env))
    worker = Worker(settings, sqs=sqs, s3=aws.s3)
    worker.open()
    return worker


def run_in_thread(worker: Worker) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run()), daemon=True)
    thread.start()
    return thread, codes


def test_receive_errors_back_off_then_serve(
    aws: Aws, media: Media, receiver: Receiver, tmp_path: Path
) -> None:
    # Given a queue that refuses the first two receives
    sqs = FlakySqs(aws.sqs, receive_message=2)
    worker = worker_on(aws, receiver, tmp_path, sqs)
    aws.send(json.dumps(job(aws, [aws.put("in/a.mp4", media.clip)], job_id="after-errors")))
    started = time.monotonic()
    thread, codes = run_in_thread(worker)
    receiver.wait_for(1, timeout=40)
    waited = time.monotonic() - started
    worker.shutdown.request()
    thread.join(15)
    worker.close()
    # Then it waited 1 + 2 s between them (not a busy loop) and served the job
    assert sqs.calls["receive_message"] >= 3 and waited >= 3
    assert codes == [0] and events(receiver)[0]["type"] == "video.completed"


def test_visibility_and_delete_errors_do_not_fail_a_job(
    aws: Aws, media: Media, receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an SQS that refuses every heartbeat extension and the delete
    sqs = FlakySqs(aws.sqs, change_message_visibility=100, delete_message=1)
    worker = worker_on(aws, receiver, tmp_path, sqs, GPU_WORKER_VISIBILITY_TIMEOUT="2")
    spec = job(aws, [aws.put("in/long.mp4", media.long_clip)], job_id="beats-fail")
    spec["output"].update({"width": 432, "height": 768, "fps": 30, "quality": "high"})
    aws.send(json.dumps(spec))
    with caplog.at_level(logging.WARNING):
        (ctx,) = worker.poll_once(wait=1)
    worker.close()
    # Then the job completed and was announced; the failed delete is logged, and the message
    # comes back for a later receive (it is not lost)
    assert ctx.outcome is Outcome.COMPLETED and sqs.calls["change_message_visibility"] >= 1
    assert [e["type"] for e in events(receiver)] == ["video.completed"]
    assert any("beat failed" in r.message for r in caplog.records)
    assert any("delete failed" in r.message for r in caplog.records)
    assert sum(aws.counts()) == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_every_worker_thread_dying_exits_1(
    aws: Aws, media: Media, receiver: Receiver, tmp_path: Path
) -> None:
    worker = worker_on(aws, receiver, tmp_path, aws.sqs, GPU_WORKER_CONCURRENCY="2")
    for n in range(2):
        aws.send(json.dumps(job(aws, [aws.put("in/a.mp4", media.clip)], job_id=f"dies-{n}")))

    def broken(message: Any) -> Any:
        raise RuntimeError("a bug in the worker")

    worker.handle = broken  # type: ignore[method-assign]
    thread, codes = run_in_thread(worker)
    thread.join(30)
    worker.close()
    assert codes == [1]


def test_a_stop_during_a_long_poll_releases_what_it_receives_at_once(
    aws: Aws, media: Media, receiver: Receiver, tmp_path: Path
) -> None:
    # Given a worker waiting in a 5 s long poll on an empty queue
    worker = worker_on(aws, receiver, tmp_path, aws.sqs, GPU_WORKER_POLL_WAIT="5")
    thread, codes = run_in_thread(worker)
    time.sleep(1.0)
    # When it is told to stop, and a job arrives while that poll is still in flight
    worker.shutdown.request()
    aws.send(json.dumps(job(aws, [aws.put("in/a.mp4", media.clip)], job_id="late-1")))
    thread.join(15)
    worker.close()
    # Then the message is visible again at once (not hidden for the 30 s visibility timeout)
    # and nothing was rendered
    assert codes == [0] and receiver.posts() == []
    assert aws.counts() == (1, 0)


def test_a_job_still_running_after_the_stop_deadline_does_not_settle_its_message(
    aws: Aws, media: Media, receiver: Receiver, tmp_path: Path
) -> None:
    # Given a job whose render outlives the stop deadline and then fails transiently
    entered, leave = threading.Event(), threading.Event()

    def stuck_render(*args: Any, **kwargs: Any) -> RenderResult:
        entered.set()
        leave.wait(30)
        raise TransientError("the render ended after the worker had let go")

    settings = Settings.from_env(
        worker_env(aws, receiver.url, tmp_path / "scratch", GPU_WORKER_STOP_DEADLINE="1")
    )
    worker = Worker(settings, sqs=aws.sqs, s3=aws.s3, render=stuck_render)
    worker.open()
    aws.send(json.dumps(job(aws, [aws.put("in/a.mp4", media.clip)], job_id="late-2")))
    thread, codes = run_in_thread(worker)
    assert entered.wait(20)
    # When the worker stops, the deadline passes and the message is released
    worker.shutdown.request()
    thread.join(10)
    assert codes == [0] and aws.counts() == (1, 0)
    worker.close()
    assert worker.root is not None and worker.root.exists()  # the job still works in it
    # Another worker takes the message now; then the first job ends
    taken = aws.sqs.receive_message(QueueUrl=aws.queue_url, VisibilityTimeout=30)["Messages"]
    leave.set()
    time.sleep(1.0)
    # Then the late job neither hid the message again nor sent video.failed
    assert len(taken) == 1 and aws.counts() == (0, 1)
    assert receiver.posts() == []


def test_deeply_nested_json_fails_as_invalid_job(
    aws: Aws, receiver: Receiver, tmp_path: Path
) -> None:
    worker = worker_on(aws, receiver, tmp_path, aws.sqs)
    for depth in (990, 100_000):
        aws.send(
            '{"version": 1, "job_id": "deep", "metadata": {"x": ' + "[" * depth + "]" * depth + "}}"
        )
        (ctx,) = worker.poll_once(wait=1)
        assert ctx.outcome is Outcome.FAILED and ctx.error is not None
        assert ctx.error.code == "invalid_job"
    worker.close()
    assert [e["error"]["code"] for e in events(receiver)] == ["invalid_job", "invalid_job"]
    assert aws.counts() == (0, 0)


def _rss_mb() -> float:
    """Resident memory of this process now (Linux: /proc/self/statm), in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 1e6


@pytest.mark.soak
def test_memory_stays_flat_over_300_jobs_with_their_own_fonts(
    aws: Aws, media: Media, receiver: Receiver, tmp_path: Path
) -> None:
    # Given 300 jobs, each with its own font file (font_uri) and its own text size
    worker = worker_on(aws, receiver, tmp_path, aws.sqs, GPU_WORKER_POLL_WAIT="0")
    clip = aws.put("in/a.mp4", media.clip)
    font = media.font.read_bytes()
    jobs = 300
    for start in range(0, jobs, 10):
        entries = []
        for n in range(start, start + 10):
            uri = aws.put(f"fonts/job-{n}.ttf", font)
            size = {"width": 128, "height": 128, "fps": 2}
            spec = job(aws, [clip], job_id=f"mem-{n}", output=size)
            spec["clips"][0]["duration"] = 0.5
            spec["texts"] = [{"text": "Été", "font_uri": uri, "size": 8 + n % 41}]
            entries.append({"Id": str(n), "MessageBody": json.dumps(spec)})
        aws.sqs.send_message_batch(QueueUrl=aws.queue_url, Entries=entries)
    # When one worker serves them all
    rss: list[float] = []
    done = 0
    while done < jobs:
        for ctx in worker.poll_once(wait=0):
            assert ctx.outcome is Outcome.COMPLETED, ctx.error
            done += 1
            rss.append(_rss_mb())
    worker.close()
    # Then memory after the first 20 jobs grows by less than 50 MB, and the caches are bounded
    growth = max(rss[20:]) - rss[19]
    print(f"resident memory after job 20: {rss[19]:.0f} MB, highest after: {max(rss[20:]):.0f} MB")
    assert growth < 50, f"resident memory grew by {growth:.0f} MB"
    assert text_module._font.cache_info().currsize <= text_module.FONT_CACHE_SIZE
    assert worker.runner.font_cache is not None and len(worker.runner.font_cache) <= 64
    assert aws.counts() == (0, 0)
