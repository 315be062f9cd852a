"""Image overlays (logos, stickers): read safely, drawn once per job at the size they are
shown, and placed in the frame like a text.

PNG, WebP and JPEG are decoded by Pillow after their declared size is checked against the
limits, then scaled once with Lanczos (on premultiplied alpha, so edges keep no dark fringe).
SVG is drawn by resvg at the size it is shown; an SVG that names any other file or URL, or
declares XML entities, is refused before it is drawn.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from gpu_worker.errors import (
    InputForbidden,
    InputUnreadable,
    InvalidJob,
    LimitExceeded,
    UnsupportedInput,
)
from gpu_worker.job import Job, Overlay
from gpu_worker.limits import Limits
from gpu_worker.render import fonts
from gpu_worker.render.composite import to_yuv_sprite
from gpu_worker.render.files import BoundedReader, checked_input
from gpu_worker.render.layers import SpriteLayer
from gpu_worker.render.pictures import check_side, too_many_pixels

RASTER_FORMATS = {"PNG", "JPEG", "WEBP"}
SVG_MAX_BYTES = 16 * 1024**2
_DATA_URI = re.compile(r"^data:([^;,]*)((?:;[^;,]*)*),(.*)$", re.DOTALL | re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*['\"]?\s*([^'\")\s]*)", re.IGNORECASE)
_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(px|pt|pc|mm|cm|in)?\s*$")
_UNIT_PX = {None: 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54}
_UNIT_PX["in"] = 96.0


@dataclass(frozen=True)
class Picture:
    """An overlay drawn at its shown size and placed: RGBA image, top-left in the frame."""

    image: Image.Image
    x: int  # even
    y: int  # even


def _head(path: Path, label: str, limits: Limits) -> bytes:
    """The first bytes of a checked input file (exists, regular, not empty, not too big)."""
    stat = checked_input(path, label, limits)
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise InputUnreadable(f"{label}: cannot be read ({exc.strerror})") from exc
    if is_svg(head) and stat.st_size > SVG_MAX_BYTES:
        raise LimitExceeded(
            f"{label}: an SVG of {stat.st_size} bytes; the limit is {SVG_MAX_BYTES}"
        )
    return head


def is_svg(data: bytes) -> bool:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<") and b"<svg" in head


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _forbidden_reference(value: str) -> bool:
    """Whether an href or CSS url() points outside the document (data: URIs stay inside)."""
    value = value.strip()
    return bool(value) and not value.startswith("#") and not value.lower().startswith("data:")


def _check_embedded(value: str, label: str, limits: Limits, depth: int) -> None:
    """An image embedded as a ``data:`` URI: a picture within the size limits, or an SVG
    that passes the same checks."""
    match = _DATA_URI.match(value.strip())
    if match is None:
        raise InputUnreadable(f"{label}: a malformed data: URI in the SVG")
    mime, params, payload = match.group(1).lower(), match.group(2).lower(), match.group(3)
    try:
        if ";base64" in params:
            data = base64.b64decode("".join(payload.split()), validate=True)
        else:
            data = urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise InputUnreadable(f"{label}: a malformed data: URI in the SVG") from exc
    if mime == "image/svg+xml" or is_svg(data):
        if depth >= 2:
            raise InputForbidden(f"{label}: SVGs nested more than two deep")
        check_svg(data.decode("utf-8", errors="replace"), label, limits, depth + 1)
        return
    try:
        with Image.open(io.BytesIO(data)) as picture:
            width, height = picture.size
    except Image.DecompressionBombError as exc:
        raise too_many_pixels(f"{label}: a picture in the SVG", limits) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputUnreadable(f"{label}: a picture in the SVG cannot be read") from exc
    check_side(f"{label}: a picture in the SVG", width, height, limits)


def check_svg(text: str, label: str, limits: Limits, depth: int = 0) -> ET.Element:
    """Parse an SVG, refusing entities and any reference to another file or URL; pictures
    embedded as ``data:`` URIs are held to the size limits."""
    if "<!ENTITY" in text or re.search(r"<!DOCTYPE[^>]*\[", text):
        raise InputForbidden(f"{label}: the SVG declares XML entities")
    if "<?xml-stylesheet" in text:
        raise InputForbidden(f"{label}: the SVG links a style sheet")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputUnreadable(f"{label}: not a well-formed SVG ({exc})") from exc
    if _local(root.tag) != "svg":
        raise UnsupportedInput(f"{label}: the XML document is not an SVG")
    for element in root.iter():
        for name, value in element.attrib.items():
            if _local(name) in ("href", "src"):
                if _forbidden_reference(value):
                    raise InputForbidden(f"{label}: the SVG references {value[:80]!r}")
                if value.strip().lower().startswith("data:"):
                    _check_embedded(value, label, limits, depth)
            for found in _CSS_URL.findall(value):
                if _forbidden_reference(found):
                    raise InputForbidden(f"{label}: the SVG references {found[:80]!r}")
        if _local(element.tag) == "style" and element.text:
            css = element.text
            if "@import" in css:
                raise InputForbidden(f"{label}: the SVG's style sheet imports another file")
            for found in _CSS_URL.findall(css):
                if _forbidden_reference(found):
                    raise InputForbidden(f"{label}: the SVG references {found[:80]!r}")
    return root


def _length(value: str | None) -> float | None:
    if value is None:
        return None
    match = _LENGTH.match(value)
    if match is None:
        return None  # percentages and font-relative units: the viewBox decides
    return float(match.group(1)) * _UNIT_PX[match.group(2)]


def svg_size(root: ET.Element) -> tuple[float, float]:
    """The SVG's own size in CSS pixels: width/height, else its viewBox, else 100 x 100."""
    width, height = _length(root.get("width")), _length(root.get("height"))
    box = [float(v) for v in re.split(r"[\s,]+", root.get("viewBox", "").strip()) if v]
    if len(box) == 4 and box[2] > 0 and box[3] > 0:
        aspect = box[2] / box[3]
        if width is None and height is None:
            width, height = box[2], box[3]
        elif width is None:
            width = height * aspect if height else None
        elif height is None:
            height = width / aspect
    if not width or not height:
        return 100.0, 100.0
    return width, height


