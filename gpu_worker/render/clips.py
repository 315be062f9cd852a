"""Reading a clip: decode, turn upright, fit to the output size in one filter pass, and pick
the frame to show at each output time by timestamp (variable frame rates, 60 fps sources and
stills all land on the right frame).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import av
import av.filter
import av.video.codeccontext

from gpu_worker.errors import HardwareFault, InvalidJob
from gpu_worker.job import Clip, Fit
from gpu_worker.limits import Limits
from gpu_worker.render.colour import ColourPlan, lut_filters, plan_for
from gpu_worker.render.composite import copy_frame
from gpu_worker.render.decoder import choose_decoder, cuvid_options
from gpu_worker.render.geometry import contain_size, cover_crop, rotation_filters
from gpu_worker.render.handoff import put_unless_stopped
from gpu_worker.render.host import usable_cpus
from gpu_worker.render.interlace import Deinterlacer, field_rate_wanted
from gpu_worker.render.media import MediaInfo, av_error, open_input
from gpu_worker.render.stages import Stopwatch

log = logging.getLogger(__name__)

_EPS = 1e-4  # seconds: frames this close to a target time count as on it
_COLOR = "out_color_matrix=bt709:out_range=tv"
_UNSPECIFIED = 2  # AVCOL_SPC_UNSPECIFIED


def color_args(frame: av.VideoFrame) -> str:
    """libswscale colour options from BT.709 or the source's matrix to BT.709 limited range.

    An untagged source is read as players read it: BT.709 when HD (720 lines or more),
    BT.601 below. A BT.709 source of the output's size then passes through unconverted."""
    args = _COLOR
    if frame.format.name.startswith(("yuv", "nv", "p0")) and not frame.format.name.startswith(
        "yuvj"
    ):
        if int(frame.colorspace) == _UNSPECIFIED:
            hd = min(frame.width, frame.height) >= 720
            args = f"in_color_matrix={'bt709' if hd else 'bt601'}:{args}"
        if int(frame.color_range) == 0:  # unspecified: video is limited range
            args = f"in_range=tv:{args}"
    return args


def plan_args(plan: ColourPlan) -> str:
    """libswscale options reading a source by its colour plan, writing BT.709 limited."""
    return ":".join(a for a in (plan.input_args(), _COLOR) if a)


def clip_length(clip: Clip, info: MediaInfo, index: int, fps: float | None = None) -> float:
    """Seconds of the clip on the timeline: its ``duration``, or the rest of the source.

    A ``duration`` running more than one output frame (``1/fps``) past the source's end is
    refused rather than shown as a frozen last frame."""
    label = f"clips[{index}]"
    if info.video is None:
        raise InvalidJob(f"{label}: {info.label} has no video stream")
    if info.video.still:
        if clip.duration is None:
            raise InvalidJob(f"{label}: {info.label} is a still image: give it a duration")
        return clip.duration
    if info.duration is None:
        if clip.duration is None:
            raise InvalidJob(f"{label}: the length of {info.label} is unknown: give a duration")
        return clip.duration
    rest = info.duration - clip.trim_start
    if rest <= 1e-3:
        raise InvalidJob(
            f"{label}: trim_start {clip.trim_start:g} s is past the end of {info.label} "
            f"({info.duration:.3f} s)"
        )
    if clip.duration is None:
        return rest
    slack = 1.0 / fps if fps else 0.0
    if clip.duration > rest + slack + 1e-6:
        raise InvalidJob(
            f"{label}: runs to {clip.trim_start + clip.duration:.3f} s of {info.label}, "
            f"which lasts {info.duration:.3f} s (trim_start {clip.trim_start:g} s + duration "
            f"{clip.duration:g} s)"
        )
    return clip.duration


def _link(graph: av.filter.Graph, start: Any, chain: list[tuple[str, str]], output: int = 0) -> Any:
    """Add ``chain`` after ``start`` (from its ``output`` pad); the last filter added."""
    last = start
    for i, (name, args) in enumerate(chain):
        node = graph.add(name, args) if args else graph.add(name)
        last.link_to(node, output if i == 0 else 0, 0)
        last = node
    return last


