"""Captions as a layer: cues laid out once per job, each page drawn once when first shown,
and for ``word_highlight`` the word being said drawn again in the highlight colour as its own
small sprite over the line (never the whole line per frame).

A cue wraps within ``max_width``; one that needs more than ``max_lines`` lines is shown page
by page, each page from its first word's time. Word times are the cue's own, or else the
cue's time spread over its words by their length. Cues that overlap end when the next
begins. Pages are laid out (shaped, wrapped, placed, checked) up front, so a caption that
cannot be drawn fails before any frame is encoded; they are drawn lazily and only the page on
screen is kept, so memory stays flat however many cues a video has.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from gpu_worker.job import Captions, CaptionStyle, Cue, Text, parse_color
from gpu_worker.render import fonts
from gpu_worker.render.composite import U8, YuvSprite, blend_sprite, to_yuv_sprite
from gpu_worker.render.text import Layout, draw_layout, layout_text, wrap_text

_EPS = 1e-9


@dataclass(frozen=True)
class PlacedWord:
    """A word of a page: when it is said, and where it starts on its line (block coords)."""

    start: float
    end: float
    line: int
    x: float  # from the line's left end
    text: str


@dataclass(frozen=True)
class Page:
    """What is on screen from ``start`` to ``end``: up to ``max_lines`` lines of one cue."""

    start: float
    end: float
    layout: Layout
    words: list[PlacedWord]


@dataclass
class _Drawn:
    index: int
    base: YuvSprite
    words: dict[int, YuvSprite] = field(default_factory=dict)


def word_times(cue: Cue) -> list[tuple[float, float]]:
    """Each word's (start, end): the cue's word timings, or its time shared by word length."""
    if cue.words is not None:
        return [(w.start, w.end) for w in cue.words]
    tokens = cue.text.split()
    total = sum(len(t) for t in tokens)
    times, at = [], cue.start
    for token in tokens:
        end = at + (cue.end - cue.start) * len(token) / total
        times.append((at, end))
        at = end
    times[-1] = (times[-1][0], cue.end)
    return times


def load_caption_font(spec: Captions, cues: list[Cue], path: Path) -> Path:
    """The captions' own font file (``font_uri``, at ``path``): read, then every cue's words
    shaped and drawn at the captions' size and stroke, so that a broken font fails before any
    frame is decoded (``input_unreadable``), never when a cue first shows."""
    name = spec.font_uri or path.name
    face = fonts.load_font_file(path, name)
    stroke = spec.stroke.width if spec.stroke else 0.0
    text = " ".join(cue.text for cue in cues)
    fonts.check_font(face.path, [(text, float(spec.size), stroke)], name)
    return face.path


def _style(spec: Captions, text: str) -> Text:
    return Text(
        text=text,
        font=spec.font,
        font_uri=spec.font_uri,
        weight=spec.weight,
        italic=spec.italic,
        size=spec.size,
        color=spec.color,
        x=spec.x,
        y=spec.y,
        anchor=spec.anchor,
        max_width=spec.max_width,
        align=spec.align,
        line_spacing=spec.line_spacing,
        stroke=spec.stroke,
        shadow=spec.shadow,
        background=spec.background,
    )


def _pages(
    spec: Captions,
    cue: Cue,
    end: float,
    label: str,
    frame: tuple[int, int],
    font_file: Path | None,
) -> list[Page]:
    """One cue (shown until ``end``) as pages of at most ``max_lines`` lines, laid out."""
    times = word_times(cue)
    lines = [line for line in wrap_text(_style(spec, cue.text), frame[0], font_file) if line]
    chunks = [lines[i : i + spec.max_lines] for i in range(0, len(lines), spec.max_lines)]
    pages: list[Page] = []
    first_word = 0
    starts: list[float] = []
    layouts: list[Layout] = []
    words: list[list[PlacedWord]] = []
    for chunk in chunks:
        lay = layout_text(_style(spec, "\n".join(chunk)), label, frame[0], frame[1], font_file)
        placed: list[PlacedWord] = []
        n = first_word
        for li, line in enumerate(lay.lines):
            tokens = line.split()
            for j, token in enumerate(tokens):
                x = lay.shaper.width(" ".join(tokens[:j]) + " ") if j else 0.0
                placed.append(PlacedWord(times[n][0], times[n][1], li, x, token))
                n += 1
        starts.append(times[first_word][0] if starts else cue.start)
        layouts.append(lay)
        words.append(placed)
        first_word = n
    for k, lay in enumerate(layouts):
        page_end = min(starts[k + 1], end) if k + 1 < len(starts) else end
        if page_end > starts[k] + _EPS:
            pages.append(Page(starts[k], page_end, lay, words[k]))
    return pages


class CaptionLayer:
    """Every caption page of a job, shown one at a time (a :class:`Drawable`)."""

    label = "captions"

    def __init__(self, pages: list[Page], highlight: str | None) -> None:
        self.pages = pages
        self.starts = [p.start for p in pages]
        self.highlight = parse_color(highlight) if highlight is not None else None
        self._drawn: _Drawn | None = None
        self.draws = 0  # pages drawn so far (each page once while time moves forward)

    def page_at(self, t: float) -> int | None:
        i = bisect.bisect_right(self.starts, t + _EPS) - 1
        if i < 0 or t >= self.pages[i].end - _EPS:
            return None
        return i

    def word_at(self, page: Page, t: float) -> int | None:
        """The word being said at ``t`` on ``page``, if any."""
        for k, word in enumerate(page.words):
            if word.start - _EPS <= t < word.end - _EPS:
                return k
        return None

    def visibility(self, t: float) -> float:
        return 0.0 if self.page_at(t) is None else 1.0

    def _page_sprite(self, i: int) -> _Drawn:
        if self._drawn is None or self._drawn.index != i:
            sprite = draw_layout(self.pages[i].layout)
            self._drawn = _Drawn(i, to_yuv_sprite(sprite.image, sprite.x, sprite.y))
            self.draws += 1
        return self._drawn

    def _word_sprite(self, drawn: _Drawn, k: int) -> YuvSprite:
        if k not in drawn.words:
            assert self.highlight is not None
            page = self.pages[drawn.index]
            drawn.words[k] = _draw_word(page.layout, page.words[k], self.highlight)
        return drawn.words[k]

    def draw(self, planes: tuple[U8, U8, U8], t: float) -> None:
        i = self.page_at(t)
        if i is None:
            return
        drawn = self._page_sprite(i)
        blend_sprite(planes, drawn.base, 1.0)
        if self.highlight is not None:
            k = self.word_at(self.pages[i], t)
            if k is not None:
                blend_sprite(planes, self._word_sprite(drawn, k), 1.0)


def _draw_word(lay: Layout, word: PlacedWord, color: tuple[int, int, int, int]) -> YuvSprite:
    """``word`` alone in ``color`` (with the text's stroke), exactly over its place in the line."""
    line_x, baseline = lay.origins[word.line]
    fx = lay.left + line_x + word.x  # the word's left end on its baseline, in the frame
    fy = lay.top + baseline
    ink = lay.shaper.ink(word.text, lay.stroke)
    margin = 2 + math.ceil(lay.stroke)
    sx = math.floor(fx + ink.left) - margin
    sy = math.floor(fy + ink.top) - margin
    sx -= sx % 2
    sy -= sy % 2
    width = math.ceil(fx + ink.right) + margin - sx
    height = math.ceil(fy + ink.bottom) + margin - sy
    image = Image.new("RGBA", (width + width % 2, height + height % 2), (0, 0, 0, 0))
    stroke = lay.text.stroke
    stroke_fill = parse_color(stroke.color) if stroke else None
    with fonts.freetype_errors(lay.font_name):
        lay.shaper.draw(
            ImageDraw.Draw(image), (fx - sx, fy - sy), word.text, color, lay.stroke, stroke_fill
        )
    return to_yuv_sprite(image, sx, sy)


def caption_layer(
    spec: Captions,
    cues: list[Cue],
    frame_w: int,
    frame_h: int,
    duration: float,
    font_file: Path | None = None,
    labels: list[str] | None = None,
) -> CaptionLayer:
    """The job's captions laid out for a ``frame_w`` x ``frame_h`` video of ``duration``
    seconds; cues after the end are dropped, ``labels`` name each cue in errors."""
    order = sorted(range(len(cues)), key=lambda i: cues[i].start)
    pages: list[Page] = []
    for rank, i in enumerate(order):
        cue = cues[i]
        if cue.start >= duration - _EPS:
            continue
        end = min(cue.end, duration)
        if rank + 1 < len(order):
            end = min(end, cues[order[rank + 1]].start)
        if end <= cue.start + _EPS:
            continue
        label = labels[i] if labels else f"captions.cues[{i}]"
        pages += _pages(spec, cue, end, label, (frame_w, frame_h), font_file)
    highlight = spec.highlight_color if spec.style is CaptionStyle.WORD_HIGHLIGHT else None
    return CaptionLayer(pages, highlight)
