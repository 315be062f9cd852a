"""A span exporter writing one JSON object a line (``gpu-worker render --trace-file``), the
format ``benchmarks/cost.py`` reads back."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    SpanExporter,
    SpanExportResult,
)

if TYPE_CHECKING:
    pass


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
