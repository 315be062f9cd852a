"""The floor: what the reference reel costs with nothing but decoding, fitting and encoding.

    python benchmarks/floor.py JOB.json OUT.mp4

Reads the same job file as ``gpu-worker render`` and ignores its texts and audio. Each clip is
decoded with PyAV (frame threads, ``thread_type = "AUTO"``) a few frames ahead in its own
thread, as the renderer does; the frame shown at each output time is picked by timestamp (the
last one not after it), fitted by the same libavfilter filters the renderer uses
(``gpu_worker.render.clips.filter_chain``, so the floor follows the renderer) and encoded with the
renderer's libx264 options for the job's quality into an MP4 (``+faststart``). No text, no
compositing, no audio.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.filter

from gpu_worker.job import Fit, parse_job
from gpu_worker.render.clips import color_args, filter_chain
from gpu_worker.render.encoder import X264, add_video_stream, encoder_options
from gpu_worker.render.media import probe
from gpu_worker.settings import Settings

_EPS = 1e-4


class _Cover:
    """The renderer's cover fit as one libavfilter graph, built from the first decoded frame:
    the filters come from ``gpu_worker.render.clips.filter_chain`` (whichever signature it has now;
    newer versions take the upright source size, to crop before scaling)."""

    def __init__(
        self, first: av.VideoFrame, time_base: Any, rotation: int, width: int, height: int
    ) -> None:
        src_w, src_h = first.width, first.height
        if rotation in (90, 270):
            src_w, src_h = src_h, src_w
        chain = filter_chain(rotation, Fit.COVER, width, height, src_w, src_h, color_args(first))
        self.graph = av.filter.Graph()
        last = self.graph.add_buffer(
            width=first.width, height=first.height, format=first.format, time_base=time_base
        )
        for name, args in chain:
            node = self.graph.add(name, args) if args else self.graph.add(name)
            last.link_to(node)
            last = node
        last.link_to(self.graph.add("buffersink"))
        self.graph.configure()

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        self.graph.push(frame)
        out = self.graph.pull()
        assert isinstance(out, av.VideoFrame)
        return out


def _clip_frames(
    path: Path, rotation: int, start: float, seconds: float, fps: int, width: int, height: int
) -> Iterator[av.VideoFrame]:
    """Fitted frames of one clip at ``fps`` for ``seconds``, picked by timestamp."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base
        origin = float(stream.start_time * tb) if stream.start_time and tb else 0.0
        decoded = container.decode(stream)
        current = next(decoded, None)
        if current is None:
            raise SystemExit(f"{path}: no video frame")
        fit = _Cover(current, tb, rotation, width, height)
        upcoming = next(decoded, None)
        fitted = None
        for n in range(round(seconds * fps)):
            target = origin + start + n / fps + _EPS
            while upcoming is not None and (upcoming.time or 0.0) <= target:
                current, fitted = upcoming, None
                upcoming = next(decoded, None)
            if fitted is None:
                fitted = fit(current)
            yield fitted


_END = object()


def _ahead(frames: Iterator[av.VideoFrame], depth: int = 4) -> Iterator[av.VideoFrame]:
    """``frames`` produced in a background thread, up to ``depth`` ahead: decoding and fitting
    (FFmpeg, without the GIL) overlap with encoding, as in the renderer."""
    box: queue.Queue[object] = queue.Queue(maxsize=depth)

    def produce() -> None:
        try:
            for frame in frames:
                box.put(frame)
            box.put(_END)
        except BaseException as exc:  # raised in the consumer
            box.put(exc)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    while (item := box.get()) is not _END:
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, av.VideoFrame)
        yield item
    worker.join()


def render_floor(job_file: Path, output: Path) -> int:
    """Write the floor video for ``job_file``; the number of frames written."""
    job = parse_job(json.loads(job_file.read_text()))
    limits = Settings.from_env().limits
    width, height, fps = job.output.width, job.output.height, job.output.fps
    written = 0
    with av.open(str(output), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = add_video_stream(out, X264, width, height, fps)
        stream.time_base = Fraction(1, fps)
        ctx = stream.codec_context
        ctx.options = encoder_options(X264, job.output.quality, fps)
        ctx.color_primaries = ctx.color_trc = ctx.colorspace = 1  # BT.709, as the renderer
        ctx.color_range = 1
        for clip in job.clips:
            path = Path(clip.uri) if Path(clip.uri).is_absolute() else job_file.parent / clip.uri
            info = probe(path, clip.uri, limits)
            assert info.video is not None
            seconds = clip.duration
            if seconds is None:
                seconds = (info.duration or 0.0) - clip.trim_start
            frames = _clip_frames(
                path, info.video.rotation, clip.trim_start, seconds, fps, width, height
            )
            for frame in _ahead(frames):
                # A decoded frame carries its source's picture type (I/P/B), which libx264
                # obeys: clear it so the encoder makes its own decisions, as for ours.
                frame.pict_type = av.video.frame.PictureType.NONE
                frame.pts = written
                frame.time_base = Fraction(1, fps)
                for packet in stream.encode(frame):
                    out.mux(packet)
                written += 1
        for packet in stream.encode(None):
            out.mux(packet)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    render_floor(Path(args[0]), Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
