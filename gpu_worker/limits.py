"""Render limits: how much one job may ask for (set from the environment by
:class:`gpu_worker.settings.Settings`, ``GPU_WORKER_MAX_*``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Beyond any of these a job fails with ``limit_exceeded``."""

    max_output_seconds: float = 300.0
    max_clips: int = 100
    max_texts: int = 100
    max_overlays: int = 20
    max_input_side: int = 4096
    max_input_bytes: int = 2 * 1024**3
