"""Generate the example reel's inputs (procedural, with PyAV) into examples/media/.

Run by `make demo`; files that already exist are kept, so a second run is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make examples.samples importable
    sys.path.insert(0, str(ROOT))

from examples.samples import make_clip, make_image, make_music  # noqa: E402

MEDIA = Path(__file__).resolve().parent / "media"

# The hotel's logo: a sun over two sails on a dark rounded plate (drawn at the size shown).
LOGO_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 240 96">
  <rect x="2" y="2" width="236" height="92" rx="20" fill="#10243A" fill-opacity="0.72"/>
  <circle cx="52" cy="44" r="26" fill="#FFD166"/>
  <path d="M96 74 L122 22 L146 74 Z" fill="#FFFFFF"/>
  <path d="M150 74 L178 34 L206 74 Z" fill="#7FD1F7"/>
  <rect x="88" y="78" width="126" height="5" rx="2.5" fill="#FFFFFF"/>
</svg>
"""


def make_logo(path: Path) -> Path:
    path.write_text(LOGO_SVG)
    return path


def make_badge(path: Path, size: int = 240) -> Path:
    """A round PNG sticker with soft (alpha) edges, drawn 4x larger and reduced."""
    from PIL import Image, ImageDraw

    big = Image.new("RGBA", (size * 4, size * 4), (0, 0, 0, 0))
    draw = ImageDraw.Draw(big)
    draw.ellipse((8, 8, size * 4 - 8, size * 4 - 8), fill=(230, 57, 70, 235))
    draw.ellipse((64, 64, size * 4 - 64, size * 4 - 64), outline=(255, 255, 255, 255), width=24)
    big.resize((size, size), Image.Resampling.LANCZOS).save(path)
    return path


def main() -> int:
    MEDIA.mkdir(parents=True, exist_ok=True)
    wanted = {
        # A landscape drone-like shot, as most cameras film it.
        "lobby-1920x1080-30fps.mp4": lambda p: make_clip(
            p, width=1280, height=720, fps=30, seconds=5, hue=0.05, grain=3
        ),
        # A phone clip filmed upright: stored landscape with a display rotation.
        "pool-phone-rotated.mp4": lambda p: make_clip(
            p, width=540, height=960, fps=30, seconds=4, hue=0.45, rotation=90, grain=3
        ),
        # A 60 fps portrait clip.
        "terrace-1080x1920-60fps.mp4": lambda p: make_clip(
            p, width=540, height=960, fps=60, seconds=4, hue=0.7, grain=3, audio_hz=330
        ),
        # A still photo of the room.
        "room.jpg": lambda p: make_image(p, width=1200, height=800, hue=0.2),
        # A big camera photo (4000x3000) for a Ken Burns zoom that stays sharp.
        "garden-4000x3000.jpg": lambda p: make_image(p, width=4000, height=3000, hue=0.33),
        "logo.svg": make_logo,
        "badge.png": make_badge,
        "music.m4a": lambda p: make_music(p, seconds=8, hz=196),
    }
    for name, make in wanted.items():
        path = MEDIA / name
        if not path.exists():
            tmp = path.with_name(f".{name}")
            make(tmp)
            tmp.rename(path)
            print(
                f"made {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
