"""The queue worker behind ``gpu-worker serve``: SQS in, S3 out, a signed webhook, nothing lost.

Each message gets exactly one explicit :class:`Outcome`, and only the first two delete it:

    completed   rendered, uploaded, ``video.completed`` sent           → deleted
    failed      a permanent error (bad job, bad input, limits);
                ``video.failed`` sent                                 → deleted
    retry       a transient error; visible again after a growing delay,
                and on the queue's last attempt ``video.failed`` sent  → redelivered / DLQ
    released    given back on shutdown (visibility 0)                 → another worker, at once

While a job runs, a heartbeat keeps its message invisible and ECS scale-in protection is on.
SIGTERM stops polling; a job in hand is finished if it can end before the stop deadline, else
released. A worker killed outright loses nothing: SQS hands the message out again.
Every job runs inside ``job_hooks(JobContext)``, the one place telemetry plugs in.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Any

from gpu_worker.errors import GpuWorkerError, InternalError, TransientError
from gpu_worker.job import JOB_ID_PATTERN, METADATA_MAX_BYTES, Job, decode_job_text, parse_job
from gpu_worker.render.encoder import choose_encoder
from gpu_worker.render.pipeline import RenderResult, render_job
from gpu_worker.render.stages import StageClock
from gpu_worker.service import webhook
from gpu_worker.service.fetch import FontCache, fetch_inputs, plan_inputs
from gpu_worker.service.heartbeat import Heartbeat
from gpu_worker.service.protection import TaskProtection
from gpu_worker.service.storage import Storage
from gpu_worker.service.webhook import WebhookSender
from gpu_worker.settings import SQS_MAX_VISIBILITY, Settings

log = logging.getLogger(__name__)

_JOB_ID = re.compile(JOB_ID_PATTERN)


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    RETRY = "retry"
    RELEASED = "released"


DELETED = frozenset({Outcome.COMPLETED, Outcome.FAILED})


def retry_visibility(receive_count: int, base: float, cap: float) -> int:
    """Seconds a message stays hidden after transient failure number ``receive_count``:
    ``base`` doubling per attempt, at most ``cap`` (and at most SQS's 12 hours)."""
    if base <= 0:
        return 0
    seconds = base * 2 ** max(0, receive_count - 1)
    return int(min(cap, seconds, SQS_MAX_VISIBILITY))


def finish_in_time(seconds_per_frame: float | None, frames_left: int, seconds_left: float) -> bool:
    """Whether a render can end within ``seconds_left``; with no estimate yet, keep going."""
    if seconds_left <= 0:
        return False
    if seconds_per_frame is None:
        return True
    return seconds_per_frame * frames_left <= seconds_left


class Released(Exception):
    """The job was given back because the worker is stopping; not a failure."""


@dataclass
class JobContext:
    """One message being handled: what telemetry needs, in one place (see ``job_hooks``).

    A hook is entered with ``job_id`` (as the message claims it; None for a body without a
    sane one), ``traceparent``, ``queue_wait``, ``receive_count`` and ``clock`` (add a listener
    to see every stage: fetch_inputs per input, probe ... encode, upload, webhook). When it
    exits, ``outcome`` is decided and ``result`` (rendered) or ``error`` (failed) is set;
    no exception passes through a hook.
    """

    message_id: str
    receipt: str = field(repr=False)
    receive_count: int
    sent_timestamp: float | None  # epoch seconds the message was sent (SQS SentTimestamp)
    traceparent: str | None  # W3C trace context the backend attached, if any
    received_at: float = field(default_factory=time.time)
    clock: StageClock = field(default_factory=StageClock)
    job_id: str | None = None
    outcome: Outcome | None = None
    error: GpuWorkerError | None = None
    result: RenderResult | None = None
    delivery: webhook.Delivery | None = None

    @property
    def queue_wait(self) -> float | None:
        """Seconds the message waited in the queue before this receive."""
        if self.sent_timestamp is None:
            return None
        return max(0.0, self.received_at - self.sent_timestamp)

    @property
    def subject(self) -> str:
        """What the webhook id is derived from: the job id, or the message when there is none."""
        return self.job_id if self.job_id is not None else f"sqs-message-{self.message_id}"

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> JobContext:
        attributes = message.get("Attributes") or {}
        sent = attributes.get("SentTimestamp")
        trace = (message.get("MessageAttributes") or {}).get("traceparent") or {}
        try:
            count = int(attributes.get("ApproximateReceiveCount", 1))
        except ValueError:
            count = 1
        return cls(
            message_id=str(message.get("MessageId", "")),
            receipt=str(message.get("ReceiptHandle", "")),
            receive_count=count,
            sent_timestamp=int(sent) / 1000 if sent and str(sent).isdigit() else None,
            traceparent=trace.get("StringValue"),
        )


JobHooks = Callable[[JobContext], AbstractContextManager[object]]


def no_hooks(ctx: JobContext) -> AbstractContextManager[object]:
    return nullcontext()


class Shutdown:
    """Whether the worker was told to stop, and how long it has left then."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.event = threading.Event()
        self.stop_at: float | None = None

    def request(self) -> None:
        if self.stop_at is None:
            self.stop_at = time.monotonic() + self.deadline
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def left(self) -> float:
        if self.stop_at is None:
            return math.inf
        return self.stop_at - time.monotonic()

    @property
    def reserve(self) -> float:
        """Seconds kept back from the deadline for upload and webhook."""
        return min(10.0, 0.2 * self.deadline)


def _best_effort(raw: Any) -> tuple[str | None, dict[str, Any]]:
    """The job id and metadata of a job that failed validation, if they look sane."""
    if not isinstance(raw, dict):
        return None, {}
    job_id = raw.get("job_id")
    job_id = job_id if isinstance(job_id, str) and _JOB_ID.match(job_id) else None
    metadata = raw.get("metadata")
    if isinstance(metadata, dict):
        try:
            if len(json.dumps(metadata).encode()) <= METADATA_MAX_BYTES:
                return job_id, metadata
        except (TypeError, ValueError):
            pass
    return job_id, {}


def _peek_job_id(body: str) -> str | None:
    """The job id a message claims, before validation (None when it holds no sane one)."""
    try:
        return _best_effort(json.loads(body))[0]
    except (ValueError, RecursionError):
        return None


def aws_client(service: str, settings: Settings) -> Any:
    """A boto3 client for ``service`` (thread-safe), configured from the settings."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard"},
        max_pool_connections=max(10, 4 * settings.concurrency + 2),
        connect_timeout=10,
        read_timeout=max(60, settings.poll_wait + 10),
    )
    make: Any = boto3.session.Session().client  # typed per service name; ours is a str
    return make(
        service, region_name=settings.region, endpoint_url=settings.endpoint_url, config=config
    )


