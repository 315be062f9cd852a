"""The one rule for choosing a hardware codec (NVENC, NVDEC) or its software fallback.

A setting is ``auto`` (the hardware when a session really opens, else software), the hardware
name (forced: it must open, else the caller's *unavailable* error) or the software name.
"""

from __future__ import annotations

from collections.abc import Callable

from gpu_worker.errors import GpuWorkerError, InternalError


def prefer_hardware(
    setting: str,
    *,
    variable: str,
    hardware: str,
    software: str,
    probe: Callable[[], tuple[bool, str]],
    unavailable: type[GpuWorkerError],
) -> tuple[bool, str]:
    """(use the hardware, why) for ``setting``; ``probe`` runs only when it may be used."""
    wanted = setting.lower()
    if wanted not in ("auto", hardware, software):
        raise InternalError(f"{variable} must be auto, {hardware} or {software}, not {wanted!r}")
    if wanted == software:
        return False, f"{variable}={software}"
    ok, why = probe()
    if ok:
        return True, why
    if wanted == hardware:
        raise unavailable(f"{variable}={hardware} but {why}")
    return False, why