def _scaled(
    size: str, read: str, plan: ColourPlan | None, flags: str = "bicubic"
) -> list[tuple[str, str]]:
    """A scale to ``size`` that also converts to BT.709: directly for SDR BT.709 sources,
    through the LUT (in RGB, at the smaller of the two sizes' cost) otherwise."""
    tone = lut_filters(plan) if plan is not None else []
    if not tone:
        return [("scale", f"{size}:flags={flags}:{read}")]
    assert plan is not None
    into_rgb = ":".join(a for a in (f"{size}:flags={flags}", plan.input_args()) if a)
    # Back to YCbCr at the same size: only chroma is resampled, bilinear is plenty.
    return [("scale", into_rgb), *tone, ("scale", f"flags=bilinear:{_COLOR}")]


def filter_chain(
    rotation: int,
    fit: Fit,
    width: int,
    height: int,
    src_w: int,
    src_h: int,
    color: str = _COLOR,
    *,
    plan: ColourPlan | None = None,
    sar: Fraction = Fraction(1),
) -> list[tuple[str, str]]:
    """The filters (name, args) that turn a decoded picture (upright size ``src_w`` x
    ``src_h``) into an upright output frame, in one libavfilter pass; ``color`` holds the
    scaler's colour options (see :func:`color_args`), or ``plan`` says how to read the
    source (with a tone-mapping LUT for HDR and BT.2020). ``sar`` is the stored picture's
    sample aspect ratio: pictures are fitted by the shape they are shown with."""
    chain = rotation_filters(rotation)
    upright_sar = float(1 / sar if rotation in (90, 270) else sar)
    read = plan_args(plan) if plan is not None else color
    if fit is Fit.COVER:
        cw, ch, cx, cy = cover_crop(src_w, src_h, width, height, upright_sar)
        if (cw, ch) != (src_w, src_h):
            chain.append(("crop", f"{cw}:{ch}:{cx}:{cy}"))
        if plan is not None and plan.lut is not None and cw * ch <= width * height:
            # Map the (smaller) cropped source, then scale it up.
            chain += [*_scaled(f"w={cw}:h={ch}", read, plan, "bilinear")[:-1]]
            chain.append(("scale", f"w={width}:h={height}:flags=bicubic:{_COLOR}"))
        else:
            chain += _scaled(f"w={width}:h={height}", read, plan)
    else:  # CONTAIN; BLUR builds its own graph around this
        fw, fh = contain_size(src_w, src_h, width, height, upright_sar)
        chain += _scaled(f"w={fw}:h={fh}", read, plan)
        chain.append(("pad", f"{width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black"))
    chain += [("format", "yuv420p"), ("setsar", "1")]
    return chain


