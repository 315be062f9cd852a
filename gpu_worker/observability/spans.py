"""One ``render_job`` span per job, a child span per stage, and the job metrics: a thin
layer over :class:`~gpu_worker.render.stages.StageClock`, so no span code lives in the render
core. Per job::

    telemetry = setup_telemetry()
    with traced_job(telemetry, job.job_id, worker_kind="gpu") as jt:
        result = render_job(job, ..., clock=jt.clock)
        jt.result(result)

An exception leaving the block marks the job failed (``error.code``, status ERROR) and is
re-raised; a caller that handles an error itself reports it with :meth:`JobTrace.fail`.
:func:`serve_hooks` does the same for each message of ``gpu-worker serve``, with each webhook
attempt as a ``webhook.attempt`` event on the job's root span; :func:`delivery_hooks` makes
each later attempt from the webhook retry queue a ``webhook_delivery`` span in the job's trace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gpu_worker.observability.logs import job_id_var
from gpu_worker.render.encoder import NVENC
from gpu_worker.render.stages import StageClock, StageRecord

if TYPE_CHECKING:
    from gpu_worker.render.pipeline import RenderResult

from gpu_worker.observability.setup import Telemetry

log = logging.getLogger(__name__)

ROOT_SPAN = "render_job"
SEGMENT_SPAN = "render_segment"  # one segment of a split job, a child of its job's trace

# Root span attributes (read back by benchmarks/cost.py).
JOB_ID = "job.id"
OUTCOME = "job.outcome"  # succeeded | failed
ERROR_CODE = "error.code"  # the GpuWorkerError code: input_not_found, transient, internal…
ERROR_TYPE = "error.type"  # the exception class, as OpenTelemetry's semantic conventions say
ERROR_PERMANENT = "error.permanent"
WORKER_KIND = "worker.kind"  # gpu | cpu
ENCODER = "video.encoder"  # h264_nvenc | libx264
WIDTH, HEIGHT, FPS = "video.width", "video.height", "video.fps"
FRAMES, OUTPUT_SECONDS = "video.frames", "video.seconds"
INPUT_BYTES, OUTPUT_BYTES = "job.input_bytes", "job.output_bytes"
QUEUE_WAIT = "job.queue_wait_seconds"
RENDER_SECONDS = "job.render_seconds"  # first engine stage to result, without fetch/upload
RENDER_FPS = "job.render_fps"
FALLBACK = "encoder.fallback"  # true when the GPU failed and the job was rendered on the CPU
ACCUMULATED = "stage.accumulated"  # on child spans whose time is summed over many frames
STAGE_CPU = "stage.cpu_seconds"  # CPU of the thread(s) that did a stage's work
RENDER_CPU = "job.render_cpu_seconds"  # the process's CPU from the first stage to the result

# Webhook attempts: events on the job's root span, and spans of queued attempts.
WEBHOOK_ATTEMPT_EVENT = "webhook.attempt"
DELIVERY_SPAN = "webhook_delivery"
WEBHOOK_ID = "webhook.id"
WEBHOOK_TYPE = "webhook.type"
WEBHOOK_ATTEMPT = "webhook.attempt"
WEBHOOK_OUTCOME = "webhook.outcome"  # delivered | pending | dead_lettered
HTTP_STATUS = "http.response.status_code"

SUCCEEDED, FAILED = "succeeded", "failed"

# The render core's own stages; fetch_inputs, upload and webhook belong to the queue worker.
ENGINE_STAGES = frozenset({"probe", "render_text", "decode", "composite", "encode", "mux_audio"})
# Stages measured frame by frame and summed: one span per clip whose length is the sum,
# ending when the clip was closed (its start is therefore not a real moment).
_SUMMED = frozenset({"decode", "composite", "encode", "mux_audio"})


def _attribute(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple) and all(
        isinstance(v, bool | int | float | str) for v in value
    ):
        return list(value)
    return str(value)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class JobTrace:
    """The root span of one job, fed by its :class:`StageClock`; see :func:`traced_job`."""

    def __init__(
        self, telemetry: Telemetry, span: trace.Span, clock: StageClock, worker_kind: str | None
    ) -> None:
        self.telemetry = telemetry
        self.span = span
        self.clock = clock
        self.worker_kind = worker_kind
        self.started = time.time()
        self.start_ns = getattr(span, "start_time", None) or time.time_ns()
        self.outcome: str | None = None
        self.error_code: str | None = None
        self.render_started: float | None = None
        self.render_seconds: float | None = None
        self.render_finished: float | None = None
        self.counted = True  # a job in the jobs counter and render histogram (not a segment)
        self._lock = threading.Lock()

    @property
    def trace_id(self) -> str:
        return format(self.span.get_span_context().trace_id, "032x")

    @property
    def traceparent(self) -> str:
        """This job's W3C ``traceparent``, to hand on (e.g. in the webhook's headers)."""
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, trace.set_span_in_context(self.span))
        return carrier["traceparent"]

    def set(self, **attributes: Any) -> None:
        """Extra root attributes (dots may be written as ``__``: ``sqs__receive_count=2``)."""
        for key, value in attributes.items():
            if value is not None:
                self.span.set_attribute(key.replace("__", "."), _attribute(value))

    def on_stage(self, record: StageRecord) -> None:
        """StageClock listener: the finished stage becomes a child span with its real times."""
        start_ns = max(_ns(record.start), self.start_ns)
        end_ns = max(start_ns, _ns(record.start + record.seconds))
        attributes = {k: _attribute(v) for k, v in record.attributes.items() if v is not None}
        if record.name in _SUMMED:
            attributes[ACCUMULATED] = True
        if record.cpu is not None:
            attributes[STAGE_CPU] = round(record.cpu, 6)
        with self._lock:
            if record.name in ENGINE_STAGES and (
                self.render_started is None or record.start < self.render_started
            ):
                self.render_started = max(record.start, self.started)
            if record.name in ENGINE_STAGES:
                end = record.start + record.seconds
                self.render_finished = max(self.render_finished or end, end)
            span = self.telemetry.tracer.start_span(
                record.name,
                context=trace.set_span_in_context(self.span),
                start_time=start_ns,
                attributes=attributes,
            )
            span.end(end_time=end_ns)

    def result(self, result: RenderResult) -> None:
        """The render's figures onto the root span; the job counts as succeeded from here."""
        end = self.render_finished or time.time()
        self.render_seconds = end - (self.render_started or self.started)
        if self.worker_kind is None:
            self.worker_kind = "gpu" if result.encoder == NVENC else "cpu"
        fps = result.frames / self.render_seconds if self.render_seconds > 0 else 0.0
        cpu = result.process_cpu
        self.set(
            **{
                ENCODER: result.encoder,
                WORKER_KIND: self.worker_kind,
                WIDTH: result.width,
                HEIGHT: result.height,
                FPS: result.fps,
                FRAMES: result.frames,
                OUTPUT_SECONDS: round(result.duration, 6),
                INPUT_BYTES: result.input_bytes,
                OUTPUT_BYTES: result.size_bytes,
                RENDER_SECONDS: round(self.render_seconds, 6),
                RENDER_FPS: round(fps, 3),
                RENDER_CPU: round(cpu, 6) if cpu is not None else None,
            }
        )
        if fps > 0:
            self.telemetry.frames_per_second.record(fps, {WORKER_KIND: self.worker_kind})

    def fail(self, exc: BaseException) -> None:
        """Mark the job failed by ``exc`` (done for you when it leaves ``traced_job``)."""
        if self.outcome == FAILED:
            return
        from gpu_worker.errors import GpuWorkerError

        if isinstance(exc, GpuWorkerError):
            code, permanent, message = exc.code, exc.permanent, exc.message
        elif isinstance(exc, Exception):
            code, permanent, message = "internal", False, f"{type(exc).__name__}: {exc}"
        else:  # KeyboardInterrupt, SystemExit: the worker was stopped, not the job's fault
            code, permanent, message = "interrupted", False, type(exc).__name__
        self.outcome, self.error_code = FAILED, code
        self.set(
            **{
                OUTCOME: FAILED,
                ERROR_CODE: code,
                ERROR_TYPE: type(exc).__name__,
                ERROR_PERMANENT: permanent,
            }
        )
        self.span.record_exception(exc)
        self.span.set_status(Status(StatusCode.ERROR, f"{code}: {message}"))

    def _finish(self) -> None:
        if self.outcome is None:
            self.outcome = SUCCEEDED
            self.span.set_attribute(OUTCOME, SUCCEEDED)
        kind = self.worker_kind or "unknown"
        if self.worker_kind is not None:
            self.span.set_attribute(WORKER_KIND, self.worker_kind)
        labels: dict[str, str] = {OUTCOME: self.outcome, WORKER_KIND: kind}
        if self.error_code:
            labels[ERROR_CODE] = self.error_code
        if not self.counted:  # a segment: its video is counted once, by its job
            return
        self.telemetry.jobs.add(1, labels)
        seconds = self.render_seconds
        if seconds is None:
            seconds = time.time() - (self.render_started or self.started)
        self.telemetry.render_seconds.record(seconds, {OUTCOME: self.outcome, WORKER_KIND: kind})


