"""Local input files: the one place their ``stat`` errors and sizes become job errors, and
a reader that never allocates more than a file holds."""

from __future__ import annotations

import io
import os
from pathlib import Path

from gpu_worker.errors import InputNotFound, InputUnreadable, LimitExceeded, UnsupportedInput
from gpu_worker.limits import Limits


def stat_input(path: Path, label: str) -> os.stat_result:
    """``path``'s status; ``input_not_found`` when it is missing, ``input_unreadable`` when it
    cannot be read (``label`` names it in the message)."""
    try:
        return path.stat()
    except FileNotFoundError as exc:
        raise InputNotFound(f"{label}: no such file") from exc
    except OSError as exc:
        raise InputUnreadable(f"{label}: cannot be read ({exc.strerror})") from exc


def checked_input(path: Path, label: str, limits: Limits) -> os.stat_result:
    """``path``'s status once it is known to be a regular, non-empty file within the input
    size limit (``unsupported_input``, ``input_unreadable``, ``limit_exceeded`` otherwise)."""
    stat = stat_input(path, label)
    if not path.is_file():
        raise UnsupportedInput(f"{label}: not a regular file")
    if stat.st_size == 0:
        raise InputUnreadable(f"{label}: the file is empty (0 bytes)")
    if stat.st_size > limits.max_input_bytes:
        raise LimitExceeded(
            f"{label}: {stat.st_size} bytes is over the limit of {limits.max_input_bytes} bytes"
        )
    return stat


class BoundedReader(io.BufferedReader):
    """An input file for a library that reads as many bytes as the file says it holds
    (Pillow skips a PNG chunk with ``read(length)``): a read never asks for more than is
    left, so a corrupt length of 4 GiB costs nothing instead of a 4 GiB allocation."""

    def __init__(self, path: Path) -> None:
        super().__init__(io.FileIO(path, "r"))
        self._size = os.fstat(self.fileno()).st_size

    def read(self, size: int | None = -1, /) -> bytes:
        if size is not None and size > 0:
            size = min(size, max(0, self._size - self.tell()))
            if size == 0:
                return b""
        return super().read(size)
