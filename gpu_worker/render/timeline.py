"""Timeline maths, all pure: where each clip sits on the output, which clips show at a time,
transition weights, and the fade and slide of texts.

Clips play in order. A crossfade, wipe or slide into clip i overlaps it with clip i-1 by its
duration; a fade through black does not overlap: clip i-1 fades out over the last half of the
transition's duration and clip i fades in over the first half. Texts and overlays are timed on
the output timeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpu_worker.job import Animation, AnimationKind, TransitionType

SLIDE_FRACTION = 0.05  # a slide travels this fraction of the frame height
_EPS = 1e-9


@dataclass(frozen=True)
class Placement:
    """Clip ``index`` shows ``length`` seconds of its source from output time ``start``."""

    index: int
    start: float
    length: float
    transition_in: TransitionType
    transition_in_duration: float
    transition_out: TransitionType
    transition_out_duration: float

    @property
    def end(self) -> float:
        return self.start + self.length


@dataclass(frozen=True)
class Layer:
    """A clip seen at one output time: its local time, and how much of it shows."""

    index: int
    local_time: float
    weight: float  # progress of the transition into it, 0..1 (1 alone)
    brightness: float  # 1, or less while fading through black
    transition: TransitionType = TransitionType.CUT  # how it comes in over the layer below


def place_clips(
    lengths: list[float], transitions: list[tuple[TransitionType, float]]
) -> list[Placement]:
    """Lay clips end to end; ``transitions[i]`` leads into clip i (the first one's is ignored)."""
    placements: list[Placement] = []
    cursor = 0.0
    for i, length in enumerate(lengths):
        kind, duration = transitions[i] if i else (TransitionType.CUT, 0.0)
        if kind is TransitionType.CUT:
            duration = 0.0
        if kind.overlaps and i:
            cursor -= duration
        nxt_kind, nxt_dur = (
            transitions[i + 1] if i + 1 < len(lengths) else (TransitionType.CUT, 0.0)
        )
        if nxt_kind is TransitionType.CUT:
            nxt_dur = 0.0
        placements.append(Placement(i, cursor, length, kind, duration, nxt_kind, nxt_dur))
        cursor += length
    return placements


def total_duration(placements: list[Placement]) -> float:
    return max(p.end for p in placements)


def frame_count(duration: float, fps: int) -> int:
    """Frames of a video of ``duration`` seconds: the nearest whole number, at least one."""
    return max(1, round(duration * fps + _EPS))


def layers_at(placements: list[Placement], t: float) -> list[Layer]:
    """The clips visible at output time ``t``, bottom first, with their weights."""
    layers: list[Layer] = []
    for p in placements:
        if not (p.start - _EPS <= t < p.end - _EPS) and not (p is placements[-1] and t >= p.start):
            continue
        local = max(0.0, t - p.start)
        weight = 1.0
        brightness = 1.0
        if p.transition_in.overlaps and p.transition_in_duration > 0:
            weight = _clamp(local / p.transition_in_duration)
        if p.transition_in is TransitionType.FADE_BLACK:
            half = p.transition_in_duration / 2
            brightness = min(brightness, _clamp(local / half) if half > 0 else 1.0)
        if p.transition_out is TransitionType.FADE_BLACK:
            half = p.transition_out_duration / 2
            brightness = min(brightness, _clamp((p.end - t) / half) if half > 0 else 1.0)
        layers.append(Layer(p.index, local, weight, brightness, p.transition_in))
    if layers and layers[0].weight < 1.0:
        # The lowest layer always shows fully; weights only mix what lies above it.
        first = layers[0]
        layers[0] = Layer(first.index, first.local_time, 1.0, first.brightness)
    return layers


def edge_position(progress: float, size: int, step: int = 1) -> int:
    """How far (pixels, a multiple of ``step``) a wipe's edge or a slide has travelled across
    ``size`` pixels at ``progress`` 0..1: proportional to time, so the speed is constant."""
    return step * math.floor(_clamp(progress) * size / step + 0.5)


def _clamp(value: float) -> float:
    return 0.0 if value < 0 else 1.0 if value > 1 else value


def _ease_out(progress: float) -> float:
    return 1 - (1 - progress) ** 3


@dataclass(frozen=True)
class TextState:
    """How a text shows at one time: alpha factor (0 hidden) and vertical offset in pixels."""

    alpha: float
    dy: int


HIDDEN = TextState(0.0, 0)


def text_state(
    t: float, start: float, end: float, animation: Animation, opacity: float, frame_height: int
) -> TextState:
    """A text's visibility at output time ``t`` (shown on ``start <= t < end``)."""
    if t < start - _EPS or t >= end - _EPS:
        return HIDDEN
    span = end - start
    d_in = animation.duration if animation.in_ is not AnimationKind.NONE else 0.0
    d_out = animation.duration if animation.out is not AnimationKind.NONE else 0.0
    if d_in + d_out > span:  # squeeze both into the time the text is shown
        scale = span / (d_in + d_out)
        d_in, d_out = d_in * scale, d_out * scale
    alpha, offset = 1.0, 0.0
    distance = SLIDE_FRACTION * frame_height
    if d_in > 0 and t - start < d_in:
        p = _clamp((t - start) / d_in)
        alpha = p
        if animation.in_ is AnimationKind.SLIDE_UP:
            offset = (1 - _ease_out(p)) * distance
    if d_out > 0 and end - t <= d_out:
        p = _clamp((end - t) / d_out)
        alpha = min(alpha, p)
        if animation.out is AnimationKind.SLIDE_UP:
            offset = -(1 - _ease_out(p)) * distance
    dy = 2 * math.floor(offset / 2 + 0.5)  # even: keeps 4:2:0 chroma aligned
    return TextState(alpha * opacity, dy)
