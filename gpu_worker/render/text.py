"""Text overlays drawn once per job: shaping, wrapping, stroke, shadow and background into an
RGBA sprite whose bounds hold every pixel drawn (ascenders, descenders, stroke, shadow).

Shaping is Pillow with raqm (HarfBuzz + FriBiDi), so accents, apostrophes, Arabic and
Devanagari come out as a typesetter would set them.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import regex
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from gpu_worker.errors import GlyphMissing, TextOverflow
from gpu_worker.job import Align, Text, parse_color
from gpu_worker.render import fonts

# Scripts whose letters join or form conjuncts: spacing between their letters would break the
# shaping, so letter_spacing applies between words there (as CSS recommends).
_JOINING = regex.compile(
    r"[\p{Script=Arabic}\p{Script=Syriac}\p{Script=Nko}\p{Script=Mongolian}\p{Script=Devanagari}"
    r"\p{Script=Bengali}\p{Script=Gurmukhi}\p{Script=Gujarati}\p{Script=Oriya}\p{Script=Tamil}"
    r"\p{Script=Telugu}\p{Script=Kannada}\p{Script=Malayalam}\p{Script=Sinhala}\p{Script=Thai}"
    r"\p{Script=Khmer}\p{Script=Myanmar}\p{Script=Tibetan}]"
)
_CLUSTER = regex.compile(r"\X")


@dataclass(frozen=True)
class Box:
    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    def union(self, other: Box) -> Box:
        return Box(
            min(self.left, other.left),
            min(self.top, other.top),
            max(self.right, other.right),
            max(self.bottom, other.bottom),
        )

    def shift(self, dx: float, dy: float) -> Box:
        return Box(self.left + dx, self.top + dy, self.right + dx, self.bottom + dy)

    def grow(self, by: float) -> Box:
        return Box(self.left - by, self.top - by, self.right + by, self.bottom + by)


@dataclass(frozen=True)
class Sprite:
    """A drawn text: the RGBA image and where it goes in the frame when at rest."""

    image: Image.Image
    x: int  # top-left of the image in the frame
    y: int
    content: Box  # text, stroke and background in frame coordinates (the shadow may spill)


# Loaded faces by (file, size): bounded, since fonts fetched per job and job-chosen sizes
# would otherwise pile up in a worker that runs for weeks.
FONT_CACHE_SIZE = 32


@lru_cache(maxsize=FONT_CACHE_SIZE)
def _font(path: Path, size: float) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size=size, layout_engine=ImageFont.Layout.RAQM)


def font_path_for(text: Text, font_file: Path | None = None) -> Path:
    """The font file a text is drawn with: its fetched ``font_uri`` file, or the catalog's face."""
    if font_file is not None:
        return font_file
    assert text.font is not None  # the contract asks for one of font / font_uri
    return fonts.resolve(text.font, text.weight, text.italic).path


class _Shaper:
    """Measures and draws lines with one font and a letter spacing."""

    def __init__(self, font: ImageFont.FreeTypeFont, letter_spacing: float) -> None:
        self.font = font
        self.spacing = letter_spacing

    def _units(self, line: str) -> list[str]:
        if not self.spacing:
            return [line]
        if _JOINING.search(line):
            return regex.split(r"(\s+)", line)
        return _CLUSTER.findall(line)

    def width(self, line: str) -> float:
        units = [u for u in self._units(line) if u]
        if not units:
            return 0.0
        total = sum(self.font.getlength(u) for u in units)
        return total + self.spacing * (len(units) - 1)

    def ink(self, line: str, stroke: float) -> Box:
        """Ink bounds relative to the line's left end on its baseline."""
        box: Box | None = None
        x = 0.0
        for unit in self._units(line):
            if not unit:
                continue
            if unit.strip():
                b = self.font.getbbox(unit, anchor="ls", stroke_width=stroke)
                part = Box(b[0] + x, b[1], b[2] + x, b[3])
                box = part if box is None else box.union(part)
            x += self.font.getlength(unit) + self.spacing
        return box or Box(0, 0, 0, 0)

    def draw(
        self,
        draw: ImageDraw.ImageDraw,
        xy: tuple[float, float],
        line: str,
        fill: tuple[int, int, int, int] | int,
        stroke: float,
        stroke_fill: tuple[int, int, int, int] | int | None,
    ) -> None:
        x, y = xy
        for unit in self._units(line):
            if unit and unit.strip():
                draw.text(
                    (x, y),
                    unit,
                    font=self.font,
                    fill=fill,
                    anchor="ls",
                    stroke_width=stroke,
                    stroke_fill=stroke_fill,
                )
            if unit:
                x += self.font.getlength(unit) + self.spacing


