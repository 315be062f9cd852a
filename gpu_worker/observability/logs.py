"""Logs as JSON lines, one object per record, carrying the ``job_id`` and ``trace_id`` of the
job being worked on, so a log line leads to its trace and a trace to its logs.

``job_id`` comes from a context variable that
:func:`gpu_worker.observability.spans.traced_job` (or, untraced,
:func:`gpu_worker.observability.local.job_telemetry`) sets; ``trace_id``/``span_id`` come from
the OpenTelemetry span current when the record was made, if any.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

job_id_var: ContextVar[str | None] = ContextVar("gpu_worker_job_id", default=None)

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _current_span_ids() -> tuple[str, str] | None:
    """The trace and span ids of the span current here, if any."""
    # A span can be current only once OpenTelemetry's API is loaded: looking for it in
    # sys.modules, instead of importing it, keeps it out of a process that never traces.
    trace = sys.modules.get("opentelemetry.trace")
    get_current_span = getattr(trace, "get_current_span", None)  # None: not (yet) loaded
    if get_current_span is None:
        return None
    ctx = get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "job_id", "trace_id", "span_id", ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = job_id_var.get()
        if job_id is not None:
            entry["job_id"] = job_id
        ids = _current_span_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = _plain(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(verbose: bool = False, stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) as one JSON line; replaces prior handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
