"""The queue worker behind ``gpu-worker serve``: polling threads, the stop, nothing lost.

:class:`Worker` owns the thread pool and the life cycle; each message is taken to its
outcome by :class:`~gpu_worker.service.jobs.JobRunner` and settled with SQS by
:class:`~gpu_worker.service.queue.JobQueue` (outcomes: :mod:`gpu_worker.service.messages`).
SIGTERM stops polling; a job in hand is finished if it can end before the stop deadline, else
released. A worker killed outright loses nothing: SQS hands the message out again. Every job
runs inside ``job_hooks(JobContext)``, the one place telemetry plugs in (and every queued
webhook attempt inside ``delivery_hooks``: a :class:`~gpu_worker.service.deliveries.Deliverer`
thread delivers those beside the render threads).
"""

from __future__ import annotations

import logging
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from gpu_worker.errors import TransientError
from gpu_worker.render.decoder import choose_decoder
from gpu_worker.render.encoder import EncoderChoice, choose_encoder
from gpu_worker.render.pipeline import RenderResult, render_job
from gpu_worker.service.aws import aws_client
from gpu_worker.service.deliveries import (
    Deliverer,
    DeliveryHooks,
    DurableSender,
    WebhookQueues,
)
from gpu_worker.service.fetch import FontCache
from gpu_worker.service.health import Health
from gpu_worker.service.jobs import JobRunner
from gpu_worker.service.messages import (
    JobContext,
    JobHooks,
    Outcome,
    no_hooks,
    peek_job_id,
)
from gpu_worker.service.protection import TaskProtection
from gpu_worker.service.queue import JobQueue
from gpu_worker.service.segments import Segments, segment_message
from gpu_worker.service.shutdown import Shutdown
from gpu_worker.service.storage import Storage
from gpu_worker.service.webhook import WebhookSender
from gpu_worker.settings import Settings

