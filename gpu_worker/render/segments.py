"""A render split by frame ranges: planning the ranges on keyframe boundaries, rendering one
range as video only, and joining the ranges by stream copy with the soundtrack.

Each segment is encoded exactly as the single render encodes those frames (same composition,
same encoder settings); its first frame is an IDR frame and its GOPs are closed, so segments
join without re-encoding. The soundtrack is mixed and encoded once, for the whole timeline,
by the join: never per segment, so nothing clicks or drifts at a boundary.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from gpu_worker.errors import GpuWorkerError, InternalError
from gpu_worker.job import Job
from gpu_worker.limits import Limits
from gpu_worker.render import audio as soundtrack
from gpu_worker.render import fonts
from gpu_worker.render.clips import FrameSource
from gpu_worker.render.encoder import EncoderChoice, add_audio_stream, choose_encoder
from gpu_worker.render.pipeline import (
    AUDIO_BITRATE,
    Composition,
    Inputs,
    Progress,
    RenderResult,
    _encode,
    _Target,
    _temp_beside,
    frame_of,
    poster_path,
    prepare,
    soundtrack_of,
    to_rgb_image,
)
from gpu_worker.render.stages import StageClock
from gpu_worker.render.timeline import Layer

KEYFRAME_SECONDS = 2  # the encoder's GOP (encoder_options): segments start on this grid
MIN_SEGMENT_SECONDS = 4.0


@dataclass(frozen=True)
class Span:
    """Frames ``start`` (inclusive) to ``stop`` (exclusive) of a render, segment ``index``."""

    index: int
    start: int
    stop: int

    @property
    def frames(self) -> range:
        return range(self.start, self.stop)


def plan_spans(
    frames: int, fps: int, parts: int, min_seconds: float = MIN_SEGMENT_SECONDS
) -> list[Span]:
    """Up to ``parts`` consecutive frame ranges covering ``frames``, each starting on the
    keyframe grid and (but for a video too short to split) at least ``min_seconds`` long."""
    gop = KEYFRAME_SECONDS * fps
    least = max(1, math.ceil(min_seconds * fps / gop))
    full = frames // gop  # whole GOPs: the last, partial one only ever extends a segment
    count = max(1, min(parts, full // least))
    cuts = [i * full // count * gop for i in range(count)] + [frames]
    return [Span(i, cuts[i], cuts[i + 1]) for i in range(count)]


def render_segment(
    job: Job,
    span: Span,
    *,
    base_dir: Path,
    output: Path,
    fetched: Mapping[str, Path] | None = None,
    limits: Limits | None = None,
    clock: StageClock | None = None,
    progress: Progress | None = None,
    encoder: EncoderChoice | None = None,
    decoder: str = "auto",
) -> Path:
    """Render ``span``'s frames of ``job`` to ``output``: an MP4 with video only."""
    clock = clock or StageClock()
    comp = prepare(job, Inputs(base_dir, fetched), limits, clock)
    comp.decoder = decoder
    if not 0 <= span.start < span.stop <= comp.frames:
        raise InternalError(f"segment {span.index}: frames {span.start}-{span.stop} are outside")
    enc = encoder or choose_encoder()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(output, ".mp4")
    try:
        target = _Target(comp, output, tmp, None)
        _encode([target], enc, clock, progress, span=span.frames, with_audio=False)
        os.replace(tmp, output)
    except GpuWorkerError:
        raise
    except av.error.FFmpegError as exc:
        raise InternalError(f"encoding segment {span.index} failed: {exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return output


def join_segments(
    job: Job,
    segments: Sequence[Path],
    *,
    base_dir: Path,
    output: Path,
    fetched: Mapping[str, Path] | None = None,
    limits: Limits | None = None,
    clock: StageClock | None = None,
    decoder: str = "auto",
    encoder: str = "",
) -> RenderResult:
    """Stream-copy ``segments`` (in order) into ``output`` with the whole soundtrack,
    ``+faststart``, and the poster when the job asks for one. ``encoder`` names the
    segments' encoder, for the result."""
    clock = clock or StageClock()
    comp = prepare(job, Inputs(base_dir, fetched), limits, clock)
    comp.decoder = decoder
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(output, ".mp4")
    tmp_poster = _temp_beside(output, ".jpg") if comp.output.poster else None
    try:
        with clock.stage("join") as attrs:
            _join(comp, segments, tmp)
            attrs["segments"] = len(segments)
        if tmp_poster is not None:
            with clock.stage("poster"):
                _poster(comp, tmp_poster)
            os.replace(tmp_poster, poster_path(output))
        os.replace(tmp, output)
    except GpuWorkerError:
        raise
    except av.error.FFmpegError as exc:
        raise InternalError(f"joining segments failed: {exc}") from exc
    finally:
        for leftover in (tmp, tmp_poster):
            if leftover is not None and leftover.exists():
                leftover.unlink()
    return RenderResult(
        output=output,
        poster=poster_path(output) if comp.output.poster else None,
        duration=comp.duration,
        width=comp.width,
        height=comp.height,
        fps=comp.fps,
        frames=comp.frames,
        encoder=encoder,
        size_bytes=output.stat().st_size,
        input_bytes=comp.input_bytes,
        timings=dict(clock.totals),
    )


def _join(comp: Composition, segments: Sequence[Path], tmp: Path) -> None:
    """Mux the segments' packets, shifted to their place, interleaved with the soundtrack."""
    if not segments:
        raise InternalError("no segments to join")
    fps = comp.fps
    inputs = [av.open(str(path)) for path in segments]
    try:
        streams = [container.streams.video[0] for container in inputs]
        first = streams[0]
        for i, stream in enumerate(streams):
            ctx = stream.codec_context
            if (ctx.name, ctx.extradata, ctx.width, ctx.height) != (
                first.codec_context.name,
                first.codec_context.extradata,
                first.codec_context.width,
                first.codec_context.height,
            ):
                raise InternalError(f"segment {i} was encoded with other settings than segment 0")
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            vstream = out.add_stream_from_template(first)
            tb = first.time_base
            assert tb is not None
            vstream.time_base = tb
            astream = add_audio_stream(out, "aac", soundtrack.RATE)
            astream.bit_rate = AUDIO_BITRATE
            audio_frames = soundtrack_of(comp).frames()
            pending: av.AudioFrame | None = next(audio_frames, None)
            done = 0  # frames muxed so far
            for container, stream in zip(inputs, streams, strict=True):
                offset: int | None = None
                count = 0
                for packet in container.demux(stream):
                    if packet.size == 0 and packet.pts is None:
                        continue  # the demuxer's end-of-stream marker
                    assert packet.pts is not None and packet.dts is not None
                    if offset is None:  # the segment's IDR frame: shown first, at its place
                        offset = round(Fraction(done, fps) / tb) - packet.pts
                    packet.pts += offset
                    packet.dts += offset
                    packet.stream = vstream
                    horizon = (float(packet.dts * tb) + 1 / fps) * soundtrack.RATE
                    while pending is not None and (pending.pts or 0) < horizon:
                        for apacket in astream.encode(pending):
                            out.mux(apacket)
                        pending = next(audio_frames, None)
                    out.mux(packet)
                    count += 1
                done += count
            while pending is not None:
                for apacket in astream.encode(pending):
                    out.mux(apacket)
                pending = next(audio_frames, None)
            for apacket in astream.encode(None):
                out.mux(apacket)
    finally:
        for container in inputs:
            container.close()
    if done != comp.frames:
        raise InternalError(f"the segments hold {done} frames; the video has {comp.frames}")


def _poster(comp: Composition, path: Path) -> None:
    """The poster the single render saves: the poster frame, composited again."""
    readers: list[FrameSource] = []

    def fitted(layer: Layer) -> av.VideoFrame:
        readers.append(comp.open_reader(layer.index, layer.local_time))
        return readers[-1].frame_at(layer.local_time)

    try:
        frame = frame_of(comp, comp.poster_frame(), fitted)
    finally:
        for reader in readers:
            reader.close()
    to_rgb_image(frame).save(path, format="JPEG", quality=90)


@dataclass(frozen=True)
class _Task:
    """One segment for a worker process: everything it needs, picklable."""

    job_json: str
    span: Span
    base_dir: Path
    output: Path
    limits: Limits | None
    encoder: str
    decoder: str
    fonts_dir: Path | None


def _render_task(task: _Task) -> dict[str, float]:
    """A worker process's segment; the seconds it spent per stage."""
    fonts.use_fonts_dir(task.fonts_dir)
    clock = StageClock()
    job = Job.model_validate_json(task.job_json)
    enc = choose_encoder(task.encoder)
    render_segment(
        job,
        task.span,
        base_dir=task.base_dir,
        output=task.output,
        limits=task.limits,
        clock=clock,
        encoder=enc,
        decoder=task.decoder,
    )
    return dict(clock.totals)


def render_split(
    job: Job,
    parts: int,
    *,
    base_dir: Path,
    output: Path,
    limits: Limits | None = None,
    clock: StageClock | None = None,
    encoder: str = "auto",
    decoder: str = "auto",
    fonts_dir: Path | None = None,
) -> RenderResult:
    """Render ``job`` as up to ``parts`` segments in as many processes, then join them: the
    same video as :func:`~gpu_worker.render.pipeline.render_job`. A segment's
    :class:`~gpu_worker.errors.HardwareFault` is raised here (every segment must come from
    one encoder for the join, so the caller renders all of them again on the CPU)."""
    clock = clock or StageClock()
    comp = prepare(job, Inputs(base_dir), limits)
    spans = plan_spans(comp.frames, comp.fps, parts)
    enc = choose_encoder(encoder)
    output.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{output.stem}.segments.", dir=output.parent))
    try:
        tasks = [
            _Task(
                job.model_dump_json(),
                span,
                base_dir,
                folder / f"{span.index:04d}.mp4",
                limits,
                encoder,
                decoder,
                fonts_dir,
            )
            for span in spans
        ]
        spawn = multiprocessing.get_context("spawn")
        with clock.stage("segments") as attrs:
            attrs["segments"] = len(spans)
            with ProcessPoolExecutor(len(tasks), mp_context=spawn) as pool:
                for span, totals in zip(spans, pool.map(_render_task, tasks), strict=True):
                    for stage, seconds in totals.items():
                        clock.record(stage, seconds, segment=span.index)
        return join_segments(
            job,
            [task.output for task in tasks],
            base_dir=base_dir,
            output=output,
            limits=limits,
            clock=clock,
            decoder=decoder,
            encoder=enc.name,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