def shown_size(
    spec: Overlay, natural: tuple[float, float], frame: tuple[int, int]
) -> tuple[int, int]:
    """The overlay's size in the frame: ``width`` or ``height`` as a fraction of the frame's,
    the other side following the picture's shape; neither: the picture's own pixels."""
    nw, nh = natural
    if spec.width is not None:
        w = spec.width * frame[0]
        h = w * nh / nw
    elif spec.height is not None:
        h = spec.height * frame[1]
        w = h * nw / nh
    else:
        w, h = nw, nh
    return max(1, round(w)), max(1, round(h))


def _raster(path: Path, label: str, limits: Limits) -> Image.Image:
    with BoundedReader(path) as handle:
        return _raster_from(handle, label, limits)


def _raster_from(handle: BoundedReader, label: str, limits: Limits) -> Image.Image:
    try:
        image = Image.open(handle)
    except Image.DecompressionBombError as exc:
        raise too_many_pixels(f"{label}: the picture", limits) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnsupportedInput(f"{label}: not a PNG, WebP, JPEG or SVG picture") from exc
    if image.format not in RASTER_FORMATS:
        raise UnsupportedInput(
            f"{label}: a {image.format} picture; overlays are PNG, WebP, JPEG or SVG"
        )
    check_side(label, *image.size, limits)
    try:
        image.load()  # the first frame of an animated PNG or WebP
        upright = ImageOps.exif_transpose(image)
        return upright.convert("RGBA")
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputUnreadable(f"{label}: corrupt or truncated picture ({exc})") from exc