log = logging.getLogger(__name__)


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
        delivery_hooks: DeliveryHooks | None = None,
        render: Callable[..., RenderResult] = render_job,
        encoder_for: Callable[[str], EncoderChoice] = choose_encoder,
    ) -> None:
        self.settings = settings.require_serving()
        assert settings.queue_url is not None and settings.webhook_url is not None
        self.queue = JobQueue(
            sqs,
            settings.queue_url,
            visibility_timeout=settings.visibility_timeout,
            retry_delay=settings.retry_delay,
            retry_delay_max=settings.retry_delay_max,
        )
        self.shutdown = Shutdown(settings.stop_deadline)
        self.health = Health(settings.health_file, settings.poll_wait)
        self.storage = Storage(s3)
        sender = webhooks or WebhookSender(
            settings.webhook_url,
            settings.webhook_key,
            allow_private=settings.webhook_allow_private,
            total_timeout=settings.webhook_timeout,
        )
        queues = None
        self.deliverer: Deliverer | None = None
        retry_url, dead_url = settings.webhook_queue_url, settings.webhook_dead_letter_url
        if retry_url is not None and dead_url is not None:
            queues = WebhookQueues(sqs, retry_url, dead_url)
            self.deliverer = Deliverer(
                queues,
                sender,
                schedule=settings.webhook_retry_schedule,
                retry_hours=settings.webhook_retry_hours,
                poll_wait=settings.poll_wait,
                hooks=delivery_hooks,
            )
        self.runner = JobRunner(
            settings,
            queue=self.queue,
            storage=self.storage,
            webhooks=DurableSender(sender, queues, settings.webhook_retry_schedule),
            protection=protection or TaskProtection(settings.ecs_agent_uri),
            shutdown=self.shutdown,
            health=self.health,
            render=render,
            encoder_for=encoder_for,
        )
        self.segments = Segments(
            settings, queue=self.queue, storage=self.storage, encoder_for=encoder_for
        )
        self.runner.segments = self.segments
        self.job_hooks: JobHooks = job_hooks or no_hooks
        self.root: Path | None = None
        self._lock = threading.Lock()
        self._in_hand: dict[str, str] = {}
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        job_hooks: JobHooks | None = None,
        delivery_hooks: DeliveryHooks | None = None,
    ) -> Worker:
        return cls(
            settings,
            sqs=aws_client("sqs", settings),
            s3=aws_client("s3", settings),
            job_hooks=job_hooks,
            delivery_hooks=delivery_hooks,
        )

    @property
    def max_receives(self) -> int | None:
        return self.runner.max_receives

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> Worker:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Make this worker's scratch folder, learn the queue's last attempt, and start
        delivering queued webhooks (stopped by :meth:`close`)."""
        self.settings.scratch_dir.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="worker-", dir=self.settings.scratch_dir))
        self.runner.root = self.root
        self.runner.font_cache = FontCache(self.root / "fonts", self.storage)
        self.segments.root, self.segments.font_cache = self.root, self.runner.font_cache
        if self.runner.max_receives is None:
            self.runner.max_receives = self.queue.redrive_max_receives()
        if self.deliverer is not None:
            self.deliverer.start()
        else:
            log.warning(
                "no webhook queue (GPU_WORKER_WEBHOOK_QUEUE_URL): a webhook not delivered "
                "within GPU_WORKER_WEBHOOK_TIMEOUT is logged and lost"
            )

    def close(self) -> None:
        """Stop delivering queued webhooks; remove the scratch folder, unless a job thread
        still runs in it (past the stop deadline): then it is left for the process's end to
        make moot."""
        if self.deliverer is not None:
            self.deliverer.stop()
        if self.root is None:
            return
        if any(thread.is_alive() for thread in self._threads):
            log.warning("a job is still running past the stop deadline; %s is kept", self.root)
            return
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def run(self) -> int:
        """Poll until told to stop; then finish or release what is in hand. 0 when the stop
        was asked for; 1 when every thread died or the worker gave up on its GPU."""
        threads = self._threads = [
            threading.Thread(target=self._loop, name=f"worker-{i}", daemon=True)
            for i in range(self.settings.concurrency)
        ]
        for thread in threads:
            thread.start()
        code = 0
        log.info(
            "serving %s with %d thread(s); last attempt %s",
            self.queue.url,
            len(threads),
            self.max_receives or "unknown",
        )
        self.health.write(force=True)
        while not self.shutdown.event.wait(0.5):
            self.health.write()
            if not any(t.is_alive() for t in threads):
                log.error("every worker thread has stopped")
                self.health.write(force=True)
                return 1
            if self.health.gave_up is not None:
                log.error("unhealthy: %s; taking no more jobs", self.health.gave_up)
                self.health.write(force=True)
                self.shutdown.request()
                code = 1
        with self._lock:
            busy = len(self._in_hand)
        log.info("stopping: %d job(s) in hand, %.0f s to finish them", busy, self.shutdown.left())
        for thread in threads:
            thread.join(timeout=max(0.0, self.shutdown.left()))
        with self._lock:
            leftover = dict(self._in_hand)
        for message_id, receipt in leftover.items():
            log.warning("message %s: still running at the stop deadline; released", message_id)
            self.shutdown.abandon(message_id)
            self.queue.set_visibility(message_id, receipt, 0)
        if code == 0:
            self.health.clear()  # stopped as asked: nothing serves here any more
        log.info("stopped")
        return code

    def _loop(self) -> None:
        failures = 0
        name = threading.current_thread().name
        while not self.shutdown.requested and self.health.gave_up is None:
            try:
                with self.health.polling(name):
                    messages = self.queue.receive(self.settings.poll_wait)
                failures = 0
            except TransientError as exc:
                failures += 1
                delay = min(30.0, 2.0 ** (failures - 1))  # 1, 2, 4 … 30 s
                log.warning("cannot receive from the queue (%s); again in %.0f s", exc, delay)
                self.shutdown.event.wait(delay)
                continue
            for message in messages:
                self.handle(message)

    def poll_once(self, wait: int = 0) -> list[JobContext]:
        """Receive at most one message and handle it (tests and one-shot use)."""
        return [self.handle(message) for message in self.queue.receive(wait)]

    # -- one message --------------------------------------------------------------------------

    def handle(self, message: Mapping[str, Any]) -> JobContext:
        """Process one message to an outcome and settle it with SQS; never raises."""
        ctx = JobContext.from_message(message)
        with self._lock:
            self._in_hand[ctx.message_id] = ctx.receipt
        try:
            if self.shutdown.requested:
                ctx.outcome = Outcome.RELEASED
                self.queue.settle(ctx)
                return ctx
            body = str(message.get("Body", ""))
            segment = segment_message(body)
            ctx.job_id = segment.job_id if segment is not None else peek_job_id(body)
            ctx.segment = segment.index if segment is not None else None
            with self.job_hooks(ctx):
                if segment is not None:  # a part of a long job another worker split
                    ctx.outcome = self.segments.process(ctx, segment)
                else:
                    ctx.outcome = self.runner.process(ctx, body)
                if self.shutdown.abandoned(ctx.message_id):
                    log.warning(
                        "message %s: ended after it was released at the stop deadline; "
                        "left to the worker that has it now",
                        ctx.message_id,
                    )
                else:
                    self.queue.settle(ctx)
        except Exception:
            log.exception("message %s: unexpected failure; left for redelivery", ctx.message_id)
        finally:
            with self._lock:
                self._in_hand.pop(ctx.message_id, None)
            self.segments.forget(ctx)  # a split kept for a retry is planned again then
        log.info(
            "job %s (message %s, attempt %d): %s%s",
            ctx.job_id or "-",
            ctx.message_id,
            ctx.receive_count,
            ctx.outcome,
            f" {ctx.error.code}: {ctx.error.message}" if ctx.error else "",
        )
        return ctx


def check_codecs(settings: Settings) -> None:
    """Open a forced encoder or decoder before taking any message: one that will not open is
    this machine's fault (``encoder_unavailable``/``decoder_unavailable``, exit 1), so the task
    is replaced while the jobs wait in the queue for a healthy worker."""
    choose_encoder(settings.encoder)
    if settings.decoder == "nvdec":
        choose_decoder("h264", "nvdec")


def serve(
    settings: Settings,
    job_hooks: JobHooks | None = None,
    delivery_hooks: DeliveryHooks | None = None,
) -> int:
    """``gpu-worker serve``: serve until SIGTERM/SIGINT; the exit code."""
    check_codecs(settings)
    worker = Worker.from_settings(settings, job_hooks=job_hooks, delivery_hooks=delivery_hooks)

    def stop(signum: int, frame: FrameType | None) -> None:
        worker.shutdown.request()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with worker:
            return worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
