"""Telemetry of one local render (``gpu-worker render``), paid for only when it goes somewhere.

With an exporter in the ``OTEL_*`` environment or a trace file, the job is traced exactly as
:func:`~gpu_worker.observability.spans.traced_job` traces it. With neither, nothing would
receive its spans or metrics, so OpenTelemetry is not even loaded: the render's
:class:`~gpu_worker.render.stages.StageClock` still times its stages, and its log lines still
carry its ``job_id``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_worker.observability.environment import anything_to_export
from gpu_worker.observability.logs import job_id_var
from gpu_worker.render.stages import StageClock

if TYPE_CHECKING:
    from gpu_worker.observability.spans import JobTrace
    from gpu_worker.render.pipeline import RenderResult


@dataclass
class UntracedJob:
    """What a caller uses of a :class:`~gpu_worker.observability.spans.JobTrace`, for a job
    no span is made of: its clock and worker kind; its attributes and result go nowhere."""

    clock: StageClock = field(default_factory=StageClock)
    worker_kind: str | None = None
    trace_id: str | None = None  # no trace

    def set(self, **attributes: Any) -> None:
        """Root span attributes: there is no root span to hold them."""

    def result(self, result: RenderResult) -> None:
        """The render's figures: no span or metric receives them."""


@contextmanager
def job_telemetry(
    job_id: str, *, trace_file: Path | str | None = None
) -> Iterator[JobTrace | UntracedJob]:
    """The job's trace, written to ``trace_file`` (JSON lines) too when given, and exported
    and flushed as the ``OTEL_*`` environment says; an :class:`UntracedJob` when there is
    nowhere to send it."""
    if not trace_file and not anything_to_export():
        token = job_id_var.set(job_id)
        try:
            yield UntracedJob()
        finally:
            job_id_var.reset(token)
        return

    from gpu_worker.observability.jsonlines import JsonLinesSpanExporter
    from gpu_worker.observability.setup import setup_telemetry
    from gpu_worker.observability.spans import traced_job

    telemetry = setup_telemetry()
    try:
        if trace_file:
            telemetry.add_span_exporter(JsonLinesSpanExporter(trace_file))
        with traced_job(telemetry, job_id) as jt:
            yield jt
    finally:
        telemetry.shutdown()
