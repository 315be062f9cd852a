"""OpenTelemetry's providers for gpu-worker: exporters and resource from the ``OTEL_*``
environment, and the worker's metric instruments.

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
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import Counter, Histogram, Meter, UpDownCounter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)

from gpu_worker import __version__
from gpu_worker.observability.environment import metric_exporter_names, span_exporter_names
from gpu_worker.render.host import usable_cpus

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "gpu-worker"


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
    for name in span_exporter_names():
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
    for name in metric_exporter_names():
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


def build_resource(service_name: str | None = None) -> Resource:
    """What runs: the worker and its host, the ECS task when on ECS, then OTEL_* over all."""
    base = Resource(
        {
            "service.version": __version__,
            "host.arch": _host_arch(),
            "gpu_worker.cpu_count": usable_cpus(),
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
    fallbacks: Counter = field(init=False)
    webhooks: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.tracer = self.tracer_provider.get_tracer("gpu_worker", __version__)
        self.meter = self.meter_provider.get_meter("gpu_worker", __version__)
        self.jobs = self.meter.create_counter(
            "gpu_worker.jobs", unit="{job}", description="Jobs finished, by outcome"
        )
        self.render_seconds = self.meter.create_histogram(
            "gpu_worker.render.duration",
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
            "gpu_worker.render.fps",
            unit="{frame}/s",
            description="Output frames rendered per second of render time",
            explicit_bucket_boundaries_advisory=[1, 2, 5, 10, 15, 24, 30, 60, 120, 240, 480],
        )
        self.in_flight = self.meter.create_up_down_counter(
            "gpu_worker.jobs.in_flight", unit="{job}", description="Jobs being worked on"
        )
        self.fallbacks = self.meter.create_counter(
            "gpu_worker.encoder.fallbacks",
            unit="{job}",
            description="Jobs rendered again on the CPU because NVENC or NVDEC failed",
        )
        self.webhooks = self.meter.create_counter(
            "gpu_worker.webhooks",
            unit="{webhook}",
            description=(
                "Webhook delivery rounds and queued attempts by outcome: delivered, pending "
                "(handed to or kept in the retry queue), dead_lettered"
            ),
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