@contextmanager
def traced_job(
    telemetry: Telemetry,
    job_id: str,
    *,
    worker_kind: str | None = None,
    traceparent: str | None = None,
    queue_wait: float | None = None,
    clock: StageClock | None = None,
    attributes: Mapping[str, Any] | None = None,
    name: str = ROOT_SPAN,
) -> Iterator[JobTrace]:
    """The ``render_job`` span around one job (``name``: ``render_segment`` for one segment of
    a split job, which is not counted as a job in the metrics); pass ``jt.clock`` to
    ``render_job`` (and record fetch_inputs/upload/webhook on it), call ``jt.result(result)``
    once rendered.

    ``traceparent``: the W3C header the backend sent (an SQS message attribute); the job's
    trace continues it. ``queue_wait``: seconds between SQS ``SentTimestamp`` and now.
    ``worker_kind``: gpu or cpu; left out, it follows the encoder (NVENC = gpu).
    """
    parent = None
    if traceparent:
        parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    root_attributes: dict[str, Any] = {JOB_ID: job_id}
    if worker_kind is not None:
        root_attributes[WORKER_KIND] = worker_kind
    if queue_wait is not None:
        root_attributes[QUEUE_WAIT] = round(max(0.0, queue_wait), 6)
    for key, value in (attributes or {}).items():
        if value is not None:
            root_attributes[key] = _attribute(value)
    served = traceparent is not None or queue_wait is not None
    span = telemetry.tracer.start_span(
        name,
        context=parent,
        kind=SpanKind.CONSUMER if served else SpanKind.INTERNAL,
        attributes=root_attributes,
    )
    clock = clock if clock is not None else StageClock()
    job = JobTrace(telemetry, span, clock, worker_kind)
    job.counted = name == ROOT_SPAN
    clock.listeners.append(job.on_stage)
    kind_label = {WORKER_KIND: worker_kind or "unknown"}
    telemetry.in_flight.add(1, kind_label)
    if queue_wait is not None:
        telemetry.queue_wait.record(max(0.0, queue_wait), kind_label)
    token = job_id_var.set(job_id)
    try:
        with trace.use_span(span, record_exception=False, set_status_on_exception=False):
            yield job
    except BaseException as exc:
        job.fail(exc)
        raise
    finally:
        clock.listeners.remove(job.on_stage)
        telemetry.in_flight.add(-1, kind_label)
        job_id_var.reset(token)
        job._finish()
        span.end()


