"""Drawing a transition between two clips' frames: crossfades, wipes and slides on whole
yuv420p frames, at a progress computed by the timeline (gpu_worker.render.timeline).

Edges and offsets are even in luma, so the half-resolution chroma planes move with them
exactly; a wipe's edge and a slide's offset grow in proportion to time (constant speed).
"""

from __future__ import annotations

from gpu_worker.job import TransitionType
from gpu_worker.render.composite import U8, mix, planes_of
from gpu_worker.render.timeline import edge_position

_HORIZONTAL = {
    TransitionType.WIPE_LEFT,
    TransitionType.WIPE_RIGHT,
    TransitionType.SLIDE_LEFT,
    TransitionType.SLIDE_RIGHT,
}
_WIPES = {
    TransitionType.WIPE_LEFT,
    TransitionType.WIPE_RIGHT,
    TransitionType.WIPE_UP,
    TransitionType.WIPE_DOWN,
}
# Directions in which the picture's content moves towards index 0 (left or up).
_TOWARDS_START = {
    TransitionType.WIPE_LEFT,
    TransitionType.WIPE_UP,
    TransitionType.SLIDE_LEFT,
    TransitionType.SLIDE_UP,
}


def travel(kind: TransitionType, progress: float, width: int, height: int) -> int:
    """Pixels (even) a wipe's edge or a slide has travelled at ``progress``."""
    size = width if kind in _HORIZONTAL else height
    return edge_position(progress, size, step=2)


def apply(
    kind: TransitionType, bottom: U8, top: U8, progress: float, width: int, height: int
) -> U8:
    """The frame ``progress`` (0..1) into a transition of ``kind`` from ``bottom`` (the
    outgoing clip) to ``top`` (the incoming one); both are (height * 3/2, width) yuv420p
    arrays. ``bottom`` may be overwritten and returned."""
    if kind is TransitionType.CROSSFADE:
        return mix(bottom, top, progress)
    if kind in (TransitionType.CUT, TransitionType.FADE_BLACK):
        return top
    moved = travel(kind, progress, width, height)
    if moved <= 0:
        return bottom
    horizontal = kind in _HORIZONTAL
    if moved >= (width if horizontal else height):
        return top
    wipe = kind in _WIPES
    start = kind in _TOWARDS_START
    for scale, (b, t) in enumerate(
        zip(planes_of(bottom, width, height), planes_of(top, width, height), strict=True)
    ):
        e = moved if scale == 0 else moved // 2
        if horizontal:  # work on columns as if they were rows
            b, t = b.T, t.T
        n = b.shape[0]
        if wipe:
            if start:  # the edge travels towards the start: the new picture shows at the end
                b[n - e :] = t[n - e :]
            else:
                b[:e] = t[:e]
        elif start:  # the outgoing picture leaves by the start, the incoming follows it
            b[: n - e] = b[e:]
            b[n - e :] = t[:e]
        else:
            b[e:] = b[: n - e].copy()
            b[:e] = t[n - e :]
    return bottom