class Worker:
    """Polls the queue with ``settings.concurrency`` threads and handles each message."""

    def __init__(
        self,
        settings: Settings,
        *,
        sqs: Any,
        s3: Any,
        webhooks: WebhookSender | None = None,
        protection: TaskProtection | None = None,
        job_hooks: JobHooks | None = None,
        render: Callable[..., RenderResult] = render_job,
    ) -> None:
        self.settings = settings.require_serving()
        assert settings.queue_url is not None and settings.webhook_url is not None
        self.queue_url: str = settings.queue_url
        self.sqs = sqs
        self.storage = Storage(s3)
        self.webhooks = webhooks or WebhookSender(
            settings.webhook_url,
            settings.webhook_key,
            allow_private=settings.webhook_allow_private,
            total_timeout=settings.webhook_timeout,
        )
        self.protection = protection or TaskProtection(settings.ecs_agent_uri)
        self.job_hooks: JobHooks = job_hooks or no_hooks
        self.render = render
        self.shutdown = Shutdown(settings.stop_deadline)
        self.max_receives = settings.max_receives
        self.root: Path | None = None
        self.font_cache: FontCache | None = None
        self._lock = threading.Lock()
        self._in_hand: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings, job_hooks: JobHooks | None = None) -> Worker:
        return cls(
            settings,
            sqs=aws_client("sqs", settings),
            s3=aws_client("s3", settings),
            job_hooks=job_hooks,
        )

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> Worker:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Make this worker's scratch folder and learn the queue's last attempt."""
        self.settings.scratch_dir.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="worker-", dir=self.settings.scratch_dir))
        self.font_cache = FontCache(self.root / "fonts", self.storage)
        if self.max_receives is None:
            self.max_receives = self._redrive_max_receives()

    def close(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _redrive_max_receives(self) -> int | None:
        try:
            answer = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]
            )
            policy = answer.get("Attributes", {}).get("RedrivePolicy")
            if policy:
                return int(json.loads(policy)["maxReceiveCount"])
        except Exception as exc:
            log.warning("cannot read the queue's redrive policy: %s", exc)
            return None
        log.warning(
            "the queue has no redrive policy: a job failing transiently is retried until the "
            "queue's retention ends, and no video.failed webhook is sent for it"
        )
        return None

    def run(self) -> int:
        """Poll until told to stop; then finish or release what is in hand; 0 when clean."""
        threads = [
            threading.Thread(target=self._loop, name=f"worker-{i}", daemon=True)
            for i in range(self.settings.concurrency)
        ]
        for thread in threads:
            thread.start()
        log.info(
            "serving %s with %d thread(s); last attempt %s",
            self.settings.queue_url,
            len(threads),
            self.max_receives or "unknown",
        )
        while not self.shutdown.event.wait(0.5):
            if not any(t.is_alive() for t in threads):
                log.error("every worker thread has stopped")
                return 1
        with self._lock:
            busy = len(self._in_hand)
        log.info("stopping: %d job(s) in hand, %.0f s to finish them", busy, self.shutdown.left())
        for thread in threads:
            thread.join(timeout=max(0.0, self.shutdown.left()))
        with self._lock:
            leftover = dict(self._in_hand)
        for message_id, receipt in leftover.items():
            log.warning("message %s: still running at the stop deadline; released", message_id)
            self._change_visibility(message_id, receipt, 0)
        log.info("stopped")
        return 0

    def _loop(self) -> None:
        failures = 0
        while not self.shutdown.requested:
            try:
                messages = self._receive(self.settings.poll_wait)
                failures = 0
            except TransientError as exc:
                failures += 1
                delay = min(30.0, 2.0**failures)
                log.warning("cannot receive from the queue (%s); again in %.0f s", exc, delay)
                self.shutdown.event.wait(delay)
                continue
            for message in messages:
                self.handle(message)

    def poll_once(self, wait: int = 0) -> list[JobContext]:
        """Receive at most one message and handle it (tests and one-shot use)."""
        return [self.handle(message) for message in self._receive(wait)]

    def _receive(self, wait: int) -> list[dict[str, Any]]:
        try:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=wait,
                VisibilityTimeout=self.settings.visibility_timeout,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        except Exception as exc:
            raise TransientError(f"receive: {type(exc).__name__}: {exc}") from exc
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    # -- one message --------------------------------------------------------------------------

    def handle(self, message: Mapping[str, Any]) -> JobContext:
        """Process one message to an outcome and settle it with SQS; never raises."""
        ctx = JobContext.from_message(message)
        with self._lock:
            self._in_hand[ctx.message_id] = ctx.receipt
        try:
            if self.shutdown.requested:
                ctx.outcome = Outcome.RELEASED
                self._settle(ctx)
                return ctx
            body = str(message.get("Body", ""))
            ctx.job_id = _peek_job_id(body)
            with self.job_hooks(ctx):
                ctx.outcome = self._process(ctx, body)
                self._settle(ctx)
        except Exception:
            log.exception("message %s: unexpected failure; left for redelivery", ctx.message_id)
        finally:
            with self._lock:
                self._in_hand.pop(ctx.message_id, None)
        log.info(
            "job %s (message %s, attempt %d): %s%s",
            ctx.job_id or "-",
            ctx.message_id,
            ctx.receive_count,
            ctx.outcome,
            f" {ctx.error.code}: {ctx.error.message}" if ctx.error else "",
        )
        return ctx

    def _process(self, ctx: JobContext, body: str) -> Outcome:
        beat_every = self.settings.visibility_timeout / 3
        with (
            self.protection.held(),
            Heartbeat(lambda: self._beat(ctx), beat_every, f"heartbeat-{ctx.message_id[:8]}"),
        ):
            metadata: dict[str, Any] = {}
            try:
                raw = decode_job_text(body)
                ctx.job_id, metadata = _best_effort(raw)
                job = parse_job(raw)
                metadata = job.metadata
                self._complete(ctx, job)
                return Outcome.COMPLETED
            except Released:
                return Outcome.RELEASED
            except GpuWorkerError as exc:
                ctx.error = exc
            except Exception as exc:
                log.exception("job %s: internal error", ctx.job_id)
                ctx.error = InternalError(f"{type(exc).__name__}: {exc}")
            error = ctx.error
            if error.permanent:
                self._notify(ctx, webhook.FAILED, error=error, metadata=metadata)
                return Outcome.FAILED
            if self._last_attempt(ctx):
                final = type(error)(
                    f"{error.message} (attempt {ctx.receive_count} of {self.max_receives}; "
                    "the message goes to the dead-letter queue)"
                )
                self._notify(ctx, webhook.FAILED, error=final, metadata=metadata)
            return Outcome.RETRY

    def _complete(self, ctx: JobContext, job: Job) -> None:
        """Fetch, render, upload, notify; raises on any failure."""
        assert self.root is not None and self.font_cache is not None, "open() the worker first"
        output_uri, inputs = plan_inputs(job, self.settings.allowed_buckets)
        folder = Path(tempfile.mkdtemp(prefix="job-", dir=self.root))
        try:
            fetched = fetch_inputs(
                inputs,
                folder,
                self.storage,
                self.font_cache,
                self.settings.limits.max_input_bytes,
                ctx.clock,
                before_each=self._stop_point,
            )
            log.info("job %s: rendering", job.job_id)
            result = self.render(
                job,
                base_dir=folder,
                output=folder / "output.mp4",
                fetched=fetched,
                limits=self.settings.limits,
                encoder=choose_encoder(self.settings.encoder),
                decoder=self.settings.decoder,
                clock=ctx.clock,
                progress=self._progress(job.job_id),
            )
            ctx.result = result
            poster_uri = output_uri.sibling(".jpg") if result.poster is not None else None
            with ctx.clock.stage("upload", uri=str(output_uri), bytes=result.size_bytes) as attrs:
                if result.poster is not None and poster_uri is not None:
                    self.storage.upload(result.poster, poster_uri, "image/jpeg")
                    attrs["bytes"] += result.poster.stat().st_size
                self.storage.upload(result.output, output_uri, "video/mp4")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        output = {
            "uri": str(output_uri),
            "duration": round(result.duration, 3),
            "width": result.width,
            "height": result.height,
            "fps": result.fps,
            "size_bytes": result.size_bytes,
            "poster_uri": str(poster_uri) if poster_uri is not None else None,
        }
        self._notify(
            ctx, webhook.COMPLETED, output=output, encoder=result.encoder, metadata=job.metadata
        )

    def _stop_point(self) -> None:
        if self.shutdown.requested:
            raise Released

    def _progress(self, job_id: str) -> Callable[[int, int], None]:
        first: list[float] = []
        logged = [-1]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if not first:
                first.append(now)
            quarter = done * 4 // max(1, total)
            if quarter != logged[0]:
                logged[0] = quarter
                log.info("job %s: frames %d/%d", job_id, done, total)
            if self.shutdown.requested:
                per_frame = (now - first[0]) / (done - 1) if done > 1 else None
                left = self.shutdown.left() - self.shutdown.reserve
                if not finish_in_time(per_frame, total - done, left):
                    log.info("job %s: cannot finish before the stop deadline", job_id)
                    raise Released

        return progress

    def _notify(
        self,
        ctx: JobContext,
        event_type: str,
        *,
        output: Mapping[str, Any] | None = None,
        error: GpuWorkerError | None = None,
        encoder: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        payload = webhook.event(
            event_type,
            ctx.job_id,
            output=output,
            error=error,
            encoder=encoder,
            timings=ctx.clock.totals,
            metadata=metadata,
        )
        deadline = None
        if self.shutdown.requested:
            deadline = time.monotonic() + max(1.0, self.shutdown.left())
        with ctx.clock.stage("webhook", type=event_type) as attrs:
            ctx.delivery = self.webhooks.send(payload, subject=ctx.subject, deadline=deadline)
            attrs.update(
                webhook_id=ctx.delivery.webhook_id,
                delivered=ctx.delivery.delivered,
                attempts=ctx.delivery.attempts,
            )

    def _last_attempt(self, ctx: JobContext) -> bool:
        return self.max_receives is not None and ctx.receive_count >= self.max_receives

    # -- SQS ----------------------------------------------------------------------------------

    def _beat(self, ctx: JobContext) -> None:
        self.sqs.change_message_visibility(
            QueueUrl=self.queue_url,
            ReceiptHandle=ctx.receipt,
            VisibilityTimeout=self.settings.visibility_timeout,
        )
        self.protection.keep()

    def _settle(self, ctx: JobContext) -> None:
        """Tell SQS how the message ended: delete it, or make it visible again when due."""
        if ctx.outcome in DELETED:
            try:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=ctx.receipt)
            except Exception as exc:
                log.warning(
                    "message %s: delete failed (%s); it will be redelivered", ctx.message_id, exc
                )
            return
        delay = 0  # released: another worker may start it at once
        if ctx.outcome is Outcome.RETRY:
            # After the last attempt SQS moves it to the dead-letter queue on its next receive.
            delay = retry_visibility(
                ctx.receive_count, self.settings.retry_delay, self.settings.retry_delay_max
            )
        self._change_visibility(ctx.message_id, ctx.receipt, delay)

    def _change_visibility(self, message_id: str, receipt: str, seconds: int) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=seconds
            )
        except Exception as exc:
            log.warning("message %s: cannot set visibility %d s (%s)", message_id, seconds, exc)


def serve(settings: Settings, job_hooks: JobHooks | None = None) -> int:
    """``gpu-worker serve``: serve until SIGTERM/SIGINT; the exit code."""
    worker = Worker.from_settings(settings, job_hooks=job_hooks)

    def stop(signum: int, frame: FrameType | None) -> None:
        worker.shutdown.request()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with worker:
            return worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
