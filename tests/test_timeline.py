"""Timeline maths as tables: clip placement, layers and weights, text fades and slides."""

from __future__ import annotations

import pytest

from gpu_worker.job import Animation, AnimationKind, TransitionType
from gpu_worker.render.timeline import (
    SLIDE_FRACTION,
    edge_position,
    frame_count,
    layers_at,
    place_clips,
    text_state,
    total_duration,
)

CUT, XF, FB = TransitionType.CUT, TransitionType.CROSSFADE, TransitionType.FADE_BLACK


@pytest.mark.parametrize(
    ("lengths", "transitions", "starts", "total"),
    [
        ([2.0], [(CUT, 0.5)], [0.0], 2.0),
        ([2.0, 3.0], [(CUT, 0.5), (CUT, 0.5)], [0.0, 2.0], 5.0),
        ([2.0, 3.0], [(CUT, 0.5), (XF, 0.5)], [0.0, 1.5], 4.5),
        ([2.0, 3.0], [(CUT, 0.5), (FB, 1.0)], [0.0, 2.0], 5.0),
        ([1.0, 1.0, 1.0], [(CUT, 0), (XF, 0.25), (XF, 0.25)], [0.0, 0.75, 1.5], 2.5),
        ([4.0, 1.0], [(XF, 9.0), (XF, 1.0)], [0.0, 3.0], 4.0),  # clip 0's transition is ignored
    ],
)
def test_place_clips(
    lengths: list[float],
    transitions: list[tuple[TransitionType, float]],
    starts: list[float],
    total: float,
) -> None:
    placements = place_clips(lengths, transitions)
    assert [p.start for p in placements] == pytest.approx(starts)
    assert total_duration(placements) == pytest.approx(total)


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0.0, [(0, 0.0, 1.0, 1.0)]),
        (1.49, [(0, 1.49, 1.0, 1.0)]),
        (1.5, [(0, 1.5, 1.0, 1.0), (1, 0.0, 0.0, 1.0)]),
        (1.75, [(0, 1.75, 1.0, 1.0), (1, 0.25, 0.5, 1.0)]),
        (2.0, [(1, 0.5, 1.0, 1.0)]),
        (4.0, [(1, 2.5, 1.0, 1.0)]),  # the fade to black starts 0.5 s before clip 1 ends
        (4.25, [(1, 2.75, 1.0, 0.5)]),
        (4.5, [(2, 0.0, 1.0, 0.0)]),  # the black instant
        (4.75, [(2, 0.25, 1.0, 0.5)]),
        (6.0, [(2, 1.5, 1.0, 1.0)]),
        (6.5, [(2, 2.0, 1.0, 1.0)]),  # past the end: the last clip holds
    ],
)
def test_layers(t: float, expected: list[tuple[int, float, float, float]]) -> None:
    placements = place_clips([2.0, 3.0, 2.0], [(CUT, 0), (XF, 0.5), (FB, 1.0)])
    got = [(la.index, la.local_time, la.weight, la.brightness) for la in layers_at(placements, t)]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e)


@pytest.mark.parametrize(
    ("duration", "fps", "frames"),
    [
        (1.0, 30, 30),
        (2.5, 10, 25),
        (0.01, 30, 1),
        (10.0 / 3, 30, 100),
        (1.49, 1, 1),
        (59.99, 60, 3599),
    ],
)
def test_frame_count(duration: float, fps: int, frames: int) -> None:
    assert frame_count(duration, fps) == frames


FADE = Animation.model_validate({"in": "fade", "out": "fade", "duration": 1.0})
SLIDE = Animation.model_validate({"in": "slide_up", "out": "slide_up", "duration": 1.0})
NONE = Animation()


@pytest.mark.parametrize(
    ("anim", "t", "alpha", "moved"),
    [
        (NONE, -0.1, 0.0, False),
        (NONE, 0.0, 1.0, False),
        (NONE, 9.99, 1.0, False),
        (NONE, 10.0, 0.0, False),  # end is exclusive
        (FADE, 0.0, 0.0, False),
        (FADE, 0.5, 0.5, False),
        (FADE, 1.0, 1.0, False),
        (FADE, 9.5, 0.5, False),
        (SLIDE, 0.5, 0.5, True),
        (SLIDE, 5.0, 1.0, False),
        (SLIDE, 9.5, 0.5, True),
    ],
)
def test_text_state(anim: Animation, t: float, alpha: float, moved: bool) -> None:
    state = text_state(t, 0.0, 10.0, anim, 1.0, 1000)
    assert state.alpha == pytest.approx(alpha)
    assert (state.dy != 0) is moved
    assert state.dy % 2 == 0


def test_slide_directions_and_distance() -> None:
    h = 1000
    start = text_state(0.0, 0.0, 10.0, SLIDE, 1.0, h)
    assert start.dy == pytest.approx(SLIDE_FRACTION * h, abs=2)  # starts below, rises
    leaving = text_state(9.99, 0.0, 10.0, SLIDE, 1.0, h)
    assert leaving.dy < 0  # leaves upwards


def test_animations_squeezed_into_short_texts_and_opacity() -> None:
    state = text_state(
        0.25,
        0.0,
        1.0,
        Animation.model_validate(
            {"in": AnimationKind.FADE, "out": AnimationKind.FADE, "duration": 2.0}
        ),
        0.8,
        100,
    )
    assert state.alpha == pytest.approx(0.5 * 0.8)


WL, SL = TransitionType.WIPE_LEFT, TransitionType.SLIDE_UP


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0.9, [(0, 0.9, 1.0, CUT)]),
        (1.0, [(0, 1.0, 1.0, CUT), (1, 0.0, 0.0, WL)]),
        (1.25, [(0, 1.25, 1.0, CUT), (1, 0.25, 0.25, WL)]),
        (2.0, [(1, 1.0, 1.0, WL)]),
        (3.5, [(1, 2.5, 1.0, WL), (2, 0.0, 0.0, SL)]),
        (3.75, [(1, 2.75, 1.0, WL), (2, 0.25, 0.5, SL)]),
    ],
)
def test_wipes_and_slides_overlap_like_crossfades(
    t: float, expected: list[tuple[int, float, float, TransitionType]]
) -> None:
    placements = place_clips([2.0, 3.0, 2.0], [(CUT, 0), (WL, 1.0), (SL, 0.5)])
    assert [p.start for p in placements] == pytest.approx([0.0, 1.0, 3.5])
    assert total_duration(placements) == pytest.approx(5.5)
    got = [(la.index, la.local_time, la.weight, la.transition) for la in layers_at(placements, t)]
    assert [g[3] for g in got] == [e[3] for e in expected]
    assert [v for g in got for v in g[:3]] == pytest.approx([v for e in expected for v in e[:3]])


@pytest.mark.parametrize(
    ("size", "step", "positions"),
    [
        (96, 2, [0, 12, 24, 36, 48, 60, 72, 84, 96]),  # 8 frames: 12 px a frame
        (100, 1, [0, 13, 25, 38, 50, 63, 75, 88, 100]),  # never more than a pixel off time
        (1080, 2, [0, 136, 270, 406, 540, 676, 810, 946, 1080]),
    ],
)
def test_edge_position_is_proportional_to_time(size: int, step: int, positions: list[int]) -> None:
    got = [edge_position(k / 8, size, step) for k in range(9)]
    assert got == positions
    assert all(p % step == 0 for p in got)
    assert all(abs(p - k / 8 * size) <= step / 2 for k, p in enumerate(got))
