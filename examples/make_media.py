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
