"""Picture geometry as pure functions: the centred crop of a ``cover`` fit and the filters
that turn a rotated picture upright. Shared by the filter graph (clips) and NVDEC (decoder)."""

from __future__ import annotations


def cover_crop(
    src_w: int, src_h: int, width: int, height: int, sar: float = 1.0
) -> tuple[int, int, int, int]:
    """The centred part (w, h, x, y), in stored pixels, of an upright ``src_w`` x ``src_h``
    picture whose pixels are ``sar`` times as wide as tall, that has the output's shape once
    shown: cropping it *before* scaling scales only the pixels that are kept."""
    shown_w = src_w * sar
    if shown_w * height > width * src_h:  # wider than the output: trim the sides
        w, h = min(src_w, max(2, round(src_h * width / height / sar))), src_h
    else:  # taller: trim top and bottom
        w, h = src_w, min(src_h, max(2, round(shown_w * height / width)))
    return w, h, (src_w - w) // 2, (src_h - h) // 2


def contain_size(
    src_w: int, src_h: int, width: int, height: int, sar: float = 1.0
) -> tuple[int, int]:
    """The even size (w, h) a ``contain`` fit scales an upright picture to: as large as fits
    in ``width`` x ``height`` with the shape it is shown with (``src_w`` x ``sar`` by
    ``src_h``)."""
    shown_w = src_w * sar
    scale = min(width / shown_w, height / src_h)

    def even(value: float, most: int) -> int:
        return max(2, min(most, round(value / 2) * 2))

    return even(shown_w * scale, width), even(src_h * scale, height)


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
