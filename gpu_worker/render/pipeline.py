"""A job in, a finished MP4 out: probing inputs, laying out the timeline, drawing texts once,
then decode → composite → encode frame by frame, with the soundtrack muxed alongside.

A job with several ``outputs`` (renditions) probes and decodes its inputs once: each decoded
frame is fitted to every rendition's size, composed with that rendition's own sprites and
encoded by its own encoder, each in its own thread (on a GPU, parallel NVENC sessions).

The output is written under a temporary name and moved into place only when complete, so a
failed render never leaves a file that looks finished. Nothing here knows about AWS: inputs
arrive as local paths (the queue worker downloads ``s3://`` inputs and passes them in).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import logging
import math
import os
import queue
import resource
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from pathlib import Path

import av
from PIL import Image

from gpu_worker.errors import (
    GpuWorkerError,
    HardwareFault,
    InternalError,
    InvalidJob,
    LimitExceeded,
    UnsupportedInput,
)
from gpu_worker.job import Cue, Job, Output, Text, TransitionType
from gpu_worker.limits import Limits
from gpu_worker.render import audio as soundtrack
from gpu_worker.render import transitions
from gpu_worker.render.captions import CaptionLayer, caption_layer, load_caption_font
from gpu_worker.render.clips import ClipReader, FrameSource, Prefetcher, clip_length
from gpu_worker.render.composite import (
    U8,
    YuvSprite,
    copy_frame,
    darken,
    frame_pixels,
    frame_planes,
    to_frame,
    to_yuv_sprite,
    writable,
)
from gpu_worker.render.encoder import (
    EncoderChoice,
    add_audio_stream,
    add_video_stream,
    choose_encoder,
    encoder_options,
)
from gpu_worker.render.host import usable_cpus
from gpu_worker.render.layers import Drawable, SpriteLayer
from gpu_worker.render.loudness import Ducking
from gpu_worker.render.media import MediaInfo, probe
from gpu_worker.render.motion import MotionReader, MotionSampler, base_size
from gpu_worker.render.overlays import overlay_layers
from gpu_worker.render.sound_encoder import SoundEncoder
from gpu_worker.render.stages import StageClock, Stopwatch
from gpu_worker.render.subtitles import read_captions
from gpu_worker.render.text import load_text_font, render_text
from gpu_worker.render.timeline import (
    Layer,
    Placement,
    frame_count,
    layers_at,
    place_clips,
    total_duration,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
AUDIO_BITRATE = 192_000


@dataclass(frozen=True)
class RenderResult:
    """What a finished render produced, with the seconds spent per stage."""

    output: Path
    poster: Path | None
    duration: float
    width: int
    height: int
    fps: int
    frames: int
    encoder: str
    size_bytes: int
    input_bytes: int
    timings: dict[str, float] = field(default_factory=dict)
    # CPU seconds by stage, of the threads that did each stage's work (libx264's own threads
    # are in none of them), and of the whole process from the first stage to the result (in a
    # worker rendering several jobs at once, theirs included).
    cpu: dict[str, float] = field(default_factory=dict)
    process_cpu: float | None = None
    renditions: tuple[RenderResult, ...] = ()  # a job with ``outputs``: every one, in order

    @property
    def all(self) -> tuple[RenderResult, ...]:
        """Every video written: the renditions, or this one."""
        return self.renditions or (self,)


class Inputs:
    """Turns a job's URIs into local files: ones the caller already fetched (``fetched``,
    by URI), absolute paths, or paths relative to the job file's folder. The core reads
    local files only; any other ``scheme://`` URI left unfetched is ``unsupported_input``."""

    def __init__(self, base_dir: Path, fetched: Mapping[str, Path] | None = None) -> None:
        self.base_dir = base_dir
        self.fetched = dict(fetched or {})

    def path(self, uri: str, label: str) -> Path:
        if uri in self.fetched:
            return self.fetched[uri]
        if "://" in uri:
            raise UnsupportedInput(
                f"{label}: {uri} is not a local file; the renderer reads local paths only"
            )
        path = Path(uri)
        return path if path.is_absolute() else self.base_dir / path

    def probe(self, uri: str, label: str, limits: Limits) -> MediaInfo:
        """What the input ``uri`` holds (a long-lived caller may remember it)."""
        return probe(self.path(uri, label), uri, limits)

    def text_sprite(
        self, spec: Text, index: int, width: int, height: int, font_file: Path | None
    ) -> YuvSprite:
        """Text ``index`` drawn and placed in a ``width`` x ``height`` frame, ready to blend
        (a long-lived caller may remember it)."""
        sprite = render_text(spec, index, width, height, font_file)
        return to_yuv_sprite(sprite.image, sprite.x, sprite.y)

    def overlay_layers(self, job: Job, limits: Limits, duration: float) -> list[SpriteLayer]:
        """The job's overlays drawn and placed, ready to blend (a long-lived caller may
        remember them)."""
        return overlay_layers(job, self.path, limits, duration)