class _Fitter:
    """A libavfilter graph doing rotation, scaling, cropping/padding (and blur) in one pass."""

    def __init__(
        self,
        first: av.VideoFrame,
        time_base: Any,
        rotation: int,
        fit: Fit,
        width: int,
        height: int,
        plan: ColourPlan | None = None,
        sar: Fraction = Fraction(1),
    ) -> None:
        """Built from the first decoded frame, whose size and pixel format it takes."""
        graph = av.filter.Graph()
        src = graph.add_buffer(
            width=first.width, height=first.height, format=first.format, time_base=time_base
        )
        turned = rotation in (90, 270)
        src_w, src_h = (first.height, first.width) if turned else (first.width, first.height)
        color = plan_args(plan) if plan is not None else color_args(first)
        sink = graph.add("buffersink")
        if fit is Fit.BLUR:
            upright_sar = float(1 / sar if turned else sar)
            split = graph.add("split", "2")
            _link(graph, src, rotation_filters(rotation)).link_to(split)
            # Background: cover, then a cheap strong blur at 1/8 size, scaled back up.
            small_w, small_h = max(2, width // 8 // 2 * 2), max(2, height // 8 // 2 * 2)
            cw, ch, cx, cy = cover_crop(src_w, src_h, small_w, small_h, upright_sar)
            back = [
                ("crop", f"{cw}:{ch}:{cx}:{cy}"),
                *_scaled(f"w={small_w}:h={small_h}", color, plan, "bilinear"),
                ("format", "yuv420p"),
                ("gblur", "sigma=6:steps=2"),
                ("scale", f"w={width}:h={height}:flags=bilinear"),
                ("setsar", "1"),
            ]
            fw, fh = contain_size(src_w, src_h, width, height, upright_sar)
            front = [
                *_scaled(f"w={fw}:h={fh}", color, plan),
                ("format", "yuv420p"),
                ("setsar", "1"),
            ]
            ends = [
                _link(graph, split, chain, output) for output, chain in enumerate((back, front))
            ]
            overlay = graph.add("overlay", "x=(W-w)/2:y=(H-h)/2:format=yuv420")
            ends[0].link_to(overlay, 0, 0)
            ends[1].link_to(overlay, 0, 1)
            fmt = graph.add("format", "yuv420p")
            overlay.link_to(fmt)
            fmt.link_to(sink)
        else:
            chain = filter_chain(
                rotation, fit, width, height, src_w, src_h, color, plan=plan, sar=sar
            )
            _link(graph, src, chain).link_to(sink)
        graph.configure()
        self.graph = graph

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        self.graph.push(frame)
        out = self.graph.pull()
        assert isinstance(out, av.VideoFrame)
        return out


@dataclass
class ClipTimes:
    """Accumulated seconds of one clip's frame-by-frame work."""

    decode: Stopwatch
    scale: Stopwatch


def decode_threads() -> int:
    """Decoder threads per clip. Each clip already decodes in its own thread beside the
    encoder; on two cores a second decoder thread buys 1-2 % of speed for about 25 MB of
    extra frames (measured on the reference reel), so it is used only on larger machines."""
    return 1 if usable_cpus() <= 2 else 2


class ClipReader:
    """Frames of one clip, fitted to the output, at the local times asked for.

    ``also`` names more output sizes (renditions): each decoded frame is then fitted once per
    size, so a job writing several formats decodes its inputs once."""

    def __init__(
        self,
        clip: Clip,
        info: MediaInfo,
        width: int,
        height: int,
        limits: Limits,
        threads: int | None = None,
        start_at: float = 0.0,
        decoder: str = "auto",
        also: Sequence[tuple[int, int]] = (),
        fps: float | None = None,
    ) -> None:
        assert info.video is not None
        self.clip = clip
        self.info = info
        self.start_at = start_at
        self.label = info.label
        self.container = open_input(info.path, info.label, limits)
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.stream.codec_context.thread_count = threads or decode_threads()
        self.width, self.height = width, height
        self.sizes = [(width, height), *also]
        self.fitters: list[_Fitter] = []
        # One colour decision per source, from its tags and its own size: the CPU and the
        # NVDEC paths read it alike (NVDEC frames arrive already resized).
        video = info.video
        self.fields = field_rate_wanted(video.rate, fps)
        self.deinterlacer: Deinterlacer | None = None
        self.sar = video.sar
        try:
            self.colour = plan_for(video.colour, video.width, video.height, info.label)
            self.decoder = self._hardware_decoder(info, clip.fit, width, height, decoder)
        except BaseException:
            self.container.close()
            raise
        self.times = ClipTimes(Stopwatch(), Stopwatch())
        self._origin = self._stream_origin()
        self._decoded: Generator[av.VideoFrame, None, None] = self._decode()
        self._current: av.VideoFrame | None = None
        self._current_fitted: list[av.VideoFrame] | None = None
        self._next: av.VideoFrame | None = None
        self._exhausted = False

    def _hardware_decoder(
        self, info: MediaInfo, fit: Fit, width: int, height: int, setting: str
    ) -> av.video.codeccontext.VideoCodecContext | None:
        """An NVDEC decoder doing the crop and resize of a cover fit, when one opens."""
        assert info.video is not None
        if info.video.still:
            return None
        choice = choose_decoder(self.stream.codec_context.name, setting)
        if choice.name is None:
            return None
        options, _, _ = cuvid_options(
            fit,
            info.video.rotation,
            info.video.width,
            info.video.height,
            width,
            height,
            sar=info.video.sar,
            deinterlace=info.video.interlaced,
            fields=self.fields,
        )
        if len(self.sizes) > 1:  # several sizes: NVDEC decodes whole (still deinterlacing),
            # the filters fit each
            options = {k: v for k, v in options.items() if k not in ("crop", "resize")}
        try:
            ctx = av.CodecContext.create(choice.name, "r")
            assert isinstance(ctx, av.video.codeccontext.VideoCodecContext)
            ctx.extradata = self.stream.codec_context.extradata
            if self.stream.time_base is not None:
                ctx.time_base = self.stream.time_base
            ctx.options = options
            ctx.open()
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise HardwareFault(f"{self.label}: {choice.name} would not open ({exc})") from exc
        if "resize" in options:
            self.sar = Fraction(1)  # NVDEC's resize already gave the picture its shape
        return ctx

    def _stream_origin(self) -> float:
        start = self.stream.start_time
        if start is None or self.stream.time_base is None:
            return 0.0
        return float(start * self.stream.time_base)

    def _decode(self) -> Generator[av.VideoFrame, None, None]:
        seek = self.clip.trim_start + self.start_at
        target = seek + self._origin
        if seek > 0 and not (self.info.video and self.info.video.still):
            tb = self.stream.time_base
            assert tb is not None
            try:
                self.container.seek(int(target / tb), stream=self.stream, backward=True)
            except av.error.FFmpegError:
                self.container.seek(0)
        demux = self.container.demux(self.stream)
        # NVDEC deinterlaces itself (cuvid ``deint``); software frames go through bwdif.
        interlaced = self.info.video is not None and self.info.video.interlaced
        soft_deinterlace = interlaced and self.decoder is None
        while True:
            ended = False
            with self.times.decode:
                try:
                    try:
                        packet = next(demux)
                        frames: list[Any] = (
                            self.decoder.decode(packet)
                            if self.decoder is not None
                            else packet.decode()
                        )
                    except (StopIteration, av.error.EOFError):
                        ended, frames = True, []
                    if soft_deinterlace:
                        frames = self._deinterlaced(frames, flush=ended)
                except av.error.FFmpegError as exc:
                    if self.decoder is not None:  # NVDEC: the CPU path decides about the input
                        raise HardwareFault(
                            f"{self.label}: {self.decoder.name} failed while decoding ({exc})"
                        ) from exc
                    raise av_error(self.label, exc) from exc
            for frame in frames:
                assert isinstance(frame, av.VideoFrame)
                yield frame
            if ended:
                return

    def _deinterlaced(self, frames: Any, flush: bool) -> list[av.VideoFrame]:
        frames = list(frames)
        if self.deinterlacer is None:
            if not frames:
                return []
            order = self.info.video.field_order if self.info.video is not None else 0
            self.deinterlacer = Deinterlacer(frames[0], self.stream.time_base, self.fields, order)
        out = list(self.deinterlacer.push(frames))
        if flush:
            out += list(self.deinterlacer.flush())
            self.deinterlacer = None
        return out

    def _pull(self) -> av.VideoFrame | None:
        if self._exhausted:
            return None
        frame = next(self._decoded, None)
        if frame is None:
            self._exhausted = True
        return frame

    def _time(self, frame: av.VideoFrame) -> float:
        """A decoded frame's timestamp in seconds (by the stream's time base, which the
        NVDEC decoder's frames carry too; deinterlaced frames carry their own)."""
        time_base = self.stream.time_base
        if self.info.video is not None and self.info.video.interlaced and self.decoder is None:
            time_base = frame.time_base or time_base
        if frame.pts is None or time_base is None:
            return float(frame.time) if frame.time is not None else 0.0
        return float(frame.pts * time_base)

    def frame_at(self, local_time: float) -> av.VideoFrame:
        """The fitted frame (of the first size) at ``local_time``; see :meth:`frames_at`."""
        return self.frames_at(local_time)[0]

    def frames_at(self, local_time: float) -> list[av.VideoFrame]:
        """The frame a viewer sees ``local_time`` seconds into the clip, fitted to each size.

        Times must not decrease between calls. The shown frame is the last one whose
        timestamp is not after the target; before the first frame, the first frame; after
        the last one, the last one (held).
        """
        target = self.clip.trim_start + self._origin + local_time + _EPS
        if self._current is None:
            self._current = self._pull()
            if self._current is None:
                raise av_error(self.label, ValueError("no decodable video frame"))
            self._next = self._pull()
        while self._next is not None and self._time(self._next) <= target:
            self._current, self._current_fitted = self._next, None
            self._next = self._pull()
        assert self._current is not None
        if self._current_fitted is None:
            with self.times.scale:
                try:
                    if not self.fitters:
                        assert self.info.video is not None
                        self.fitters = [
                            _Fitter(
                                self._current,
                                self._current.time_base or self.stream.time_base,
                                self.info.video.rotation,
                                self.clip.fit,
                                width,
                                height,
                                self.colour,
                                self.sar,
                            )
                            for width, height in self.sizes
                        ]
                    self._current_fitted = [fit(self._current) for fit in self.fitters]
                except av.error.FFmpegError as exc:
                    raise av_error(self.label, exc) from exc
        return self._current_fitted

    def close(self) -> None:
        """Free the decoder, the filter graph and held frames (safe to call twice)."""
        self._decoded.close()
        self._current = self._next = self._current_fitted = None
        self.fitters = []
        self.decoder = None
        self.deinterlacer = None
        self.container.close()


_DONE = object()


class FrameSource(Protocol):
    """What a :class:`Prefetcher` reads: a :class:`ClipReader`, or one wrapped (motion)."""

    label: str
    times: ClipTimes

    def frame_at(self, local_time: float) -> av.VideoFrame: ...

    def frames_at(self, local_time: float) -> list[av.VideoFrame]: ...

    def close(self) -> None: ...


class Prefetcher:
    """Runs a ClipReader in a background thread, a few frames ahead of the encoder.

    PyAV releases the GIL while FFmpeg decodes and scales, so decoding the next frames
    overlaps with compositing and encoding the current one. ``times`` are the clip's local
    times in the order the render asks for them. Each frame handed on is shown once (a frame
    the reader gives for several times is copied for all but the last), so the consumer may
    draw into it.
    """

    def __init__(self, reader: FrameSource, times: Sequence[float], depth: int = 2) -> None:
        self.reader = reader
        # One frame waits in ``_run`` (is it shown again?): the queue holds the rest.
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, depth - 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(list(times),), name=f"decode-{reader.label}", daemon=True
        )
        self._thread.start()

    def _run(self, times: list[float]) -> None:
        try:
            held: list[av.VideoFrame] | None = None  # the last time's frames, not yet handed on
            for t in times:
                frames = self.reader.frames_at(t)
                # A frame shown again (a slower source, a still) goes out as a copy until its
                # last showing: every frame handed on is the consumer's to draw into.
                again = frames is held
                if held is not None and not self._put(
                    [copy_frame(f) for f in held] if again else held
                ):
                    return
                held = frames
            if held is not None and not self._put(held):
                return
            # Every frame is made: free the decoder now, before the next clip's opens, so
            # two decoders overlap only where a crossfade needs both.
            self.reader.close()
            self._queue.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            self._queue.put(exc)

    def _put(self, frames: list[av.VideoFrame]) -> bool:
        """Queue ``frames``; False when stopped first."""
        return put_unless_stopped(self._queue, frames, self._stop)

    def next(self) -> av.VideoFrame:
        """The fitted frame for the next time in ``times`` (of the first size)."""
        return self.next_all()[0]

    def next_all(self) -> list[av.VideoFrame]:
        """The fitted frames for the next time in ``times``, one per size."""
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        if item is _DONE:
            raise RuntimeError("more frames asked of a clip than were planned")
        assert isinstance(item, list)
        return item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self.reader.close()
