"""Small valid inputs of every kind the job contract accepts, made here with PyAV, Pillow and
fontTools (nothing is downloaded): the seeds the fuzzer mutates.

Each seed is one entry of ``SEEDS``: its file name, its kind (which decides the job it goes
in) and the function that writes it. To add a seed, write a maker and add a line there.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from fontTools import subset
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.t2CharStringPen import T2CharStringPen
from fontTools.ttLib import TTFont
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
FONT_TEXT = "Fuzz 09"  # what the font seeds can draw, and what their jobs write
SIDE = 48
FPS = 10
FRAMES = 6


@dataclass(frozen=True)
class Seed:
    name: str  # file name, its suffix telling the format
    kind: str  # video, still, audio, overlay, font or caption
    make: Callable[[Path], None]


def _picture(i: int) -> np.ndarray:
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    rgb = np.stack([(x * 5 + i * 20) % 256, (y * 5) % 256, ((x + y) * 3) % 256], axis=-1)
    return rgb.astype(np.uint8)


def _video(
    codec: str, audio: str | None, pix_fmt: str = "yuv420p", fmt: str | None = None
) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with av.open(str(path), "w", format=fmt) as out:
            stream = out.add_stream(codec, rate=FPS)
            stream.width = stream.height = SIDE
            stream.pix_fmt = pix_fmt
            if codec == "libx264":
                stream.codec_context.options = {"preset": "ultrafast"}
            astream = out.add_stream(audio, rate=48_000) if audio else None
            for i in range(FRAMES):
                frame = av.VideoFrame.from_ndarray(_picture(i), format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, FPS)
                for packet in stream.encode(frame.reformat(format=pix_fmt)):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
            if astream is not None:
                _tone(out, astream, FRAMES / FPS)

    return make


def _tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    ctx = stream.codec_context
    rate = ctx.sample_rate
    size = ctx.frame_size or 1024
    total = round(seconds * rate)
    fmt = ctx.format.name if ctx.format is not None else "fltp"
    for start in range(0, total, size):
        t = np.arange(start, start + size) / rate
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
        frame.sample_rate = rate
        frame.pts = start
        if fmt != "fltp":
            frame = av.AudioResampler(format=fmt, layout="stereo", rate=rate).resample(frame)[0]
            frame.pts = start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def _audio(codec: str, rate: int = 48_000, fmt: str | None = None) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with av.open(str(path), "w", format=fmt) as out:
            stream = out.add_stream(codec, rate=rate)
            stream.layout = "stereo"
            _tone(out, stream, 0.5)

    return make


def _still(fmt: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        Image.fromarray(_picture(0)).save(path, format=fmt, quality=80)

    return make


def _overlay(fmt: str) -> Callable[[Path], None]:
    """A picture with a transparent hole (no alpha in JPEG), as a logo would be."""

    def make(path: Path) -> None:
        rgba = np.dstack([_picture(1), np.full((SIDE, SIDE), 255, np.uint8)])
        rgba[12:36, 12:36, 3] = 0
        image = Image.fromarray(rgba, "RGBA")
        (image.convert("RGB") if fmt == "JPEG" else image).save(path, format=fmt, quality=80)

    return make


def _svg(path: Path) -> None:
    """An SVG with a gradient, a path, a text in a bundled family and an embedded PNG."""
    png = io.BytesIO()
    Image.fromarray(_picture(2)[:8, :8]).save(png, format="PNG")
    embedded = base64.b64encode(png.getvalue()).decode()
    path.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
        ' width="48" height="32" viewBox="0 0 48 32">'
        '<defs><linearGradient id="g"><stop offset="0" stop-color="#f80"/>'
        '<stop offset="1" stop-color="#08f" stop-opacity="0.5"/></linearGradient></defs>'
        '<rect x="1" y="1" width="46" height="30" rx="6" fill="url(#g)"/>'
        '<path d="M4 28 L24 4 L44 28 Z" fill="none" stroke="#fff" stroke-width="2"/>'
        '<text x="6" y="20" font-family="Roboto" font-size="10">Fuzz</text>'
        f'<image x="36" y="2" width="8" height="8" xlink:href="data:image/png;base64,{embedded}"/>'
        "</svg>",
        encoding="utf-8",
    )


def _truetype(source: str) -> Callable[[Path], None]:
    """A bundled face cut down to the seed text, its hinting programs kept."""

    def make(path: Path) -> None:
        font = TTFont(REPO / "fonts" / source)
        options = subset.Options()
        options.hinting = True
        options.layout_features = ["*"]
        options.name_IDs = ["*"]
        subsetter = subset.Subsetter(options)
        subsetter.populate(text=FONT_TEXT)
        subsetter.subset(font)
        buffer = io.BytesIO()
        font.save(buffer)
        path.write_bytes(buffer.getvalue())

    return make


def _opentype_cff(path: Path) -> None:
    """An OpenType font with CFF outlines: a box for each character of the seed text."""
    chars = sorted(set(FONT_TEXT) - {" "})
    names = [".notdef", "space"] + [f"g{ord(c):04X}" for c in chars]
    builder = FontBuilder(1000, isTTF=False)
    builder.setupGlyphOrder(names)
    builder.setupCharacterMap({32: "space", **{ord(c): f"g{ord(c):04X}" for c in chars}})
    strings = {}
    for i, name in enumerate(names):
        pen = T2CharStringPen(600, None)
        if name != "space":
            pen.moveTo((50, 0))
            pen.lineTo((550, 0))
            pen.lineTo((550, 500 + 20 * i))
            pen.lineTo((50, 500 + 20 * i))
            pen.closePath()
        strings[name] = pen.getCharString()
    builder.setupCFF("FuzzCFF-Regular", {"FullName": "Fuzz CFF"}, strings, {})
    builder.setupHorizontalMetrics({name: (600, 50) for name in names})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": "Fuzz CFF", "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=800, usWinAscent=800, usWinDescent=200)
    builder.setupPost()
    builder.save(str(path))


_CUES = (
    ("00:00:00.000", "00:00:00.200", "Bienvenue à l'Hôtel"),
    ("00:00:00.200", "00:00:00.450", "Vue sur la mer"),
)


def _srt(path: Path) -> None:
    """Two SRT cues inside the half-second render."""
    blocks = [
        f"{i}\n{start.replace('.', ',')} --> {end.replace('.', ',')}\n{text}\n"
        for i, (start, end, text) in enumerate(_CUES, 1)
    ]
    path.write_text("\n".join(blocks), encoding="utf-8")


def _vtt(path: Path) -> None:
    """The same cues as WebVTT, one with word timings inside the cue."""
    lines = ["WEBVTT", ""]
    for start, end, text in _CUES:
        lines += [f"{start} --> {end}", text, ""]
    lines[-2] = "Vue <00:00:00.300>sur <00:00:00.350>la mer"
    path.write_text("\n".join(lines), encoding="utf-8")


SEEDS: tuple[Seed, ...] = (
    Seed("h264-aac.mp4", "video", _video("libx264", "aac")),
    Seed("mpeg4.mov", "video", _video("mpeg4", "aac")),
    Seed("h264-opus.mkv", "video", _video("libx264", "libopus")),
    Seed("vp9-opus.webm", "video", _video("libvpx-vp9", "libopus")),
    Seed("mpeg4-mp3.avi", "video", _video("mpeg4", "libmp3lame")),
    Seed("h264-aac.ts", "video", _video("libx264", "aac", fmt="mpegts")),
    Seed("still.jpg", "still", _still("JPEG")),
    Seed("still.png", "still", _still("PNG")),
    Seed("still.webp", "still", _still("WEBP")),
    Seed("music.m4a", "audio", _audio("aac")),
    Seed("music.mp3", "audio", _audio("libmp3lame")),
    Seed("music.wav", "audio", _audio("pcm_s16le", rate=8_000)),
    Seed("music.ogg", "audio", _audio("libopus")),
    Seed("music.flac", "audio", _audio("flac")),
    Seed("music.aac", "audio", _audio("aac", fmt="adts")),
    Seed("logo.png", "overlay", _overlay("PNG")),
    Seed("logo.webp", "overlay", _overlay("WEBP")),
    Seed("logo.jpg", "overlay", _overlay("JPEG")),
    Seed("logo.svg", "overlay", _svg),
    Seed("roboto.ttf", "font", _truetype("Roboto/Roboto_400Regular.ttf")),
    Seed("playfair.ttf", "font", _truetype("PlayfairDisplay/PlayfairDisplay_400Regular.ttf")),
    Seed("boxes.otf", "font", _opentype_cff),
    Seed("subs.srt", "caption", _srt),
    Seed("subs.vtt", "caption", _vtt),
)


def make_seeds(folder: Path) -> dict[str, Path]:
    """Write every seed into ``folder``; their paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for seed in SEEDS:
        path = folder / seed.name
        seed.make(path)
        paths[seed.name] = path
    return paths