@dataclass
class Composition:
    """A job made ready to render: inputs probed, clips placed, overlays and texts drawn."""

    job: Job
    clips: list[MediaInfo]
    placements: list[Placement]
    texts: list[SpriteLayer]
    duration: float
    frames: int
    music: MediaInfo | None
    limits: Limits
    input_bytes: int
    decoder: str = "auto"  # auto | nvdec | cpu
    overlays: list[SpriteLayer] = field(default_factory=list)
    captions: CaptionLayer | None = None

    @property
    def drawables(self) -> list[Drawable]:
        """What is drawn over the clips, bottom first: the overlays, the texts, the captions."""
        top = [self.captions] if self.captions is not None else []
        return [*self.overlays, *self.texts, *top]

    @property
    def output(self) -> Output:
        return self.job.renditions[0]

    @property
    def width(self) -> int:
        return self.output.width

    @property
    def height(self) -> int:
        return self.output.height

    @property
    def fps(self) -> int:
        return self.output.fps

    def time_of(self, n: int) -> float:
        return n / self.fps

    def open_reader(
        self, index: int, start_at: float = 0.0, also: Sequence[Composition] = ()
    ) -> FrameSource:
        """A reader of clip ``index``'s fitted frames; with a motion, fitted to the motion's
        base size and resampled along it for each output frame. ``also``: more renditions,
        whose frames come from the same decode (``frames_at``, in this order after ours)."""
        clip, info = self.job.clips[index], self.clips[index]
        comps = [self, *also]
        sizes = [(c.width, c.height) for c in comps]
        if clip.motion is not None:
            assert info.video is not None
            src_w, src_h = info.video.width, info.video.height
            if info.video.rotation in (90, 270):
                src_w, src_h = src_h, src_w
            scale = clip.motion.scale
            sizes = [base_size(clip.fit, scale, src_w, src_h, w, h) for w, h in sizes]
        (width, height), *more = sizes
        reader = ClipReader(
            clip,
            info,
            width,
            height,
            self.limits,
            start_at=start_at,
            decoder=self.decoder,
            also=more,
            fps=self.fps,
        )
        if clip.motion is None:
            return reader
        length = self.placements[index].length
        samplers = [
            MotionSampler(clip.motion, length, c.width, c.height, c.output.quality) for c in comps
        ]
        return MotionReader(reader, *samplers)

    def compose(
        self,
        n: int,
        fitted: Sequence[tuple[Layer, av.VideoFrame]],
        times: Stopwatch | None = None,
        owned: bool = False,
    ) -> av.VideoFrame:
        """Output frame ``n`` from its clip layers' fitted frames: the layers mixed (or wiped,
        or slid), then each visible overlay and text blended, only where it covers.

        ``owned``: the fitted frames are shown this once and are the caller's to change (the
        render's), so a lone clip's frame is drawn into in place (copied only when a decoder
        still holds its buffers) and one with nothing to draw goes out untouched; otherwise
        (a preview) they are left as they are."""
        t = self.time_of(n)
        watch = times or Stopwatch()
        with watch:
            (first, frame), *more = fitted
            if more or first.weight < 1.0 or first.brightness < 1.0:
                out = self._mixed(fitted)
            elif owned:
                out = frame
            else:
                out = copy_frame(frame)
            drawn = [d for d in self.drawables if d.visibility(t) > 0]
            if drawn:
                if out is frame:
                    out = writable(frame)
                planes = frame_planes(out)
                for drawable in drawn:
                    drawable.draw(planes, t)
        out.pts = n
        out.time_base = Fraction(1, self.fps)
        out.pict_type = av.video.frame.PictureType.NONE  # the encoder chooses frame types
        return out

    def _mixed(self, fitted: Sequence[tuple[Layer, av.VideoFrame]]) -> av.VideoFrame:
        """The clip layers of a transition (or a fade through black) in a frame of its own."""
        arr: U8 | None = None
        for layer, frame in fitted:
            pixels = frame_pixels(frame)
            if arr is None or layer.weight >= 1.0:
                arr = pixels
            elif layer.weight > 0.0:
                arr = transitions.apply(
                    layer.transition, arr, pixels, layer.weight, self.width, self.height
                )
        assert arr is not None
        brightness = min(layer.brightness for layer, _ in fitted)
        h, w = self.height, self.width
        if brightness < 1.0:
            arr[:h] = darken(arr[:h], brightness, 16)
            arr[h:] = darken(arr[h:], brightness, 128)
        return to_frame(arr, w, h)

    def poster_frame(self) -> int:
        """The earliest frame showing the most text, fully; without texts, a third in."""
        if not self.texts:
            return min(self.frames - 1, self.frames // 3)
        best, best_score = 0, -1.0
        for n in range(self.frames):
            t = self.time_of(n)
            score = 0.0
            for text in self.texts:
                score += text.visibility(t)
            if score > best_score + 1e-6:
                best, best_score = n, score
        return best


def prepare(
    job: Job, inputs: Inputs, limits: Limits | None = None, clock: StageClock | None = None
) -> Composition:
    """Read the caption file, probe every input, lay out the timeline and draw the texts
    (once per job); for a job with several outputs, its first rendition."""
    return prepare_renditions(job, inputs, limits, clock)[0]


def prepare_renditions(
    job: Job, inputs: Inputs, limits: Limits | None = None, clock: StageClock | None = None
) -> list[Composition]:
    """One composition per output of the job, in order: the caption file read, inputs
    probed and the timeline laid out once, overlays, texts and captions drawn for each
    rendition's size."""
    limits = limits or Limits()
    clock = clock or StageClock()
    if len(job.clips) > limits.max_clips:
        raise LimitExceeded(f"{len(job.clips)} clips; the limit is {limits.max_clips}")
    if len(job.texts) > limits.max_texts:
        raise LimitExceeded(f"{len(job.texts)} texts; the limit is {limits.max_texts}")
    if len(job.overlays) > limits.max_overlays:
        raise LimitExceeded(f"{len(job.overlays)} overlays; the limit is {limits.max_overlays}")
    cues = job.captions.cues if job.captions is not None else None
    if job.captions is not None and job.captions.uri is not None:  # a bad file fails first
        path = inputs.path(job.captions.uri, "captions.uri")
        cues = read_captions(path, "captions.uri", limits)
    font_files: dict[int, Path] = {}
    with clock.stage("probe") as attrs:
        for i, spec in enumerate(job.texts):  # fonts first: a broken one fails before decoding
            if spec.font_uri is not None:
                path = inputs.path(spec.font_uri, f"texts[{i}].font_uri")
                font_files[i] = load_text_font(spec, path)
        caption_font = None
        if job.captions is not None and job.captions.font_uri is not None and cues:
            path = inputs.path(job.captions.font_uri, "captions.font_uri")
            caption_font = load_caption_font(job.captions, cues, path)
        wanted = [(clip.uri, f"clips[{i}]") for i, clip in enumerate(job.clips)]
        if job.audio is not None and job.audio.uri is not None:
            wanted.append((job.audio.uri, "audio"))
        paths: list[Path] = []
        unreachable: GpuWorkerError | None = None  # an input named in a way we cannot read
        for uri, label in wanted:
            try:
                paths.append(inputs.path(uri, label))
            except GpuWorkerError as exc:
                unreachable = exc
                break
        probed, attrs.cpu_elsewhere = _probe_each_once(inputs, wanted[: len(paths)], paths, limits)
        if unreachable is not None:  # after the inputs before it, which may fail first
            raise unreachable
        infos = [probed[path] for path in paths[: len(job.clips)]]
        music: MediaInfo | None = None
        if job.audio is not None and job.audio.uri is not None:
            music = probed[paths[-1]]
            if music.audio is None:
                raise InvalidJob(f"audio: {job.audio.uri} has no audio stream")
        attrs["inputs"] = len(probed)
    # No rendition may show a frozen last frame: the slack is one frame of the fastest.
    fastest = max(o.fps for o in job.renditions)
    lengths = [
        clip_length(clip, info, i, fastest)
        for i, (clip, info) in enumerate(zip(job.clips, infos, strict=True))
    ]
    transitions = [(c.transition.type, c.transition.duration) for c in job.clips]
    for i in range(1, len(job.clips)):
        kind, d = transitions[i]
        need = d if kind.overlaps else d / 2
        if kind is not TransitionType.CUT and (need > lengths[i] or need > lengths[i - 1]):
            raise InvalidJob(
                f"clips[{i}].transition: a {d:g} s {kind.value} needs {need:g} s of both clips "
                f"(they last {lengths[i - 1]:.3g} s and {lengths[i]:.3g} s)"
            )
    placements = place_clips(lengths, transitions)
    duration = total_duration(placements)
    if duration > limits.max_output_seconds:
        raise LimitExceeded(
            f"the video would last {duration:.1f} s; the limit is {limits.max_output_seconds:g} s"
        )
    input_bytes = sum(info.size_bytes for info in probed.values())
    views = [job] if job.outputs is None else [job.for_output(o) for o in job.renditions]
    return [
        _drawn(
            view,
            inputs,
            limits,
            clock,
            infos,
            placements,
            duration,
            music,
            input_bytes,
            font_files,
            cues,
            caption_font,
        )
        for view in views
    ]


def _probe_each_once(
    inputs: Inputs, wanted: Sequence[tuple[str, str]], paths: Sequence[Path], limits: Limits
) -> tuple[dict[Path, MediaInfo], float]:
    """Each distinct file of ``wanted`` (uri, label; at ``paths``) probed once, several at a
    time (FFmpeg opens files without Python's lock), and the CPU seconds the probing threads
    spent; a failure is the first in job order."""
    firsts: dict[Path, tuple[str, str]] = {}
    for path, (uri, label) in zip(paths, wanted, strict=True):
        firsts.setdefault(path, (uri, label))
    if len(firsts) <= 1:
        return {
            path: inputs.probe(uri, label, limits) for path, (uri, label) in firsts.items()
        }, 0.0
    spent: list[float] = []

    def probe(uri: str, label: str) -> MediaInfo:
        started = time.thread_time()
        try:
            return inputs.probe(uri, label, limits)
        finally:
            spent.append(time.thread_time() - started)

    workers = max(1, min(len(firsts), max(2, usable_cpus()), 8))
    with ThreadPoolExecutor(workers, thread_name_prefix="probe") as pool:
        futures = {path: pool.submit(probe, uri, label) for path, (uri, label) in firsts.items()}
        pool.shutdown(wait=True)  # every thread's CPU counted, even when one fails
        return {path: future.result() for path, future in futures.items()}, sum(spent)


def _drawn(
    job: Job,
    inputs: Inputs,
    limits: Limits,
    clock: StageClock,
    infos: list[MediaInfo],
    placements: list[Placement],
    duration: float,
    music: MediaInfo | None,
    input_bytes: int,
    font_files: Mapping[int, Path],
    cues: list[Cue] | None,
    caption_font: Path | None,
) -> Composition:
    """The composition of a one-output ``job``: its overlays, texts and captions drawn
    for its size."""
    output = job.renditions[0]
    frames = frame_count(duration, output.fps)
    duration_out = frames / output.fps
    texts: list[SpriteLayer] = []
    with clock.stage("render_text") as attrs:  # every sprite: overlays, then texts
        overlays = inputs.overlay_layers(job, limits, duration_out)
        attrs["overlays"] = len(overlays)
        for i, spec in enumerate(job.texts):
            if spec.start >= duration_out:
                raise InvalidJob(
                    f"texts[{i}]: starts at {spec.start:g} s, after the video ends "
                    f"({duration_out:.3f} s)"
                )
            yuv = inputs.text_sprite(spec, i, output.width, output.height, font_files.get(i))
            end = min(spec.end, duration_out) if spec.end is not None else duration_out
            texts.append(
                SpriteLayer(
                    f"texts[{i}]",
                    yuv,
                    spec.start,
                    end,
                    spec.animation,
                    spec.opacity,
                    output.height,
                )
            )
        attrs["texts"] = len(texts)
        captions = _caption_layer(job, cues, caption_font, duration_out)
        if captions is not None:
            attrs["caption_pages"] = len(captions.pages)
    return Composition(
        job,
        infos,
        placements,
        texts,
        duration_out,
        frames,
        music,
        limits,
        input_bytes,
        overlays=overlays,
        captions=captions,
    )


def _caption_layer(
    job: Job, cues: list[Cue] | None, font_file: Path | None, duration: float
) -> CaptionLayer | None:
    """The job's captions laid out for its output (``cues``: given, or read from the file;
    ``font_file``: its checked ``font_uri`` file)."""
    spec = job.captions
    if spec is None or cues is None:
        return None
    labels = None
    if spec.uri is not None:
        labels = [f"captions.uri (the cue at {cue.start:.3f} s)" for cue in cues]
    width, height = job.renditions[0].width, job.renditions[0].height  # one rendition's
    return caption_layer(spec, cues, width, height, duration, font_file, labels)


def soundtrack_of(comp: Composition) -> soundtrack.Mixer:
    """The soundtrack's sources: each clip's own sound (volume above 0, ramped through its
    transitions) and the music (looped or trimmed to the video, with its fades)."""
    job = comp.job
    total = round(comp.duration * soundtrack.RATE)
    sources = []
    for placement, clip, info in zip(comp.placements, job.clips, comp.clips, strict=True):
        if clip.volume <= 0 or info.audio is None:
            continue
        fade_in, fade_out = soundtrack.transition_ramps(placement)
        sources.append(
            soundtrack.Source(
                info.path,
                clip.uri,
                start=clip.trim_start,
                # On the picture's clock: sound that starts after the first frame stays late.
                origin=info.video.start if info.video is not None else None,
                at=round(placement.start * soundtrack.RATE),
                length=round(placement.length * soundtrack.RATE),
                gain=clip.volume,
                fade_in=fade_in,
                fade_out=fade_out,
            )
        )
    if job.audio is not None and job.audio.uri is not None and comp.music is not None:
        duck = job.audio.duck
        envelope = None
        if duck is not None:  # while a clip's own sound plays
            speaking = [(s.at, s.at + s.length) for s in sources if s.gain > 0]
            envelope = Ducking(
                speaking,
                duck.db,
                round(duck.attack * soundtrack.RATE),
                round(duck.release * soundtrack.RATE),
            )
        sources.append(
            soundtrack.Source(
                comp.music.path,
                job.audio.uri,
                start=0.0,
                at=0,
                length=total,
                gain=job.audio.volume,
                fade_in=round(job.audio.fade_in * soundtrack.RATE),
                fade_out=round(job.audio.fade_out * soundtrack.RATE),
                loop=job.audio.loop,
                envelope=envelope,
            )
        )
    loudness = job.audio.loudness if job.audio is not None else None
    return soundtrack.Mixer(total, sources, comp.limits, loudness=loudness)


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def release_memory() -> None:
    """Hand freed heap pages back to the system (glibc ``malloc_trim``) once a clip's decoder
    and buffers are gone, so memory stays flat however many clips a video has."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def process_cpu() -> float:
    """User and system CPU seconds of this process so far, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _temp_beside(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.part{suffix}")


def poster_path(output: Path) -> Path:
    return output.with_suffix(".jpg")


def to_rgb_image(frame: av.VideoFrame) -> Image.Image:
    """A composited frame as RGB, decoded with the BT.709 matrix it is tagged with."""
    rgb = frame.reformat(format="rgb24", src_colorspace="ITU709", dst_colorspace="ITU709")
    return rgb.to_image()


def render_job(
    job: Job,
    *,
    base_dir: Path,
    output: Path | None = None,
    outputs: Sequence[Path] | None = None,
    fetched: Mapping[str, Path] | None = None,
    limits: Limits | None = None,
    clock: StageClock | None = None,
    progress: Progress | None = None,
    encoder: EncoderChoice | None = None,
    decoder: str = "auto",
) -> RenderResult:
    """Render ``job`` to ``output`` (MP4) and, when asked, a JPEG poster beside it; a job
    with several outputs to ``outputs`` (one path per rendition, in order), its result the
    first rendition's with every one in ``renditions``.

    ``encoder`` defaults to the probed choice; ``decoder`` is auto, nvdec or cpu."""
    paths = list(outputs) if outputs is not None else [output] if output is not None else []
    if len(paths) != len(job.renditions):
        raise ValueError(f"{len(paths)} output paths for {len(job.renditions)} renditions")
    clock = clock or StageClock()
    cpu_at_start = process_cpu()
    inputs = Inputs(base_dir, fetched)
    comps = prepare_renditions(job, inputs, limits, clock)
    for comp in comps:
        comp.decoder = decoder
    enc = encoder or choose_encoder()
    targets = []
    for comp, path in zip(comps, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        poster = _temp_beside(path, ".jpg") if comp.output.poster else None
        targets.append(_Target(comp, path, _temp_beside(path, ".mp4"), poster))
    # Renditions of one frame rate share every decoded frame; each rate decodes on its own.
    groups: dict[int, list[_Target]] = {}
    for target in targets:
        groups.setdefault(target.comp.fps, []).append(target)
    total = sum(t.comp.frames for t in targets)
    done = 0
    try:
        for group in groups.values():
            step = _offset(progress, done, total, len(group)) if len(groups) > 1 else progress
            _encode(group, enc, clock, step)
            done += group[0].comp.frames * len(group)
        for target in targets:
            if target.tmp_poster is not None:
                os.replace(target.tmp_poster, poster_path(target.path))
            os.replace(target.tmp, target.path)
    except GpuWorkerError:
        raise
    except av.error.FFmpegError as exc:
        raise InternalError(f"encoding failed: {exc}") from exc
    finally:
        for target in targets:
            for leftover in (target.tmp, target.tmp_poster):
                if leftover is not None and leftover.exists():
                    leftover.unlink()
    results = [
        RenderResult(
            output=t.path,
            poster=poster_path(t.path) if t.comp.output.poster else None,
            duration=t.comp.duration,
            width=t.comp.width,
            height=t.comp.height,
            fps=t.comp.fps,
            frames=t.comp.frames,
            encoder=enc.name,
            size_bytes=t.path.stat().st_size,
            input_bytes=t.comp.input_bytes,
            timings=dict(clock.totals),
            cpu=dict(clock.cpu_totals),
            process_cpu=process_cpu() - cpu_at_start,
        )
        for t in targets
    ]
    if job.outputs is None:
        return results[0]
    return dataclasses.replace(results[0], renditions=tuple(results))


def _offset(progress: Progress | None, done: int, total: int, width: int) -> Progress | None:
    """Progress of one frame-rate group as part of the whole job's frames."""
    if progress is None:
        return None
    return lambda n, _: progress(done + n * width, total)


@dataclass
class _Target:
    """One video being written: its composition, final path and temporary files."""

    comp: Composition
    path: Path
    tmp: Path
    tmp_poster: Path | None


class _Writer:
    """Composes and encodes one rendition's frames into its MP4, interleaved with audio."""

    def __init__(
        self,
        target: _Target,
        enc: EncoderChoice,
        out: av.container.OutputContainer,
        share: int = 1,
        with_audio: bool = True,
    ) -> None:
        """``share``: how many renditions encode at once, each in its own thread; a CPU
        encoder then takes its share of the cores instead of threads for all of them.
        ``with_audio``: False for a segment of a split render (the joiner adds the sound)."""
        comp = self.comp = target.comp
        self.enc = enc
        self.out = out
        self.tmp_poster = target.tmp_poster
        fps = comp.fps
        self.vstream = add_video_stream(out, enc.name, comp.width, comp.height, fps)
        self.vstream.time_base = Fraction(1, fps)
        ctx = self.vstream.codec_context
        ctx.options = encoder_options(enc.name, comp.output.quality, fps)
        if share > 1 and not enc.hardware:
            threads = max(1, round(usable_cpus() * 1.5 / share))
            ctx.options = {**ctx.options, "threads": str(threads)}
        ctx.color_primaries = 1  # BT.709
        ctx.color_trc = 1
        ctx.colorspace = 1
        ctx.color_range = 1  # limited ("tv")
        self.astream = add_audio_stream(out, "aac", soundtrack.RATE) if with_audio else None
        if self.astream is not None:
            self.astream.bit_rate = AUDIO_BITRATE
        self.poster_n = comp.poster_frame() if target.tmp_poster is not None else -1
        self.composite = {p.index: Stopwatch() for p in comp.placements}
        self.encode = {p.index: Stopwatch() for p in comp.placements}
        self.sound: SoundEncoder | None = None  # set once every writer's header is written
        self.sound_index = 0

    def step(self, n: int, fitted: Sequence[tuple[Layer, av.VideoFrame]]) -> None:
        """Frame ``n`` from its layers' fitted frames, then the sound ready up to its end."""
        top = max(layer.index for layer, _ in fitted)
        frame = self.comp.compose(n, fitted, self.composite[top], owned=True)
        if n == self.poster_n and self.tmp_poster is not None:
            to_rgb_image(frame).save(self.tmp_poster, format="JPEG", quality=90)
        with self.encode[top]:
            for packet in _encode_video(self.enc, self.vstream, frame):
                self.out.mux(packet)
        if self.sound is not None:
            for packet in self.sound.ready(self.sound_index, (n + 1) / self.comp.fps):
                self.out.mux(packet)

    def finish(self, last: int) -> None:
        """Flush the video encoder (timed against clip ``last``), then the rest of the sound."""
        with self.encode[last]:
            for packet in _encode_video(self.enc, self.vstream, None):
                self.out.mux(packet)
        if self.sound is not None:
            for packet in self.sound.rest(self.sound_index):
                self.out.mux(packet)


class _ThreadedWriter:
    """A :class:`_Writer` in its own thread (one encoder session per rendition), fed through
    a short queue; its failure is raised in the feeding thread."""

    def __init__(self, writer: _Writer, label: str) -> None:
        self.writer = writer
        self._queue: queue.Queue[tuple[str, tuple[object, ...]] | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"encode-{label}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                name, args = item
                getattr(self.writer, name)(*args)
        except BaseException as exc:  # handed to the feeding thread
            self._error = exc
            while self._queue.get() is not None:  # drain until the feeder stops
                pass

    def _put(self, item: tuple[str, tuple[object, ...]] | None) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def step(self, *args: object) -> None:
        self._put(("step", args))

    def finish(self, *args: object) -> None:
        """Ask for the finish; :meth:`join` waits for it (every rendition finishes at once:
        each waits for the rest of the sound, which is encoded for all of them together)."""
        self._put(("finish", args))

    def join(self) -> None:
        """Wait for the thread to end (stopping it if it still runs); raise its failure."""
        if self._thread.is_alive():
            self._queue.put(None)  # it reads on until this, failed or not
            self._thread.join()
        if self._error is not None:
            raise self._error


def _encode(
    targets: Sequence[_Target],
    enc: EncoderChoice,
    clock: StageClock,
    progress: Progress | None,
    span: range | None = None,
    with_audio: bool = True,
) -> None:
    """Write frames ``span`` (default: all) of ``targets`` (renditions of one frame rate)
    from one decode of every clip; a segment of a split render passes its frame range and
    no audio (the joiner adds the soundtrack once)."""
    comp = targets[0].comp
    span = span if span is not None else range(comp.frames)
    with contextlib.ExitStack() as stack:
        writers = [
            _Writer(
                t,
                enc,
                stack.enter_context(
                    av.open(str(t.tmp), "w", format="mp4", options={"movflags": "+faststart"})
                ),
                share=len(targets),
                with_audio=with_audio,
            )
            for t in targets
        ]
        plan = [layers_at(comp.placements, comp.time_of(n)) for n in span]
        wanted: dict[int, list[float]] = {p.index: [] for p in comp.placements}
        for layers in plan:
            for layer in layers:
                wanted[layer.index].append(layer.local_time)
        # A range starting mid-video opens each clip where the range first needs it.
        starts = {i: times[0] if span.start and times else 0.0 for i, times in wanted.items()}
        others = [t.comp for t in targets[1:]]

        def open_prefetcher(index: int) -> Prefetcher:
            return Prefetcher(comp.open_reader(index, starts[index], also=others), wanted[index])

        readers: dict[int, Prefetcher] = {}
        sound: SoundEncoder | None = None
        feeds: list[_Writer | _ThreadedWriter] = []
        try:
            if with_audio:
                sound = _start_sound(comp, writers)
            feeds = list(writers)
            if len(writers) > 1:
                feeds = [_ThreadedWriter(w, f"{w.comp.width}x{w.comp.height}") for w in writers]
            for n, layers in zip(span, plan, strict=True):
                active = {layer.index for layer in layers}
                for index in sorted(i for i in readers if i < min(active)):  # finished
                    _close(readers.pop(index), index, clock, writers)
                for index in sorted(active - readers.keys()):
                    readers[index] = open_prefetcher(index)
                # Open the next clip a little ahead so its first frames are decoded in time.
                ahead = min(n - span.start + 2, len(plan) - 1)
                upcoming = {la.index for la in plan[ahead]} - active
                for index in sorted(upcoming - readers.keys()):
                    readers[index] = open_prefetcher(index)
                fitted = [(layer, readers[layer.index].next_all()) for layer in layers]
                for i, feed in enumerate(feeds):
                    feed.step(n, [(layer, frames[i]) for layer, frames in fitted])
                if progress is not None:
                    progress(n + 1 - span.start, len(span))
            last = max(readers) if readers else comp.placements[-1].index
            for feed in feeds:
                feed.finish(last)
            for feed in feeds:
                if isinstance(feed, _ThreadedWriter):
                    feed.join()
        finally:
            if sound is not None:  # first: a writer still waiting for the sound's end is let go
                sound.close()
            for feed in feeds:
                if isinstance(feed, _ThreadedWriter):
                    with contextlib.suppress(BaseException):
                        feed.join()
            for index in list(readers):
                _close(readers.pop(index), index, clock, writers)
        if sound is not None:
            clock.record("mux_audio", sound.watch.seconds, cpu=sound.watch.cpu)


def _start_sound(comp: Composition, writers: Sequence[_Writer]) -> SoundEncoder:
    """The soundtrack's thread, encoding into every writer's audio stream; the headers are
    written first, so the encoders it uses are open before it starts."""
    streams = []
    for writer in writers:
        assert writer.astream is not None
        writer.out.start_encoding()
        streams.append(writer.astream)
    sound = SoundEncoder(soundtrack_of(comp).frames(), streams)
    for i, writer in enumerate(writers):
        writer.sound, writer.sound_index = sound, i
    return sound


def _encode_video(
    enc: EncoderChoice, stream: av.VideoStream, frame: av.VideoFrame | None
) -> list[av.Packet]:
    """``enc``'s packets for ``frame``; a GPU encoder's failure is a :class:`HardwareFault`."""
    try:
        return enc.encode(stream, frame)
    except av.error.FFmpegError as exc:
        if enc.hardware:
            raise HardwareFault(f"{enc.name} failed while encoding ({exc})") from exc
        raise


def _close(prefetcher: Prefetcher, index: int, clock: StageClock, writers: list[_Writer]) -> None:
    prefetcher.close()
    gc.collect()  # PyAV filter graphs and codec contexts sit in reference cycles
    release_memory()
    reader = prefetcher.reader
    decode, scale = reader.times.decode, reader.times.scale
    composite = [w.composite[index] for w in writers]
    encode = [w.encode[index] for w in writers]
    clock.record("decode", decode.seconds + scale.seconds, cpu=decode.cpu + scale.cpu, clip=index)
    clock.record(
        "composite",
        sum(c.seconds for c in composite),
        cpu=sum(c.cpu for c in composite),
        clip=index,
    )
    clock.record(
        "encode", sum(e.seconds for e in encode), cpu=sum(e.cpu for e in encode), clip=index
    )


def preview_frame(
    job: Job,
    at: float,
    *,
    base_dir: Path,
    fetched: Mapping[str, Path] | None = None,
    limits: Limits | None = None,
    decoder: str = "auto",
) -> Image.Image:
    """The frame the rendered video would show at ``at`` seconds, as an RGB image."""
    inputs = Inputs(base_dir, fetched)
    comp = prepare(job, inputs, limits)
    comp.decoder = decoder
    n = frame_index(comp, at)
    readers: list[FrameSource] = []

    def fitted(layer: Layer) -> av.VideoFrame:
        readers.append(comp.open_reader(layer.index, layer.local_time))
        return readers[-1].frame_at(layer.local_time)

    try:
        frame = frame_of(comp, n, fitted)
    finally:
        for reader in readers:
            reader.close()
    return to_rgb_image(frame)


def frame_index(comp: Composition, at: float) -> int:
    """The output frame shown at ``at`` seconds (``invalid_job`` outside the video)."""
    if at < 0 or at > comp.duration:
        raise InvalidJob(f"--at {at:g} s is outside the video (0 to {comp.duration:.3f} s)")
    return min(comp.frames - 1, math.floor(at * comp.fps + 1e-6))


def frame_of(comp: Composition, n: int, fitted: Callable[[Layer], av.VideoFrame]) -> av.VideoFrame:
    """Output frame ``n`` alone, its clips' fitted frames asked of ``fitted`` layer by layer
    (bottom first): what ``preview`` shows, and what a caller keeping decoders open reuses."""
    layers = layers_at(comp.placements, comp.time_of(n))
    return comp.compose(n, [(layer, fitted(layer)) for layer in layers])
