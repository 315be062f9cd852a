"""Things drawn over the clips: prepared once per job, blended into each frame's region.

Texts and image overlays are both a :class:`SpriteLayer`: a premultiplied YUV sprite placed
in the frame, shown from ``start`` to ``end`` with the contract's animation and opacity. The
pipeline draws any :class:`Drawable` the same way, in order, without knowing its kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gpu_worker.job import Animation
from gpu_worker.render.composite import U8, YuvSprite, blend_sprite
from gpu_worker.render.timeline import TextState, text_state


class Drawable(Protocol):
    """Something drawn into frames: how visible it is at a time, and the drawing."""

    @property
    def label(self) -> str:
        """Where the job names it, e.g. ``overlays[0]``."""
        ...

    def visibility(self, t: float) -> float:
        """Its alpha factor at output time ``t`` (0 hidden, 1 fully shown)."""
        ...

    def draw(self, planes: tuple[U8, U8, U8], t: float) -> None:
        """Blend it into the Y, U, V planes of the frame at output time ``t``."""
        ...


@dataclass(frozen=True)
class SpriteLayer:
    """A sprite drawn once per job, blended with its timing and animation on each frame."""

    label: str  # where the job names it, e.g. ``overlays[0]``
    sprite: YuvSprite
    start: float
    end: float
    animation: Animation
    opacity: float
    frame_height: int

    def state(self, t: float) -> TextState:
        return text_state(t, self.start, self.end, self.animation, self.opacity, self.frame_height)

    def visibility(self, t: float) -> float:
        return text_state(t, self.start, self.end, self.animation, 1.0, self.frame_height).alpha

    def draw(self, planes: tuple[U8, U8, U8], t: float) -> None:
        state = self.state(t)
        if state.alpha > 0:
            blend_sprite(planes, self.sprite, state.alpha, state.dy)
