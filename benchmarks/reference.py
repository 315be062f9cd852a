"""The reference reel every benchmark renders: its generated inputs and its job.

Inputs (made once, cached in benchmarks/media/, git-ignored): a 1920x1080 30 fps clip, a
1080x1920 30 fps clip and a 1080x1920 60 fps clip, each 6 s with camera-like grain at about
16 Mbit/s, and a music track. The job: the three clips covering 1080x1920 at 30 fps, four
texts (a stroked title with fades, a wrapped two-line caption on a box, a shadowed call to
action, a small watermark the whole time), music with a fade-out; libx264 veryfast, crf 23.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # examples/samples.py, the procedural media, is a sibling
    sys.path.insert(0, str(HERE.parent))

from examples.samples import bt709, make_music, tag_bt709  # noqa: E402
from gpu_worker.render.encoder import add_video_stream  # noqa: E402

MEDIA = HERE / "media"
CLIP_SECONDS = 6.0
BITRATE = 16_000_000
CLIPS = [
    ("landscape-1920x1080-30.mp4", 1920, 1080, 30, 0.1),
    ("portrait-1080x1920-30.mp4", 1080, 1920, 30, 0.45),
    ("portrait-1080x1920-60.mp4", 1080, 1920, 60, 0.8),
]
MUSIC = "music.m4a"

TITLE = "Bienvenue à l'Hôtel des Îles"
CAPTION = "Piscine chauffée, vue sur la mer et petit-déjeuner inclus"
CTA = "Réservez dès aujourd’hui"
WATERMARK = "hoteldesiles.fr"


def _grainy_clip(path: Path, width: int, height: int, fps: int, hue: float, seconds: float) -> None:
    """A moving gradient with per-frame grain, encoded at about 16 Mbit/s."""
    rng = np.random.default_rng(int(hue * 100))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            127 + 90 * np.sin(x / width * 3.1 + hue * 6.3),
            127 + 90 * np.sin(y / height * 2.3 + hue * 10.7),
            127 + 90 * np.sin((x + y) / (width + height) * 4.0 + hue * 1.9),
        ],
        axis=-1,
    )
    grain = rng.normal(0, 10, (height + 64, width + 64, 3)).astype(np.float32)
    frames = round(seconds * fps)
    with av.open(str(path), "w") as out:
        stream = add_video_stream(out, "libx264", width, height, Fraction(fps))
        stream.bit_rate = BITRATE
        stream.codec_context.options = {"preset": "ultrafast", "tune": "grain"}
        tag_bt709(stream)
        for i in range(frames):
            dx, dy = (i * 7) % 64, (i * 13) % 64
            shift = int(i / fps * width / seconds)  # pan across the frame
            rgb = np.roll(base, shift, axis=1) + grain[dy : dy + height, dx : dx + width]
            frame = bt709(np.clip(rgb, 0, 255).astype(np.uint8))
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def ensure_media(
    seconds: float = CLIP_SECONDS, *, folder: Path | None = None, divisor: int = 1
) -> Path:
    """Generate the inputs once; later calls reuse them.

    ``divisor`` shrinks every picture side (rounded to even) for quick tests; ``folder``
    overrides where they go (default: benchmarks/media, or a sub-folder per variant).
    """
    if folder is None:
        folder = MEDIA if seconds == CLIP_SECONDS else MEDIA / f"{seconds:g}s"
        if divisor != 1:
            folder = folder / f"div{divisor}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, width, height, fps, hue in CLIPS:
        path = folder / name
        if not path.exists():
            tmp = path.with_name(f".{name}")
            w, h = (
                (width, height)
                if divisor == 1
                else (_even(width / divisor), _even(height / divisor))
            )
            _grainy_clip(tmp, w, h, fps, hue, seconds)
            tmp.rename(path)
    music = folder / MUSIC
    if not music.exists():
        tmp = music.with_name(f".{MUSIC}")
        make_music(tmp, seconds=3 * seconds + 1, hz=196)
        tmp.rename(music)
    return folder


def reference_clips(
    media: Path,
    repeat: int = 1,
    *,
    clip_seconds: float = CLIP_SECONDS,
    seconds: float | None = None,
) -> list[dict[str, Any]]:
    """The clips of the job: the three inputs ``repeat`` times, or, with ``seconds``, cycled
    until the video lasts that long (the last one cut short with ``duration``)."""
    names = [name for name, *_ in CLIPS]
    if seconds is None:
        return [{"uri": str(media / name), "fit": "cover"} for name in names] * repeat
    clips: list[dict[str, Any]] = []
    left = seconds
    while left > 1e-6:
        clip: dict[str, Any] = {"uri": str(media / names[len(clips) % len(names)]), "fit": "cover"}
        if left < clip_seconds - 1e-6:
            clip["duration"] = round(left, 6)
        clips.append(clip)
        left -= clip_seconds
    return clips


def reference_job(
    media: Path,
    output: Path,
    repeat: int = 1,
    *,
    seconds: float | None = None,
    clip_seconds: float = CLIP_SECONDS,
    size: tuple[int, int] = (1080, 1920),
) -> dict[str, Any]:
    """The reference job; ``repeat`` plays the three clips that many times (long-video runs).

    ``seconds`` (instead of ``repeat``) cycles the clips to exactly that length. For quick
    tests, ``clip_seconds`` (the length the inputs were generated at) scales the texts' times
    and ``size`` the output, with text sizes scaled by its width; the defaults are the reel.
    """
    clips = reference_clips(media, repeat, clip_seconds=clip_seconds, seconds=seconds)
    total = seconds if seconds is not None else clip_seconds * 3 * repeat
    width, height = size
    k = clip_seconds / CLIP_SECONDS  # text times
    z = width / 1080  # text sizes

    def px(value: float) -> float:
        return value if z == 1 else round(value * z, 2)

    return {
        "version": 1,
        "job_id": f"reference-{int(total)}s",
        "output": {
            "uri": str(output),
            "width": width,
            "height": height,
            "fps": 30,
            "quality": "standard",
        },
        "clips": clips,
        "texts": [
            {
                "text": TITLE,
                "font": "Playfair Display",
                "weight": 700,
                "size": px(92),
                "y": 0.2,
                "max_width": 0.9,
                "stroke": {"width": px(4), "color": "#000000"},
                "start": 0.5 * k,
                "end": 6.0 * k,
                "animation": {"in": "fade", "out": "fade", "duration": 0.5 * k},
            },
            {
                "text": CAPTION,
                "font": "Montserrat",
                "weight": 500,
                "size": px(56),
                "y": 0.72,
                "max_width": 0.8,
                "background": {"color": "#000000A0", "padding": px(28), "radius": 0},
                "start": 6.0 * k,
                "end": 12.0 * k,
            },
            {
                "text": CTA,
                "font": "Montserrat",
                "weight": 800,
                "size": px(72),
                "color": "#FFD166",
                "y": 0.5,
                "shadow": {"dx": px(4), "dy": px(4), "blur": 0, "color": "#000000C0"},
                "start": 12.0 * k,
                "end": total,
            },
            {
                "text": WATERMARK,
                "font": "Open Sans",
                "weight": 600,
                "size": px(32),
                "x": 0.96,
                "y": 0.97,
                "anchor": "bottom-right",
                "opacity": 0.8,
            },
        ],
        "audio": {"uri": str(media / MUSIC), "volume": 0.8, "fade_out": 1.5 * k, "loop": True},
    }


def write_job(path: Path, media: Path, output: Path, repeat: int = 1, **options: Any) -> Path:
    """Write the job (``options`` as for :func:`reference_job`) to ``path`` as JSON."""
    job = reference_job(media, output, repeat, **options)
    path.write_text(json.dumps(job, indent=2, ensure_ascii=False))
    return path