class ServedJob(Protocol):
    """What the queue worker tells about one message (``service.messages.JobContext``)."""

    @property
    def job_id(self) -> str | None: ...
    @property
    def message_id(self) -> str: ...
    @property
    def traceparent(self) -> str | None: ...
    @property
    def receive_count(self) -> int: ...
    @property
    def clock(self) -> StageClock: ...
    @property
    def result(self) -> RenderResult | None: ...
    @property
    def error(self) -> Exception | None: ...
    @property
    def queue_wait(self) -> float | None: ...
    @property
    def fallback(self) -> str | None: ...
    @property
    def segment(self) -> int | None: ...

    @property
    def outcome(self) -> object: ...

    @property
    def delivery(self) -> Any: ...  # service.webhook.Delivery: attempts in ``log``


def webhook_outcome(delivery: Any) -> str:
    """delivered, pending (handed to the retry queue) or dead_lettered; failed when lost."""
    if delivery.delivered:
        return "delivered"
    if getattr(delivery, "pending", False):
        return "pending"
    if getattr(delivery, "dead_lettered", False):
        return "dead_lettered"
    return "failed"


def _webhook_events(jt: JobTrace, delivery: Any) -> None:
    for number, attempt in enumerate(getattr(delivery, "log", ()), start=1):
        attributes: dict[str, Any] = {WEBHOOK_ID: delivery.webhook_id, WEBHOOK_ATTEMPT: number}
        if attempt.status is not None:
            attributes[HTTP_STATUS] = attempt.status
        if attempt.error is not None:
            attributes["error.message"] = attempt.error
        jt.span.add_event(WEBHOOK_ATTEMPT_EVENT, attributes, timestamp=_ns(attempt.at))
    outcome = webhook_outcome(delivery)
    jt.set(**{WEBHOOK_OUTCOME: outcome})
    jt.telemetry.webhooks.add(1, {WEBHOOK_OUTCOME: outcome})