def _svg(text: str, label: str, size: tuple[int, int]) -> Image.Image:
    import resvg_py

    try:
        png = resvg_py.svg_to_bytes(
            svg_string=text,
            width=size[0],
            height=size[1],
            skip_system_fonts=True,
            font_dirs=[str(fonts.fonts_dir())],
            font_family="Open Sans",
        )
        with Image.open(io.BytesIO(bytes(png))) as drawn:
            image = drawn.convert("RGBA")
    except (ValueError, OSError) as exc:
        raise InputUnreadable(f"{label}: the SVG cannot be drawn ({exc})") from exc
    if image.size != size:  # resvg keeps the aspect ratio; rounding may differ by a pixel
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def draw_overlay(
    spec: Overlay, label: str, path: Path, frame_w: int, frame_h: int, limits: Limits
) -> Picture:
    """Read, check and draw one overlay at its shown size, placed in the frame and cut to it."""
    if is_svg(_head(path, label, limits)):
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputUnreadable(f"{label}: the SVG is not UTF-8 text") from exc
        natural = svg_size(check_svg(text, label, limits))
        size = shown_size(spec, natural, (frame_w, frame_h))
        check_side(label, *size, limits)
        image = _svg(text, label, size)
    else:
        source = _raster(path, label, limits)
        size = shown_size(spec, source.size, (frame_w, frame_h))
        check_side(label, *size, limits)
        image = source if size == source.size else source.resize(size, Image.Resampling.LANCZOS)
    return place(image, spec, label, frame_w, frame_h)


def place(image: Image.Image, spec: Overlay, label: str, frame_w: int, frame_h: int) -> Picture:
    """Put the picture's anchor at (x, y) of the frame, on whole pixels, inside an RGBA canvas
    with even position and size (4:2:0 chroma), cut to the frame."""
    w, h = image.size
    fx, fy = spec.anchor.fractions
    left = math.floor(spec.x * frame_w - fx * w + 0.5)
    top = math.floor(spec.y * frame_h - fy * h + 0.5)
    if left >= frame_w or top >= frame_h or left + w <= 0 or top + h <= 0:
        raise InvalidJob(
            f"{label}: a {w}x{h} picture at x={spec.x}, y={spec.y} ({spec.anchor.value}) "
            f"lies entirely outside the {frame_w}x{frame_h} frame"
        )
    x0, y0 = max(0, left - left % 2), max(0, top - top % 2)
    x1 = min(frame_w, left + w + (left + w) % 2)
    y1 = min(frame_h, top + h + (top + h) % 2)
    canvas = Image.new("RGBA", (x1 - x0, y1 - y0), (0, 0, 0, 0))
    canvas.paste(image, (left - x0, top - y0))
    return Picture(canvas, x0, y0)


def overlay_layers(
    job: Job, resolve: Callable[[str, str], Path], limits: Limits, duration: float
) -> list[SpriteLayer]:
    """Every overlay of the job drawn and converted once, ready to blend; ``resolve`` turns
    (uri, label) into a local path, ``duration`` is the video's. Drawn for the job's first
    output: a rendition is drawn from the job made for it (:meth:`Job.for_output`)."""
    width, height = job.renditions[0].width, job.renditions[0].height
    layers: list[SpriteLayer] = []
    for i, spec in enumerate(job.overlays):
        label = f"overlays[{i}]"
        if spec.start >= duration:
            raise InvalidJob(
                f"{label}: starts at {spec.start:g} s, after the video ends ({duration:.3f} s)"
            )
        picture = draw_overlay(spec, label, resolve(spec.uri, label), width, height, limits)
        end = min(spec.end, duration) if spec.end is not None else duration
        sprite = to_yuv_sprite(picture.image, picture.x, picture.y)
        layers.append(
            SpriteLayer(label, sprite, spec.start, end, spec.animation, spec.opacity, height)
        )
    return layers
