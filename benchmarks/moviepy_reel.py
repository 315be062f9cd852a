"""The reference reel written the way a MoviePy 2 user would write it.

    python benchmarks/moviepy_reel.py PLAN.json OUT.mp4

``PLAN.json`` is written by benchmarks/compare.py from the reference job: clip paths, the
output size and rate, each text's lines, font file, size, colours, position, timing and fade,
the music and the encoder settings. This file uses MoviePy only (it runs in its own process
so its time, CPU and memory, with its ffmpeg children, can be measured).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _rgba(color: list[int]) -> tuple[int, int, int, int]:
    r, g, b, a = color
    return r, g, b, a


def _hex(color: list[int]) -> str:
    return "#{:02X}{:02X}{:02X}".format(*color[:3])


def build(plan: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The final clip, and every clip opened (to close afterwards)."""
    from moviepy import (
        AudioFileClip,
        CompositeVideoClip,
        TextClip,
        VideoFileClip,
        afx,
        concatenate_videoclips,
        vfx,
    )

    width, height, total = plan["width"], plan["height"], plan["duration"]
    opened: list[Any] = []
    pieces = []
    for item in plan["clips"]:
        source = VideoFileClip(item["path"], audio=False)
        opened.append(source)
        clip = source if item["duration"] is None else source.subclipped(0, item["duration"])
        scale = max(width / clip.w, height / clip.h)  # cover: scale up, crop the rest
        clip = clip.resized(scale)
        clip = clip.cropped(x_center=clip.w / 2, y_center=clip.h / 2, width=width, height=height)
        pieces.append(clip)
    video = concatenate_videoclips(pieces)

    layers = [video]
    for spec in plan["texts"]:
        size = round(spec["size"])
        common: dict[str, Any] = {"font": spec["font"], "font_size": size, "text_align": "center"}
        if spec["box"]:  # the caption: MoviePy wraps it, at the same width, on its box
            pad = round(spec["box"]["padding"])
            common.update(
                method="caption",
                text=spec["text"],
                size=(spec["wrap_width"], None),
                bg_color=_rgba(spec["box"]["color"]),
                margin=(pad, pad),
            )
        else:  # our line breaks; a bottom margin, or MoviePy cuts descenders and last lines
            common.update(
                method="label", text="\n".join(spec["lines"]), margin=(0, 0, 0, size // 3)
            )
        clips = []
        if spec["shadow"]:
            shadow = spec["shadow"]
            clips.append(
                (
                    TextClip(color=_hex(shadow["color"]), **common).with_opacity(
                        shadow["color"][3] / 255
                    ),
                    shadow["dx"],
                    shadow["dy"],
                )
            )
        stroke: dict[str, Any] = {}
        if spec["stroke"]:
            stroke = {
                "stroke_color": _hex(spec["stroke"]["color"]),
                "stroke_width": max(1, round(spec["stroke"]["width"])),
            }
        clips.append((TextClip(color=_hex(spec["color"]), **common, **stroke), 0, 0))
        for text, dx, dy in clips:
            fx, fy = spec["anchor"]
            x = spec["x"] * width - fx * text.w + dx
            y = spec["y"] * height - fy * text.h + dy
            text = text.with_position((round(x), round(y)))
            text = text.with_start(spec["start"]).with_duration(spec["end"] - spec["start"])
            if spec["opacity"] < 1:
                text = text.with_opacity(spec["opacity"])
            if spec["fade"] > 0:
                text = text.with_effects(
                    [vfx.CrossFadeIn(spec["fade"]), vfx.CrossFadeOut(spec["fade"])]
                )
            layers.append(text)
            opened.append(text)

    final = CompositeVideoClip(layers, size=(width, height)).with_duration(total)
    music = plan["music"]
    if music:
        audio = AudioFileClip(music["path"])
        opened.append(audio)
        effects = [afx.AudioLoop(duration=total), afx.MultiplyVolume(music["volume"])]
        if music["fade_out"] > 0:
            effects.append(afx.AudioFadeOut(music["fade_out"]))
        final = final.with_audio(audio.with_effects(effects).with_duration(total))
    return final, opened


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: moviepy_reel.py PLAN.json OUT.mp4", file=sys.stderr)
        return 2
    plan = json.loads(Path(args[0]).read_text())
    output = Path(args[1])
    enc = plan["encode"]
    final, opened = build(plan)
    try:
        final.write_videofile(
            str(output),
            fps=plan["fps"],
            codec="libx264",
            preset=enc["preset"],
            ffmpeg_params=["-crf", str(enc["crf"])],
            audio_codec="aac",
            audio_bitrate=enc["audio_bitrate"],
            audio_fps=48_000,
            threads=enc["threads"],
            temp_audiofile_path=str(output.parent),
            logger=None,
        )
    finally:
        final.close()
        for clip in opened:  # stops (and reaps) the ffmpeg reader processes
            clip.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