def wrap(text: str, measure: Callable[[str], float], max_width: float) -> list[str]:
    """Greedy word wrap: each paragraph (split on newlines) into lines no wider than
    ``max_width`` where words allow; a single word wider than that keeps a line of its own."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        words = paragraph.split()
        if not words:
            lines.append("")
            continue
        current = words[0]
        for word in words[1:]:
            candidate = f"{current} {word}"
            if measure(candidate) <= max_width:
                current = candidate
            else:
                lines.append(current)
                current = word
        lines.append(current)
    return lines


def _check_glyphs(path: Path, text: str, label: str) -> None:
    missing = fonts.missing_glyphs(path, text)
    if missing:
        shown = " ".join(f"{c!r} (U+{ord(c):04X} {unicodedata.name(c, '?')})" for c in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise GlyphMissing(f"{label}: the font {path.stem} has no glyph for {shown}{more}")


def load_text_font(text: Text, path: Path) -> Path:
    """A text's own font file (its ``font_uri``, at ``path``): read with fontTools, then its
    words shaped and drawn at the text's size and stroke, so that a broken font fails now as
    ``input_unreadable``, naming it, and never in the middle of a render."""
    name = text.font_uri or path.name
    face = fonts.load_font_file(path, name)
    stroke = text.stroke.width if text.stroke else 0.0
    fonts.check_font(face.path, [(text.text, float(text.size), stroke)], name)
    return face.path


@dataclass(frozen=True)
class Layout:
    """A text set in lines and placed in the frame, not drawn yet.

    Block coordinates have (0, 0) at the top-left of the line block; the block's origin sits at
    (``left``, ``top``) in the frame and at (``ox``, ``oy``) in the sprite, whose top-left is
    (``sx``, ``sy``) in the frame (even) and whose size is ``width`` x ``height`` (even).
    """

    text: Text
    font_name: str  # how errors name the font: its font_uri, or its file's name
    shaper: _Shaper
    stroke: float
    lines: list[str]
    origins: list[tuple[float, float]]  # each line's left end on its baseline, block coords
    box: Box  # what the anchor positions (the block, or the background around it)
    left: float
    top: float
    placed: Box  # text, stroke and background in frame coordinates
    sx: int
    sy: int
    width: int
    height: int

    @property
    def ox(self) -> float:
        return self.left - self.sx

    @property
    def oy(self) -> float:
        return self.top - self.sy


def render_text(
    text: Text, index: int, frame_w: int, frame_h: int, font_file: Path | None = None
) -> Sprite:
    """Draw one text overlay and place it in a ``frame_w`` x ``frame_h`` frame."""
    return draw_layout(layout_text(text, f"texts[{index}]", frame_w, frame_h, font_file))


def layout_text(
    text: Text, label: str, frame_w: int, frame_h: int, font_file: Path | None = None
) -> Layout:
    """Shape, wrap and place ``text`` in a ``frame_w`` x ``frame_h`` frame (``label`` names
    it in errors: a missing glyph, or a text that would leave the frame)."""
    path = font_path_for(text, font_file)
    _check_glyphs(path, text.text, label)
    name = text.font_uri or path.name
    with fonts.freetype_errors(name):
        return _layout(text, label, frame_w, frame_h, path, name)


def _layout(text: Text, label: str, frame_w: int, frame_h: int, path: Path, name: str) -> Layout:
    font = _font(path, float(text.size))
    shaper = _Shaper(font, text.letter_spacing)
    stroke = text.stroke.width if text.stroke else 0.0
    stroke_px = math.ceil(stroke)

    lines = wrap(text.text, shaper.width, text.max_width * frame_w)
    widths = [shaper.width(line) for line in lines]
    ascent, descent = font.getmetrics()
    advance = text.size * text.line_spacing
    block_w = max(widths)
    block_h = ascent + descent + advance * (len(lines) - 1)

    # Layout in block coordinates: (0, 0) is the top-left of the line block.
    origins: list[tuple[float, float]] = []
    ink = Box(0, 0, block_w, block_h)
    for i, (line, width) in enumerate(zip(lines, widths, strict=True)):
        free = block_w - width
        x = 0.0 if text.align is Align.LEFT else free if text.align is Align.RIGHT else free / 2
        baseline = ascent + advance * i
        origins.append((x, baseline))
        if line.strip():
            ink = ink.union(shaper.ink(line, stroke).shift(x, baseline))
    layout = Box(0, 0, block_w, block_h)
    box = layout  # what the anchor positions
    content = ink
    if text.background:
        box = layout.grow(text.background.padding)
        content = content.union(box)
    drawn = content
    if text.shadow:
        spill = 3 * text.shadow.blur
        drawn = drawn.union(ink.shift(text.shadow.dx, text.shadow.dy).grow(spill))

    # Where the box goes in the frame.
    fx, fy = text.anchor.fractions
    left = text.x * frame_w - fx * box.width - box.left
    top = text.y * frame_h - fy * box.height - box.top
    placed = content.shift(left, top)
    if (
        placed.left < -0.5
        or placed.top < -0.5
        or placed.right > frame_w + 0.5
        or (placed.bottom > frame_h + 0.5)
    ):
        raise TextOverflow(
            f"{label} needs {math.ceil(content.width)}x{math.ceil(content.height)} px "
            f"at x={text.x}, y={text.y} ({text.anchor.value}) and would leave the "
            f"{frame_w}x{frame_h} frame: use a smaller size, a shorter text or another position"
        )

    # The sprite: drawn bounds plus a margin, its top-left on even frame coordinates.
    margin = 2 + stroke_px
    sx = math.floor(left + drawn.left) - margin
    sy = math.floor(top + drawn.top) - margin
    sx -= sx % 2
    sy -= sy % 2
    width = math.ceil(left + drawn.right) + margin - sx
    height = math.ceil(top + drawn.bottom) + margin - sy
    width += width % 2
    height += height % 2
    return Layout(
        text, name, shaper, stroke, lines, origins, box, left, top, placed, sx, sy, width, height
    )


def draw_layout(lay: Layout) -> Sprite:
    """Draw a laid-out text (background, shadow, stroke, fill) into its sprite."""
    with fonts.freetype_errors(lay.font_name):
        return _draw_layout(lay)


def _draw_layout(lay: Layout) -> Sprite:
    text, shaper, stroke = lay.text, lay.shaper, lay.stroke
    ox, oy = lay.ox, lay.oy  # block origin inside the sprite
    image = Image.new("RGBA", (lay.width, lay.height), (0, 0, 0, 0))
    if text.background:
        layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
        bg = lay.box.shift(ox, oy)
        ImageDraw.Draw(layer).rounded_rectangle(
            (bg.left, bg.top, bg.right, bg.bottom),
            radius=min(text.background.radius, bg.width / 2, bg.height / 2),
            fill=parse_color(text.background.color),
        )
        image = Image.alpha_composite(image, layer)
    if text.shadow:
        mask = Image.new("L", image.size, 0)
        mask_draw = ImageDraw.Draw(mask)
        for line, (x, baseline) in zip(lay.lines, lay.origins, strict=True):
            at = (x + ox + text.shadow.dx, baseline + oy + text.shadow.dy)
            shaper.draw(mask_draw, at, line, 255, stroke, 255)
        if text.shadow.blur > 0:
            mask = mask.filter(ImageFilter.GaussianBlur(text.shadow.blur / 2))
        r, g, b, a = parse_color(text.shadow.color)
        layer = Image.new("RGBA", image.size, (r, g, b, 0))
        layer.putalpha(mask.point(lambda v: v * a // 255))
        image = Image.alpha_composite(image, layer)
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    fill = parse_color(text.color)
    stroke_fill = parse_color(text.stroke.color) if text.stroke else None
    for line, (x, baseline) in zip(lay.lines, lay.origins, strict=True):
        shaper.draw(draw, (x + ox, baseline + oy), line, fill, stroke, stroke_fill)
    image = Image.alpha_composite(image, layer)
    return Sprite(image, lay.sx, lay.sy, lay.placed)


def wrap_text(text: Text, frame_w: int, font_file: Path | None = None) -> list[str]:
    """The lines ``text`` wraps into within its ``max_width`` of a ``frame_w`` wide frame."""
    path = font_path_for(text, font_file)
    with fonts.freetype_errors(text.font_uri or path.name):
        font = _font(path, float(text.size))
        return wrap(text.text, _Shaper(font, text.letter_spacing).width, text.max_width * frame_w)
