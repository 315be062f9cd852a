"""What the studio keeps between requests so scrubbing is fast: probed inputs (by path,
modification time and size), drawn text sprites (by the text's spec and the frame size), drawn
overlays (by their specs and files), open decoders (for times that move forward) and the last
composed frames.

Every cached thing is what the render core itself computes; only when it is computed changes,
so a frame from the caches is the frame ``gpu-worker preview`` gives.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import av

from gpu_worker.job import Job, Text
from gpu_worker.limits import Limits
from gpu_worker.render.clips import FrameSource
from gpu_worker.render.composite import YuvSprite
from gpu_worker.render.layers import SpriteLayer
from gpu_worker.render.media import MediaInfo
from gpu_worker.render.pipeline import Composition, Inputs
from gpu_worker.render.timeline import Layer

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# A decoder already open is read on when the next time asked of it is at most this far ahead;
# further on (or back in time), a fresh one seeks there.
REUSE_AHEAD = 2.0


class Lru(Generic[K, V]):
    """A small least-recently-used map, safe across threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


FileStamp = tuple[str, int, int]


def file_stamp(path: Path) -> FileStamp | None:
    """A file's identity for caching: resolved path, modification time and size (None when
    it cannot be read; the render core then reports why)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


class CachedInputs(Inputs):
    """Inputs whose probes, text sprites and overlays outlive one request."""

    def __init__(self, base_dir: Path) -> None:
        super().__init__(base_dir)
        self.probes: Lru[tuple[str, FileStamp, Limits], MediaInfo] = Lru(256)
        self.sprites: Lru[tuple[str, int, int, FileStamp | None], YuvSprite] = Lru(128)
        self.overlays: Lru[Hashable, list[SpriteLayer]] = Lru(16)
        self.stats = {"probes": 0, "sprites": 0, "overlays": 0}

    def probe(self, uri: str, label: str, limits: Limits) -> MediaInfo:
        stamp = file_stamp(self.path(uri, label))
        if stamp is None:
            return super().probe(uri, label, limits)
        key = (uri, stamp, limits)
        info = self.probes.get(key)
        if info is None:
            info = super().probe(uri, label, limits)
            self.stats["probes"] += 1
            self.probes.put(key, info)
        return info

    def text_sprite(
        self, spec: Text, index: int, width: int, height: int, font_file: Path | None
    ) -> YuvSprite:
        font = file_stamp(font_file) if font_file is not None else None
        key = (spec.model_dump_json(by_alias=True), width, height, font)
        sprite = self.sprites.get(key)
        if sprite is None:
            sprite = super().text_sprite(spec, index, width, height, font_file)
            self.stats["sprites"] += 1
            self.sprites.put(key, sprite)
        return sprite

    def overlay_layers(self, job: Job, limits: Limits, duration: float) -> list[SpriteLayer]:
        if not job.overlays:
            return []
        files = []
        for i, spec in enumerate(job.overlays):
            stamp = file_stamp(self.path(spec.uri, f"overlays[{i}]"))
            if stamp is None:  # the render core says why
                return super().overlay_layers(job, limits, duration)
            files.append(stamp)
        specs = "".join(spec.model_dump_json(by_alias=True) for spec in job.overlays)
        size = job.renditions[0].width, job.renditions[0].height
        key = (specs, tuple(files), *size, duration, limits)
        layers = self.overlays.get(key)
        if layers is None:
            layers = super().overlay_layers(job, limits, duration)
            self.stats["overlays"] += 1
            self.overlays.put(key, layers)
        return layers


@dataclass
class _Open:
    reader: FrameSource
    last: float  # the local time last asked of it


class ReaderPool:
    """Open clip decoders, kept between frames: a time a little after the last one asked of a
    decoder is decoded on from where it stands instead of seeking again."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._open: OrderedDict[Hashable, _Open] = OrderedDict()
        self.opened = 0

    def fitted(self, comp: Composition, layer: Layer) -> av.VideoFrame:
        """The fitted frame of ``layer``'s clip at its local time, as ClipReader gives it."""
        index = layer.index
        # Everything Composition.open_reader reads: the clip, its file, the output (size,
        # fps for deinterlacing, quality for a motion), the clip's length, the limits.
        key = (
            index,
            comp.job.clips[index].model_dump_json(),
            file_stamp(comp.clips[index].path),  # what was probed follows from the file
            comp.output.model_dump_json(),
            comp.placements[index].length,
            comp.limits,
            comp.decoder,
        )
        entry = self._open.pop(key, None)
        ahead = layer.local_time - entry.last if entry is not None else -1.0
        if entry is None or not 0.0 <= ahead <= REUSE_AHEAD:
            if entry is not None:
                entry.reader.close()
            entry = _Open(comp.open_reader(index, layer.local_time), layer.local_time)
            self.opened += 1
        try:
            frame = entry.reader.frame_at(layer.local_time)
        except BaseException:
            entry.reader.close()
            raise
        entry.last = layer.local_time
        self._open[key] = entry
        while len(self._open) > self.size:
            _, old = self._open.popitem(last=False)
            old.reader.close()
        return frame

    def close(self) -> None:
        while self._open:
            _, entry = self._open.popitem()
            entry.reader.close()
