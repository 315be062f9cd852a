"""The job contract: defaults, refusals with JSON paths, and the committed JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpu_worker.errors import InvalidJob
from gpu_worker.job import Anchor, json_schema, parse_color, parse_job

ROOT = Path(__file__).resolve().parents[1]


def minimal(**extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "job_id": "a",
        "output": {"uri": "o.mp4"},
        "clips": [{"uri": "c.mp4"}],
        **extra,
    }


def test_defaults() -> None:
    job = parse_job(minimal(texts=[{"text": "Hi", "font": "Roboto", "size": 10}]))
    assert (job.output.width, job.output.height, job.output.fps) == (1080, 1920, 30)
    assert job.output.quality == "standard" and job.output.poster is False
    clip = job.clips[0]
    assert (clip.trim_start, clip.duration, clip.fit, clip.volume) == (0, None, "cover", 0)
    assert clip.transition.type == "cut" and clip.transition.duration == 0.5
    text = job.texts[0]
    assert (text.weight, text.color, text.anchor, text.max_width, text.line_spacing) == (
        400,
        "#FFFFFF",
        "center",
        0.9,
        1.15,
    )
    assert text.animation.in_ == "none" and job.audio is None and job.metadata == {}


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"version": 2}, "$.version"),
        ({"job_id": "has space"}, "$.job_id"),
        ({"job_id": "x" * 129}, "$.job_id"),
        ({"output": {"uri": "o.mp4", "width": 1081}}, "$.output.width"),
        ({"output": {"uri": "o.mp4", "height": 4000}}, "$.output.height"),
        ({"output": {"uri": "o.mp4", "fps": 61}}, "$.output.fps"),
        ({"output": {"uri": "o.mp4", "quality": "ultra"}}, "$.output.quality"),
        ({"clips": []}, "$.clips"),
        ({"clips": [{"uri": "c.mp4", "fit": "stretch"}]}, "$.clips[0].fit"),
        ({"clips": [{"uri": "c.mp4", "trim_start": -1}]}, "$.clips[0].trim_start"),
        (
            {"clips": [{"uri": "c.mp4", "transition": {"type": "wipe"}}]},
            "$.clips[0].transition.type",
        ),
        ({"clips": [{"uri": "c.mp4", "transition": {"type": "crossfade"}}]}, "$"),
        ({"clips": [{"uri": "c.mp4", "transition": {"type": "slide_left"}}]}, "$"),
        (
            {"clips": [{"uri": "c.mp4", "motion": {"type": "zoom_sideways"}}]},
            "$.clips[0].motion.type",
        ),
        (
            {"clips": [{"uri": "c.mp4", "motion": {"type": "zoom_in", "scale": 1.0}}]},
            "$.clips[0].motion.scale",
        ),
        (
            {"clips": [{"uri": "c.mp4", "motion": {"type": "pan_up", "easing": "bounce"}}]},
            "$.clips[0].motion.easing",
        ),
        ({"overlays": [{"uri": "l.png", "width": 0.2, "height": 0.1}]}, "$.overlays[0]"),
        ({"overlays": [{"uri": "l.png", "width": 0}]}, "$.overlays[0].width"),
        ({"overlays": [{"uri": "l.png", "opacity": 2}]}, "$.overlays[0].opacity"),
        ({"overlays": [{"uri": "l.png", "start": 3, "end": 1}]}, "$.overlays[0]"),
        ({"overlays": [{"uri": ""}]}, "$.overlays[0].uri"),
        ({"texts": [{"text": "x", "size": 10}]}, "$.texts[0]"),
        ({"texts": [{"text": "x", "font": "R", "size": 10, "color": "white"}]}, "$.texts[0].color"),
        (
            {"texts": [{"text": "x", "font": "R", "size": 10, "anchor": "middle"}]},
            "$.texts[0].anchor",
        ),
        ({"texts": [{"text": "x", "font": "R", "size": 10, "weight": 950}]}, "$.texts[0].weight"),
        ({"texts": [{"text": "x", "font": "R", "size": 10, "start": 3, "end": 2}]}, "$.texts[0]"),
        ({"texts": [{"text": "   ", "font": "R", "size": 10}]}, "$.texts[0]"),
        (
            {"texts": [{"text": "x", "font": "R", "size": 10, "animation": {"in": "zoom"}}]},
            "$.texts[0].animation.in",
        ),
        ({"audio": {"uri": "m.mp3", "loop": "yes"}}, "$.audio.loop"),
        ({"metadata": {"blob": "x" * 5000}}, "$.metadata"),
        ({"extra": 1}, "$.extra"),
    ],
)
def test_refusals_name_their_path(patch: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidJob) as err:
        parse_job(minimal(**patch))
    assert err.value.code == "invalid_job"
    assert f"{path}: " in str(err.value) or str(err.value).startswith(f"{path}:")


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(InvalidJob) as err:
        parse_job({"version": 1, "job_id": "?", "output": {"uri": "o", "fps": 0}, "clips": [{}]})
    message = str(err.value)
    for path in ("$.job_id", "$.output.fps", "$.clips[0].uri"):
        assert path in message


@pytest.mark.parametrize(
    ("value", "rgba"),
    [
        ("#FFFFFF", (255, 255, 255, 255)),
        ("#00000080", (0, 0, 0, 128)),
        ("#1b2C3d", (27, 44, 61, 255)),
    ],
)
def test_colours(value: str, rgba: tuple[int, int, int, int]) -> None:
    assert parse_color(value) == rgba


def test_anchor_fractions() -> None:
    assert Anchor.TOP_LEFT.fractions == (0.0, 0.0)
    assert Anchor.BOTTOM.fractions == (0.5, 1.0)
    assert Anchor.RIGHT.fractions == (1.0, 0.5)
    assert len(Anchor) == 9


def test_committed_schema_matches_the_code() -> None:
    committed = json.loads((ROOT / "job.schema.json").read_text(encoding="utf-8"))
    assert committed == json_schema(), "run `gpu-worker schema > job.schema.json`"


@pytest.mark.parametrize("name", ["hotel-reel.json", "real-estate-reel.json"])
def test_example_reels_are_valid(name: str) -> None:
    parse_job(json.loads((ROOT / "examples" / name).read_text(encoding="utf-8")))
