"""OpenTelemetry for render jobs: one ``render_job`` span per job, a child span per stage,
and job metrics; a thin layer over :class:`~gpu_worker.render.stages.StageClock`, so no span code
lives in the render core.

Configuration is the standard ``OTEL_*`` environment only:

* ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``: ``otlp`` (OTLP over HTTP/protobuf,
  the only OTLP transport bundled), ``console``, ``none``, or any installed exporter entry
  point. Unlike the SDK's auto-configuration, nothing is exported when neither these nor
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its per-signal variant) is set; setting only the
  endpoint means ``otlp``.
* ``OTEL_EXPORTER_OTLP_*``, ``OTEL_BSP_*``, ``OTEL_METRIC_EXPORT_INTERVAL``,
  ``OTEL_TRACES_SAMPLER``: read by the SDK's exporters, processors and sampler themselves.
* ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``: the resource (service name defaults
  to ``gpu-worker``), merged over what the ECS resource detector finds when the task
  metadata endpoint (``ECS_CONTAINER_METADATA_URI_V4``) is set; the detector is not run
  anywhere else. ``OTEL_SDK_DISABLED=true`` turns every exporter off.

Per job::

    telemetry = setup_telemetry()
    with traced_job(telemetry, job.job_id, worker_kind="gpu") as jt:
        result = render_job(job, ..., clock=jt.clock)
        jt.result(result)

An exception leaving the block marks the job failed (``error.code``, status ERROR) and is
re-raised; a caller that handles an error itself reports it with :meth:`JobTrace.fail`.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from opentelemetry import trace
from opentelemetry.metrics import Counter, Histogram, Meter, UpDownCounter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gpu_worker import __version__
from gpu_worker.observability.logs import job_id_var
from gpu_worker.render.stages import StageClock, StageRecord

if TYPE_CHECKING:
    from gpu_worker.render.pipeline import RenderResult

log = logging.getLogger(__name__)

ROOT_SPAN = "render_job"
DEFAULT_SERVICE_NAME = "gpu-worker"
NVENC = "h264_nvenc"

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
ACCUMULATED = "stage.accumulated"  # on child spans whose time is summed over many frames

SUCCEEDED, FAILED = "succeeded", "failed"

# The render core's own stages; fetch_inputs, upload and webhook belong to the queue worker.
ENGINE_STAGES = frozenset({"probe", "render_text", "decode", "composite", "encode", "mux_audio"})
# Stages measured frame by frame and summed: one span per clip whose length is the sum,
# ending when the clip was closed (its start is therefore not a real moment).
_SUMMED = frozenset({"decode", "composite", "encode", "mux_audio"})

_TRACES_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_METRICS_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


# --------------------------------------------------------------------------- configuration


def _exporter_names(variable: str, endpoints: Sequence[str]) -> list[str]:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    value = os.environ.get(variable)
    if value is None:
        return ["otlp"] if any(os.environ.get(e) for e in endpoints) else []
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    return [n for n in names if n != "none"]


def _load_entry_point(group: str, name: str) -> Any:
    from importlib.metadata import entry_points

    for point in entry_points(group=group, name=name):
        return point.load()
    return None


def _otlp_protocol_check(signal: str) -> None:
    protocol = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol.strip() != "http/protobuf":
        log.warning("OTLP protocol %s is not bundled; exporting with http/protobuf", protocol)


def span_exporters_from_env() -> list[SpanExporter]:
    """The span exporters ``OTEL_TRACES_EXPORTER`` (or an OTLP endpoint) asks for."""
    exporters: list[SpanExporter] = []
    for name in _exporter_names("OTEL_TRACES_EXPORTER", _TRACES_ENDPOINTS):
        if name in ("otlp", "otlp_proto_http", "otlp_proto_grpc"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _otlp_protocol_check("TRACES")
            exporters.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        else:
            cls = _load_entry_point("opentelemetry_traces_exporter", name)
            if cls is None:
                log.warning("OTEL_TRACES_EXPORTER: no exporter named %r is installed", name)
            else:
                exporters.append(cls())
    return exporters


def metric_readers_from_env() -> list[MetricReader]:
    """Periodic readers for the exporters ``OTEL_METRICS_EXPORTER`` asks for."""
    readers: list[MetricReader] = []
    for name in _exporter_names("OTEL_METRICS_EXPORTER", _METRICS_ENDPOINTS):
        exporter: Any
        if name in ("otlp", "otlp_proto_http", "otlp_proto_grpc"):
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )

            _otlp_protocol_check("METRICS")
            exporter = OTLPMetricExporter()
        elif name == "console":
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            exporter = ConsoleMetricExporter()
        else:
            cls = _load_entry_point("opentelemetry_metrics_exporter", name)
            if cls is None:
                log.warning("OTEL_METRICS_EXPORTER: no exporter named %r is installed", name)
                continue
            exporter = cls()
        if isinstance(exporter, MetricReader):
            readers.append(exporter)
        else:
            readers.append(PeriodicExportingMetricReader(exporter))
    return readers


def _host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )


def cpu_count() -> int:
    """CPUs this process may run on (a Fargate task's vCPUs, a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def build_resource(service_name: str | None = None) -> Resource:
    """What runs: the worker and its host, the ECS task when on ECS, then OTEL_* over all."""
    base = Resource(
        {
            "service.version": __version__,
            "host.arch": _host_arch(),
            "gpu_worker.cpu_count": cpu_count(),
        }
    )
    if os.environ.get("ECS_CONTAINER_METADATA_URI_V4") or os.environ.get(
        "ECS_CONTAINER_METADATA_URI"
    ):
        try:
            from opentelemetry.sdk.extension.aws.resource.ecs import AwsEcsResourceDetector

            base = base.merge(AwsEcsResourceDetector().detect())
        except Exception:  # telemetry must never stop the worker
            log.warning("ECS resource detection failed", exc_info=True)
    resource = base.merge(Resource.create())
    configured = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    if not configured:
        resource = resource.merge(Resource({"service.name": service_name or DEFAULT_SERVICE_NAME}))
    return resource


# --------------------------------------------------------------------------- providers


@dataclass
class Telemetry:
    """A tracer and a meter with the worker's instruments, and what exports them."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporting: bool
    tracer: trace.Tracer = field(init=False)
    meter: Meter = field(init=False)
    jobs: Counter = field(init=False)
    render_seconds: Histogram = field(init=False)
    queue_wait: Histogram = field(init=False)
    frames_per_second: Histogram = field(init=False)
    in_flight: UpDownCounter = field(init=False)

    def __post_init__(self) -> None:
        self.tracer = self.tracer_provider.get_tracer("gpu_worker", __version__)
        self.meter = self.meter_provider.get_meter("gpu_worker", __version__)
        self.jobs = self.meter.create_counter(
            "gpu_worker.jobs", unit="{job}", description="Jobs finished, by outcome"
        )
        self.render_seconds = self.meter.create_histogram(
            "gpu_worker.render.pipeline.duration",
            unit="s",
            description="Seconds from the first render stage to the result",
            explicit_bucket_boundaries_advisory=[1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200],
        )
        self.queue_wait = self.meter.create_histogram(
            "gpu_worker.queue.wait",
            unit="s",
            description="Seconds a job waited in the queue (now minus SQS SentTimestamp)",
            explicit_bucket_boundaries_advisory=[
                0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
            ],
        )  # fmt: skip
        self.frames_per_second = self.meter.create_histogram(
            "gpu_worker.render.pipeline.fps",
            unit="{frame}/s",
            description="Output frames rendered per second of render time",
            explicit_bucket_boundaries_advisory=[1, 2, 5, 10, 15, 24, 30, 60, 120, 240, 480],
        )
        self.in_flight = self.meter.create_up_down_counter(
            "gpu_worker.jobs.in_flight", unit="{job}", description="Jobs being worked on"
        )

    @property
    def resource(self) -> Resource:
        return self.tracer_provider.resource

    def add_span_exporter(self, exporter: SpanExporter, *, batch: bool = False) -> None:
        """Export spans to ``exporter`` too: as each ends, or in batches (``batch=True``)."""
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.tracer_provider.add_span_processor(processor)
        self.exporting = True

    def force_flush(self, timeout_millis: int = 10_000) -> None:
        self.tracer_provider.force_flush(timeout_millis)
        self.meter_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop every exporter (call once, when the process is done)."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(
    service_name: str | None = None,
    *,
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
) -> Telemetry:
    """Tracing and metrics as the ``OTEL_*`` environment says; ``span_exporters`` (exported
    as each span ends) and ``metric_readers`` come on top, e.g. in-memory ones in tests."""
    resource = build_resource(service_name)
    tracer_provider = TracerProvider(resource=resource)
    env_exporters = span_exporters_from_env()
    for exporter in env_exporters:
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    for exporter in span_exporters:
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    readers = [*metric_readers_from_env(), *metric_readers]
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    exporting = bool(env_exporters or span_exporters)
    if env_exporters:
        log.debug("exporting traces to %s", ", ".join(type(e).__name__ for e in env_exporters))
    return Telemetry(tracer_provider, meter_provider, exporting)


# --------------------------------------------------------------------------- JSON lines


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="microseconds")


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    """One span as the trace file writes it (the resource only on a job's root span)."""
    ctx = span.get_span_context()
    assert ctx is not None
    parent = span.parent
    start, end = span.start_time or 0, span.end_time or 0
    entry: dict[str, Any] = {
        "name": span.name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(parent.span_id, "016x") if parent is not None else None,
        "kind": span.kind.name.lower(),
        "start": _iso(start),
        "end": _iso(end),
        "start_unix_nano": start,
        "end_unix_nano": end,
        "seconds": round((end - start) / 1e9, 6),
        "status": span.status.status_code.name.lower(),
        "attributes": dict(span.attributes or {}),
    }
    if span.status.description:
        entry["status_message"] = span.status.description
    if parent is None or parent.is_remote:
        entry["resource"] = dict(span.resource.attributes)
    return entry


class JsonLinesSpanExporter(SpanExporter):
    """Writes each finished span as one JSON line to a file (``gpu-worker render
    --trace-file``, ``benchmarks/run_reference.py``); ``append=False`` starts it empty."""

    def __init__(self, path: Path | str, *, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: IO[str] | None = self.path.open("a" if append else "w", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            for span in spans:
                self._file.write(json.dumps(span_to_dict(span), ensure_ascii=False) + "\n")
            self._file.flush()
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        with self._lock:
            if self._file is not None:
                self._file.flush()
        return True

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


# --------------------------------------------------------------------------- per job


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
) -> Iterator[JobTrace]:
    """The ``render_job`` span around one job; pass ``jt.clock`` to ``render_job`` (and record
    fetch_inputs/upload/webhook on it), call ``jt.result(result)`` once rendered.

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
        ROOT_SPAN,
        context=parent,
        kind=SpanKind.CONSUMER if served else SpanKind.INTERNAL,
        attributes=root_attributes,
    )
    clock = clock if clock is not None else StageClock()
    job = JobTrace(telemetry, span, clock, worker_kind)
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


# --------------------------------------------------------------------------- SQS helpers


def queue_wait_from_sqs(message: Mapping[str, Any], now: float | None = None) -> float | None:
    """Seconds since SQS received ``message`` (its ``SentTimestamp`` system attribute, asked
    for with ``AttributeNames=["SentTimestamp"]``), or None when it is absent."""
    sent = (message.get("Attributes") or {}).get("SentTimestamp")
    if sent is None:
        return None
    try:
        sent_s = int(sent) / 1000
    except (TypeError, ValueError):
        return None
    return max(0.0, (time.time() if now is None else now) - sent_s)


def traceparent_from_sqs(message: Mapping[str, Any]) -> str | None:
    """The W3C ``traceparent`` message attribute the backend sent (asked for with
    ``MessageAttributeNames=["traceparent"]``, or ``["All"]``), or None."""
    for name, value in (message.get("MessageAttributes") or {}).items():
        if name.lower() == "traceparent" and isinstance(value, Mapping):
            text = value.get("StringValue")
            return str(text) if text else None
    return None


class ServedJob(Protocol):
    """What the queue worker tells about one message (``gpu_worker.service.worker.JobContext``)."""

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
    def outcome(self) -> object: ...


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
            attributes={"messaging.sqs.receive_count": ctx.receive_count},
        ) as jt:
            yield jt
            if ctx.result is not None:
                jt.result(ctx.result)
            if ctx.error is not None:
                jt.fail(ctx.error)
            jt.set(**{"job.delivery": str(ctx.outcome)})

    return hook
