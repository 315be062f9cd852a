"""Render limits: how much one job may ask for, configurable from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from gpu_worker.errors import InternalError

MAX_OUTPUT_SECONDS = "GPU_WORKER_MAX_OUTPUT_SECONDS"
MAX_CLIPS = "GPU_WORKER_MAX_CLIPS"
MAX_TEXTS = "GPU_WORKER_MAX_TEXTS"
MAX_INPUT_SIDE = "GPU_WORKER_MAX_INPUT_SIDE"
MAX_INPUT_BYTES = "GPU_WORKER_MAX_INPUT_BYTES"


@dataclass(frozen=True)
class Limits:
    """Beyond any of these a job fails with ``limit_exceeded``."""

    max_output_seconds: float = 300.0
    max_clips: int = 100
    max_texts: int = 100
    max_input_side: int = 4096
    max_input_bytes: int = 2 * 1024**3

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        env = os.environ if env is None else env
        defaults = cls()
        try:
            return cls(
                max_output_seconds=float(env.get(MAX_OUTPUT_SECONDS, defaults.max_output_seconds)),
                max_clips=int(env.get(MAX_CLIPS, defaults.max_clips)),
                max_texts=int(env.get(MAX_TEXTS, defaults.max_texts)),
                max_input_side=int(env.get(MAX_INPUT_SIDE, defaults.max_input_side)),
                max_input_bytes=int(env.get(MAX_INPUT_BYTES, defaults.max_input_bytes)),
            )
        except ValueError as exc:
            raise InternalError(f"a GPU_WORKER_MAX_* variable is not a number: {exc}") from exc
