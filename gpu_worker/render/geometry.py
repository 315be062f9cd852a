"""Picture geometry as pure functions: the centred crop of a ``cover`` fit and the filters
that turn a rotated picture upright. Shared by the filter graph (clips) and NVDEC (decoder)."""

from __future__ import annotations


def cover_crop(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The centred part (w, h, x, y) of an upright ``src_w`` x ``src_h`` picture that has the
    output's shape: cropping it *before* scaling scales only the pixels that are kept."""
    if src_w * height > width * src_h:  # wider than the output: trim the sides
        w, h = min(src_w, max(2, round(src_h * width / height))), src_h
    else:  # taller: trim top and bottom
        w, h = src_w, min(src_h, max(2, round(src_w * height / width)))
    return w, h, (src_w - w) // 2, (src_h - h) // 2


def rotation_filters(rotation: int) -> list[tuple[str, str]]:
    """The filters turning a picture stored with a display rotation (counter-clockwise
    degrees) upright."""
    if rotation == 90:
        return [("transpose", "cclock")]
    if rotation == 270:
        return [("transpose", "clock")]
    if rotation == 180:
        return [("hflip", ""), ("vflip", "")]
    return []