def serve_hooks(telemetry: Telemetry) -> Callable[[ServedJob], AbstractContextManager[object]]:
    """The queue worker's per-job hook: one ``render_job`` trace per message, continuing the
    backend's ``traceparent``, with its queue wait, stages, result or error."""

    @contextmanager
    def hook(ctx: ServedJob) -> Iterator[JobTrace]:
        job_id = ctx.job_id or f"sqs-message-{ctx.message_id}"
        with traced_job(
            telemetry,
            job_id,
            traceparent=ctx.traceparent,
            queue_wait=ctx.queue_wait,
            clock=ctx.clock,
            attributes={
                "messaging.sqs.receive_count": ctx.receive_count,
                "segment.index": ctx.segment,
            },
            name=ROOT_SPAN if ctx.segment is None else SEGMENT_SPAN,
        ) as jt:
            if hasattr(ctx, "own_traceparent"):
                ctx.own_traceparent = jt.traceparent  # later webhook attempts join this trace
            yield jt
            if ctx.delivery is not None:
                _webhook_events(jt, ctx.delivery)
            if ctx.result is not None:
                jt.result(ctx.result)
            if ctx.error is not None:
                jt.fail(ctx.error)
            jt.set(**{"job.delivery": str(ctx.outcome), FALLBACK: ctx.fallback is not None})
            if ctx.fallback is not None:
                jt.set(**{"encoder.fallback_reason": ctx.fallback})
                telemetry.fallbacks.add(1)

    return hook


class QueuedAttempt(Protocol):
    """One attempt from the webhook retry queue (``service.deliveries.DeliveryContext``)."""

    webhook_id: str
    event_type: str
    subject: str
    attempt: int
    traceparent: str | None
    status: int | None
    error: str | None
    outcome: str | None
    next_delay: int | None


def delivery_hooks(
    telemetry: Telemetry,
) -> Callable[[QueuedAttempt], AbstractContextManager[object]]:
    """The webhook deliverer's hook: one ``webhook_delivery`` span per attempt from the retry
    queue, in the job's trace (its ``traceparent``), with the status and outcome; counted in
    ``gpu_worker.webhooks`` by outcome."""

    @contextmanager
    def hook(ctx: QueuedAttempt) -> Iterator[None]:
        parent = None
        if ctx.traceparent:
            parent = TraceContextTextMapPropagator().extract({"traceparent": ctx.traceparent})
        span = telemetry.tracer.start_span(
            DELIVERY_SPAN,
            context=parent,
            kind=SpanKind.CLIENT,
            attributes={
                WEBHOOK_ID: ctx.webhook_id,
                WEBHOOK_TYPE: ctx.event_type,
                WEBHOOK_ATTEMPT: ctx.attempt,
                JOB_ID: ctx.subject,
            },
        )
        token = job_id_var.set(ctx.subject)
        try:
            with trace.use_span(span, record_exception=True, set_status_on_exception=True):
                yield
            if ctx.status is not None:
                span.set_attribute(HTTP_STATUS, ctx.status)
            if ctx.next_delay is not None:
                span.set_attribute("webhook.next_delay_seconds", ctx.next_delay)
            outcome = ctx.outcome or "failed"
            span.set_attribute(WEBHOOK_OUTCOME, outcome)
            if outcome != "delivered":
                span.set_status(Status(StatusCode.ERROR, ctx.error or outcome))
            telemetry.webhooks.add(1, {WEBHOOK_OUTCOME: outcome})
        finally:
            job_id_var.reset(token)
            span.end()

    return hook
