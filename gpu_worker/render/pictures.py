"""A picture's declared size against the limits: one check and one message for every reader
of pictures (stills, photos, overlays, pictures inside an SVG)."""

from __future__ import annotations

import math

from gpu_worker.errors import LimitExceeded
from gpu_worker.limits import Limits


def check_side(what: str, width: float, height: float, limits: Limits) -> None:
    """``limit_exceeded`` when either side is over ``GPU_WORKER_MAX_INPUT_SIDE``."""
    side = limits.max_input_side
    if max(width, height) > side:
        raise LimitExceeded(
            f"{what}: {math.ceil(width)}x{math.ceil(height)} is over the limit of "
            f"{side}x{side} pixels"
        )


def too_many_pixels(what: str, limits: Limits) -> LimitExceeded:
    """The error for a picture Pillow refuses as a decompression bomb before reading it."""
    side = limits.max_input_side
    return LimitExceeded(f"{what} declares far more than the limit of {side}x{side} pixels")
