"""Which exporters the standard ``OTEL_*`` environment asks for, read without loading
OpenTelemetry, so that a process with nothing to export never imports its SDK.

``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` name them (``none`` names none); left
unset, an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` or its per-signal variant) means
``otlp``; ``OTEL_SDK_DISABLED=true`` turns every one off.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

TRACES_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
METRICS_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


def exporter_names(variable: str, endpoints: Sequence[str]) -> list[str]:
    """The exporters ``variable`` names, lower-cased, or ``otlp`` when only an endpoint is set."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    value = os.environ.get(variable)
    if value is None:
        return ["otlp"] if any(os.environ.get(e) for e in endpoints) else []
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    return [n for n in names if n != "none"]


def span_exporter_names() -> list[str]:
    return exporter_names("OTEL_TRACES_EXPORTER", TRACES_ENDPOINTS)


def metric_exporter_names() -> list[str]:
    return exporter_names("OTEL_METRICS_EXPORTER", METRICS_ENDPOINTS)


def anything_to_export() -> bool:
    """Whether the environment names any span or metric exporter."""
    return bool(span_exporter_names() or metric_exporter_names())
