"""A job's inputs, fetched from S3 into its scratch folder: every URI checked against the
allow-list before anything is downloaded, files named by the worker (``input-000.bin``), never
after a key, and fonts (a text's ``font_uri``) validated once and cached for the worker's life.

Nothing but ``s3://`` URIs is accepted: a job can never make the worker read a local path.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gpu_worker.job import Job
from gpu_worker.render import fonts
from gpu_worker.render.stages import StageClock
from gpu_worker.service.storage import S3Uri, Storage, allowed_buckets, check_allowed

FONT_MAX_BYTES = 64 * 1024**2
FONT_CACHE_FILES = 64  # fonts kept per worker, the most recently used


@dataclass(frozen=True)
class Input:
    """One distinct URI a job reads, the first place it is named, and whether it is a font."""

    uri: str
    s3: S3Uri
    label: str
    font: bool


def plan_inputs(job: Job, configured: frozenset[str] | None) -> tuple[list[S3Uri], list[Input]]:
    """The job's outputs (one per rendition) and its distinct inputs, all parsed and
    allowed, or ``input_forbidden``. Without an allow-list, every output goes to the first
    output's bucket."""
    labels = (
        ["output.uri"]
        if job.outputs is None
        else [f"outputs[{i}].uri" for i in range(len(job.outputs))]
    )
    outputs = [
        S3Uri.parse(rendition.uri, label)
        for rendition, label in zip(job.renditions, labels, strict=True)
    ]
    allowed = allowed_buckets(configured, outputs[0].bucket)
    for output, label in zip(outputs, labels, strict=True):
        check_allowed(output, allowed, label)
    inputs: list[Input] = []
    for ref in job.inputs():
        s3 = S3Uri.parse(ref.uri, ref.label)
        check_allowed(s3, allowed, ref.label)
        inputs.append(Input(ref.uri, s3, ref.label, ref.font))
    return outputs, inputs


class FontCache:
    """Fonts fetched from S3, validated as fonts once, kept by URI and ETag; the
    ``capacity`` most recently used are kept, older files are deleted (a job that still
    uses one has its own hard link in its folder)."""

    def __init__(self, folder: Path, storage: Storage, capacity: int = FONT_CACHE_FILES) -> None:
        self.folder = folder
        self.storage = storage
        self.capacity = max(1, capacity)
        self._lock = threading.Lock()
        self._files: OrderedDict[tuple[str, str], Path] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        return len(self._files)

    def get(self, item: Input, dest: Path) -> int:
        """Put the cached, validated font file for ``item`` at ``dest`` (a hard link when it
        can); the bytes downloaded (0 if it was cached)."""
        key = (str(item.s3), self.storage.etag(item.s3, item.label))
        with self._lock:
            hit = self._files.get(key)
            if hit is not None and hit.exists():
                self._files.move_to_end(key)
                _link(hit, dest)
                return 0
            self._count += 1
            path = self.folder / f"font-{self._count:04d}.bin"
        self.folder.mkdir(parents=True, exist_ok=True)
        size = self.storage.download(item.s3, path, item.label, FONT_MAX_BYTES)
        try:
            fonts.load_font_file(path, item.uri)
        except Exception:
            path.unlink(missing_ok=True)
            raise
        with self._lock:
            self._files[key] = path
            _link(path, dest)
            while len(self._files) > self.capacity:
                _, old = self._files.popitem(last=False)
                old.unlink(missing_ok=True)
        return size


def _link(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def fetch_inputs(
    inputs: list[Input],
    folder: Path,
    storage: Storage,
    font_cache: FontCache,
    max_bytes: int,
    clock: StageClock,
    before_each: Callable[[], None] | None = None,
) -> Mapping[str, Path]:
    """Download every input into ``folder``; the map from job URI to local file for the render.

    ``before_each`` runs before each download (the worker stops there when told to shut down).
    """
    fetched: dict[str, Path] = {}
    for n, item in enumerate(inputs):
        if before_each is not None:
            before_each()
        with clock.stage("fetch_inputs", uri=item.uri, bytes=0) as attrs:
            if item.font:
                path = folder / f"font-{n:03d}.bin"
                size = font_cache.get(item, path)
                attrs["cached"] = size == 0
            else:
                path = folder / f"input-{n:03d}.bin"
                size = storage.download(item.s3, path, item.label, max_bytes)
            attrs["bytes"] = size
        fetched[item.uri] = path
    return fetched
