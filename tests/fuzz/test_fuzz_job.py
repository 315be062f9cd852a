"""Job files made by Hypothesis: a valid job with a few values replaced (mostly by values of
the same type, often on an edge of the contract), removed or added, rendered like any job.
Each ends in a video or a job error with its code."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fuzz_cases import cases_per_seed, full_job, job_case
from fuzz_runner import Pool
from fuzz_seeds import FONT_TEXT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Values that sit on the contract's edges or name things a job should not reach.
NUMBERS = [0, -1, 1, 2, 15, 16, 17, 3840, 3842, 0.0001, 1e-300, 86_400, 86_401, 1e308, 2**63]
WORDS = ["", " ", "\u200b", "#FFF", "#GGGGGG", "cover", "crossfade", "top-left", "fade"]
PATHS = ["clean.png", "h264-aac.mp4", "music.m4a", "roboto.ttf", "logo.svg", "missing.mp4"]
ESCAPES = ["../clean.png", "/dev/zero", "/proc/self/mem", "s3://b/k.mp4", "http://x/y", "file:x"]
TEXTS = ["\u0645\u0631\u062d\u0628\u0627", "\U0001f600", "A" * 300, "x\ny\n\nz"]
NAMES = ["contain", "blur", "cut", "fade_black", "slide_up", "right", "bottom-right", "high"]
NAMES += ["Roboto", "Montserrat", "Playfair Display", "Comic", "#FF000080", "#00000000"]
EDGES = st.sampled_from([*NUMBERS, *WORDS, *PATHS, *ESCAPES, *TEXTS])
STRINGS = st.sampled_from([*WORDS, *PATHS, *ESCAPES, *TEXTS, *NAMES]) | st.text(max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | EDGES
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _places(item, (*path, i))


def _like(old: Any) -> st.SearchStrategy[Any]:
    """A value of the same JSON type as ``old``, often one on an edge of the contract."""
    if isinstance(old, bool):
        return st.booleans()
    if isinstance(old, int):
        return st.integers(-2, 4000) | st.sampled_from(NUMBERS)
    if isinstance(old, float):
        return st.floats(0, 1) | st.floats(-2, 120) | st.sampled_from(NUMBERS)
    if isinstance(old, str):
        return STRINGS
    return VALUES


@st.composite
def edited_jobs(draw: st.DrawFn) -> dict[str, Any]:
    job = copy.deepcopy(full_job(0))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from([p for p in _places(job) if p]))
        parent = job
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["like"] * 7 + ["set", "delete", "add"]))
        if action == "like":
            parent[path[-1]] = draw(_like(parent[path[-1]]))
        elif action == "set":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
        else:
            parent.append(copy.deepcopy(parent[path[-1]]))
    return job


@settings(
    max_examples=cases_per_seed(),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(job=edited_jobs())
def test_edited_jobs_end_in_a_video_or_a_job_error(
    job: dict[str, Any], seeds: dict[str, Path], pool: Pool
) -> None:
    _, failures = pool.run([job_case(job, "hypothesis", seeds)])
    assert not failures, failures[0]


SECONDS = st.floats(0.05, 0.7)
DRAWN = st.sampled_from(FONT_TEXT)  # characters every font of these jobs can draw
TEXT_CHARS = st.characters(
    codec="utf-8", categories=["L", "M", "N", "P", "S", "Zs"], exclude_characters="\x00"
)


@st.composite
def clips(draw: st.DrawFn, first: bool) -> dict[str, Any]:
    clip: dict[str, Any] = {"uri": draw(st.sampled_from(["clean.png", "h264-aac.mp4"]))}
    if clip["uri"] == "clean.png" or draw(st.booleans()):
        clip["duration"] = draw(SECONDS)
    if clip["uri"] != "clean.png" and draw(st.booleans()):
        clip["trim_start"] = draw(st.floats(0, 0.7))
    clip["fit"] = draw(st.sampled_from(["cover", "contain", "blur"]))
    clip["volume"] = draw(st.sampled_from([0, 0.5, 4]))
    kinds = ["cut", "fade_black"] if first else ["cut", "fade_black", "crossfade"]
    clip["transition"] = {"type": draw(st.sampled_from(kinds)), "duration": draw(SECONDS)}
    return clip


@st.composite
def texts(draw: st.DrawFn) -> dict[str, Any]:
    text: dict[str, Any] = {
        "text": draw(st.text(DRAWN | TEXT_CHARS | st.just("\n"), min_size=1, max_size=30)),
        "size": draw(st.floats(1, 120)),
        "x": draw(st.floats(0, 1)),
        "y": draw(st.floats(0, 1)),
        "anchor": draw(st.sampled_from(["top-left", "center", "bottom-right", "left"])),
        "align": draw(st.sampled_from(["left", "center", "right"])),
        "max_width": draw(st.floats(0.05, 1)),
        "line_spacing": draw(st.floats(0.1, 3)),
        "letter_spacing": draw(st.floats(-100, 100)),
        "start": draw(st.floats(0, 1)),
        "animation": {
            "in": draw(st.sampled_from(["none", "fade", "slide_up"])),
            "out": draw(st.sampled_from(["none", "fade", "slide_up"])),
            "duration": draw(st.floats(0.01, 2)),
        },
    }
    if draw(st.booleans()):
        text["font_uri"] = "roboto.ttf"
    else:
        text["font"] = draw(st.sampled_from(["Roboto", "Open Sans", "Playfair Display"]))
        text["weight"] = draw(st.sampled_from([100, 400, 700, 900]))
        text["italic"] = draw(st.booleans())
    if draw(st.booleans()):
        text["stroke"] = {"width": draw(st.floats(0.1, 10))}
    if draw(st.booleans()):
        text["shadow"] = {"dx": draw(st.floats(-20, 20)), "blur": draw(st.floats(0, 20))}
    if draw(st.booleans()):
        text["background"] = {"padding": draw(st.floats(0, 30)), "radius": draw(st.floats(0, 50))}
    return text


@st.composite
def overlays(draw: st.DrawFn) -> dict[str, Any]:
    overlay: dict[str, Any] = {
        "uri": draw(st.sampled_from(["logo.png", "logo.svg", "clean.png"])),
        "x": draw(st.floats(0, 1)),
        "y": draw(st.floats(0, 1)),
        "anchor": draw(st.sampled_from(["top-left", "center", "bottom-right"])),
        "opacity": draw(st.floats(0, 1)),
        "start": draw(st.floats(0, 1)),
        "animation": {"in": draw(st.sampled_from(["none", "fade", "slide_up"]))},
    }
    side = draw(st.sampled_from(["width", "height", None]))
    if side is not None:
        overlay[side] = draw(st.floats(0.01, 1))
    return overlay


@st.composite
def contract_jobs(draw: st.DrawFn) -> dict[str, Any]:
    """Jobs within the contract, small and varied: clips, transitions, overlays, texts, music."""
    count = draw(st.integers(1, 3))
    job: dict[str, Any] = {
        "version": 1,
        "job_id": "hypothesis",
        "output": {
            "uri": "out.mp4",
            "width": draw(st.sampled_from([16, 34, 64, 96])),
            "height": draw(st.sampled_from([16, 34, 64, 96])),
            "fps": draw(st.integers(1, 25)),
            "quality": draw(st.sampled_from(["draft", "standard", "high"])),
            "poster": draw(st.booleans()),
        },
        "clips": [draw(clips(first=i == 0)) for i in range(count)],
        "overlays": draw(st.lists(overlays(), max_size=2)),
        "texts": draw(st.lists(texts(), max_size=2)),
    }
    if draw(st.booleans()):
        job["audio"] = {
            "uri": "music.m4a",
            "volume": draw(st.floats(0, 4)),
            "fade_in": draw(st.floats(0, 2)),
            "fade_out": draw(st.floats(0, 2)),
            "loop": draw(st.booleans()),
        }
    return job


@settings(
    max_examples=2 * cases_per_seed(),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(job=contract_jobs())
def test_jobs_within_the_contract_end_in_a_video_or_a_job_error(
    job: dict[str, Any], seeds: dict[str, Path], pool: Pool
) -> None:
    _, failures = pool.run([job_case(job, "hypothesis-contract", seeds)])
    assert not failures, failures[0]
