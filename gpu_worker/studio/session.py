"""One studio session on one job file: validation as ``gpu-worker validate`` gives it, the
timeline's layout, frames as ``gpu-worker preview`` gives them (fast, from the caches), saving
the file back on request, and the whole video rendered in the background.

It reads and writes the job file it was started with, reads the media the job names (relative
to the job's folder, as ``gpu-worker render`` does) and writes the video where the job's
``output.uri`` says, as ``render`` does (into a temporary folder when that is not local).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu_worker.errors import GpuWorkerError, HardwareFault, InvalidJob, UnsupportedInput
from gpu_worker.job import Job, decode_job_text, parse_job
from gpu_worker.limits import Limits
from gpu_worker.render.checks import job_problems
from gpu_worker.render.encoder import SOFTWARE, choose_encoder
from gpu_worker.render.layers import SpriteLayer
from gpu_worker.render.pipeline import (
    Composition,
    frame_index,
    frame_of,
    prepare,
    render_job,
    to_rgb_image,
)
from gpu_worker.studio.caches import CachedInputs, FileStamp, Lru, ReaderPool, file_stamp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """A composed frame, as a lossless BMP (the fastest picture a browser shows)."""

    image: bytes
    index: int
    time: float


@dataclass
class RenderTask:
    """The render under way or last finished, as the page polls it."""

    id: str
    state: str = "running"  # running | done | failed
    done: int = 0
    total: int = 0
    error: str | None = None
    output: Path | None = None
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "error": self.error,
            "output": str(self.output) if self.output else None,
            "seconds": round(self.seconds, 2),
        }


def _sprite_layer(index: int, layer: SpriteLayer) -> dict[str, Any]:
    """A text or overlay on the timeline, with its box in the frame (pixels)."""
    sprite = layer.sprite
    return {
        "index": index,
        "start": layer.start,
        "end": layer.end,
        "box": [sprite.x, sprite.y, sprite.width, sprite.height],
    }


class SaveConflict(Exception):
    """The job file changed on disk since the page loaded it."""


def text_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Studio:
    """The state behind the page: one job file, its caches and its render."""

    def __init__(
        self,
        job_path: Path,
        *,
        limits: Limits | None = None,
        decoder: str = "auto",
        encoder: str = "auto",
    ) -> None:
        self.job_path = job_path.resolve()
        if not self.job_path.is_file():
            raise InvalidJob(f"no job file at {job_path}")
        self.base_dir = self.job_path.parent
        self.limits = limits or Limits()
        self.decoder = decoder
        self.encoder = encoder
        self.inputs = CachedInputs(self.base_dir)
        self.readers = ReaderPool()
        self.frames: Lru[tuple[str, int, tuple[FileStamp | None, ...]], Frame] = Lru(12)
        self._frame_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self.render_task: RenderTask | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    # The job file -------------------------------------------------------------------------

    def load(self) -> tuple[str, str]:
        """The job file's text and its hash (the base a later save is checked against)."""
        raw = self.job_path.read_bytes()
        return raw.decode("utf-8", errors="replace"), text_hash(raw)

    def save(self, text: str, base: str | None) -> str:
        """Write ``text`` to the job file (it must be JSON) and return its new hash. When the
        file on disk is no longer the one of hash ``base``, :class:`SaveConflict`."""
        decode_job_text(text)
        data = text.encode("utf-8")
        if base is not None and text_hash(self.job_path.read_bytes()) != base:
            raise SaveConflict("the job file changed on disk since it was loaded")
        tmp = self.job_path.with_name(f".{self.job_path.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, self.job_path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return text_hash(data)

    # Checks and layout --------------------------------------------------------------------

    def problems(self, text: str) -> list[str]:
        """The lines ``gpu-worker validate`` prints for this text (none when valid)."""
        try:
            data = decode_job_text(text)
        except InvalidJob as exc:
            return [exc.one_line()]
        return job_problems(data)[1]

    def job_of(self, text: str) -> Job:
        return parse_job(decode_job_text(text))

    def _prepare(self, job: Job) -> Composition:
        for ref in job.inputs():  # as `gpu-worker render`: local files only
            if "://" in ref.uri:
                raise UnsupportedInput(
                    f"{ref.label}: {ref.uri} is not a local file; the studio reads local paths"
                )
        comp = prepare(job, self.inputs, self.limits)
        comp.decoder = self.decoder
        return comp

    def layout(self, text: str) -> dict[str, Any]:
        """Where everything sits on the output timeline, as the renderer places it."""
        job = self.job_of(text)
        with self._frame_lock:
            comp = self._prepare(job)
        return {
            "duration": comp.duration,
            "frames": comp.frames,
            "fps": comp.fps,
            "width": comp.width,
            "height": comp.height,
            "clips": [
                {
                    "index": p.index,
                    "start": p.start,
                    "end": p.end,
                    "uri": job.clips[p.index].uri,
                    "transition": {
                        "type": p.transition_in.value,
                        "duration": p.transition_in_duration,
                    },
                }
                for p in comp.placements
            ],
            "texts": [_sprite_layer(i, layer) for i, layer in enumerate(comp.texts)],
            "overlays": [_sprite_layer(i, layer) for i, layer in enumerate(comp.overlays)],
        }

    # Frames -------------------------------------------------------------------------------

    def frame(self, text: str, at: float) -> Frame:
        """The frame the video shows at ``at`` seconds: ``preview_frame``'s, from the caches."""
        job = self.job_of(text)
        with self._frame_lock:
            comp = self._prepare(job)
            n = frame_index(comp, at)
            stamps = tuple(file_stamp(self.inputs.path(ref.uri, ref.label)) for ref in job.inputs())
            key = (job.model_dump_json(), n, stamps)
            cached = self.frames.get(key)
            if cached is not None:
                return cached
            try:
                composed = frame_of(comp, n, lambda layer: self.readers.fitted(comp, layer))
            except HardwareFault as fault:  # the GPU's fault: decode on the CPU from now on
                log.warning("%s; decoding on the CPU", fault.message)
                self.readers.close()
                self.decoder = comp.decoder = "cpu"
                composed = frame_of(comp, n, lambda layer: self.readers.fitted(comp, layer))
            buffer = io.BytesIO()
            to_rgb_image(composed).save(buffer, format="BMP")
            result = Frame(buffer.getvalue(), n, comp.time_of(n))
            self.frames.put(key, result)
            return result

    # Rendering ----------------------------------------------------------------------------

    def output_path(self, job: Job) -> Path:
        """Where ``gpu-worker render`` would write the job's video; a temporary folder when
        its ``output.uri`` is not a local path (a job with ``outputs``: its first rendition,
        the one the page shows)."""
        uri = job.renditions[0].uri
        if "://" not in uri:
            path = Path(uri)
            return (path if path.is_absolute() else self.base_dir / path).resolve()
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="gpu-worker-studio-")
        return Path(self._scratch.name) / f"{job.job_id}.mp4"

    def start_render(self, text: str) -> RenderTask:
        """Render the job in the background; refused while a render is under way."""
        job = self.job_of(text)
        with self._render_lock:
            if self.render_task is not None and self.render_task.state == "running":
                raise RuntimeError("a render is already under way")
            task = RenderTask(uuid.uuid4().hex[:12], output=self.output_path(job))
            self.render_task = task
        threading.Thread(target=self._render, args=(job, task), daemon=True).start()
        return task

    def _render(self, job: Job, task: RenderTask) -> None:
        assert task.output is not None
        job = job.for_output(job.renditions[0])  # the rendition the page shows

        def progress(done: int, total: int) -> None:
            task.done, task.total = done, total

        common: dict[str, Any] = {
            "base_dir": self.base_dir,
            "output": task.output,
            "limits": self.limits,
            "progress": progress,
        }
        state = "failed"
        try:
            try:
                render_job(
                    job, encoder=choose_encoder(self.encoder), decoder=self.decoder, **common
                )
            except HardwareFault as fault:
                log.warning("%s; rendering again on the CPU", fault.message)
                render_job(job, encoder=choose_encoder(SOFTWARE), decoder="cpu", **common)
            state = "done"
        except GpuWorkerError as exc:
            task.error = exc.one_line()
        except Exception as exc:  # the page shows it; the studio keeps serving
            log.debug("render failed", exc_info=True)
            task.error = f"error internal: {type(exc).__name__}: {exc}"
        finally:
            task.seconds = time.perf_counter() - task.started
            task.state = state  # last: the page reads the rest once it sees the end

    def close(self) -> None:
        with self._frame_lock:
            self.readers.close()
        if self._scratch is not None:
            self._scratch.cleanup()
