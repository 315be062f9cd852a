"""Local input files: the one place their ``stat`` errors become job errors."""

from __future__ import annotations

import os
from pathlib import Path

from gpu_worker.errors import InputNotFound, InputUnreadable


def stat_input(path: Path, label: str) -> os.stat_result:
    """``path``'s status; ``input_not_found`` when it is missing, ``input_unreadable`` when it
    cannot be read (``label`` names it in the message)."""
    try:
        return path.stat()
    except FileNotFoundError as exc:
        raise InputNotFound(f"{label}: no such file") from exc
    except OSError as exc:
        raise InputUnreadable(f"{label}: cannot be read ({exc.strerror})") from exc
