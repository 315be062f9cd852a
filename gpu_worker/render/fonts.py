"""Fonts: the bundled font catalog, family/weight/style matching, and checks on font files.

The worker ships a few families as static TTF files (see ``fonts/README.md`` in the repository,
installed as ``gpu_worker/_fonts`` in a wheel). This module finds that folder, reads its
``catalog.json``, resolves ``(family, weight, italic)`` to one face with the CSS Fonts level 4
matching rules, validates user-supplied font files (a job's ``font_uri``) and tells which
characters of a text a font cannot draw.

Two libraries read font data, and each one's errors on it become ours in one place:
fontTools in :func:`_open_font`, FreeType (through Pillow) in :func:`freetype_errors`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import regex
from PIL import ImageFont

import gpu_worker
from gpu_worker.errors import FontNotFound, InputNotFound, InputUnreadable
from gpu_worker.render.files import stat_input

if TYPE_CHECKING:
    from fontTools.ttLib import TTFont

__all__ = [
    "FontFace",
    "catalog",
    "check_font",
    "families",
    "fonts_dir",
    "freetype_errors",
    "load_font_file",
    "missing_glyphs",
    "nearest_weight",
    "resolve",
]

"""Environment variable that points the worker at another fonts folder (holding catalog.json)."""

CATALOG_FILE = "catalog.json"

# Unicode categories that never need a glyph of their own: controls (tab, newline), format
# characters (ZWJ, ZWNJ, soft hyphen, bidi marks) and separators (spaces, line/paragraph).
_NO_GLYPH_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
# Variation selectors are category Mn but only select a glyph variant of the character before.
_VARIATION_SELECTORS = (range(0xFE00, 0xFE10), range(0xE0100, 0xE01F0))

# sfnt version tags of the formats we accept: TrueType, OpenType/CFF, Apple TrueType.
_SFNT_TAGS = frozenset({b"\x00\x01\x00\x00", b"OTTO", b"true"})

# Style-name words that name a weight, longest first so "semibold" wins over "bold".
_WEIGHT_WORDS: tuple[tuple[str, int], ...] = (
    ("extralight", 200),
    ("ultralight", 200),
    ("extrabold", 800),
    ("ultrabold", 800),
    ("semibold", 600),
    ("demibold", 600),
    ("hairline", 100),
    ("regular", 400),
    ("medium", 500),
    ("normal", 400),
    ("black", 900),
    ("heavy", 900),
    ("light", 300),
    ("thin", 100),
    ("book", 400),
    ("bold", 700),
)


@dataclass(frozen=True)
class FontFace:
    """One face of a family: a weight in 100..900 and upright or italic, in one file."""

    family: str
    weight: int
    italic: bool
    path: Path


# --------------------------------------------------------------------------------------------
# the bundled catalog


_folder: Path | None = None  # set by use_fonts_dir() from the settings (GPU_WORKER_FONTS_DIR)


def use_fonts_dir(folder: Path | None) -> None:
    """Read the catalog from ``folder`` from now on (None: the bundled one)."""
    global _folder
    _folder = folder


def fonts_dir() -> Path:
    """The folder holding ``catalog.json`` and the bundled font files.

    The one given to :func:`use_fonts_dir` (``GPU_WORKER_FONTS_DIR``); else the copy a wheel
    installs as ``gpu_worker/_fonts``; else the repository's ``fonts/`` next to the package
    (a source checkout or editable install).
    """
    if _folder is not None:
        return _folder
    package_dir = Path(gpu_worker.__file__).parent
    packaged = package_dir / "_fonts"
    if packaged.is_dir():
        return packaged
    return package_dir.parent / "fonts"


@functools.cache
def _catalog_in(folder: Path) -> tuple[FontFace, ...]:
    catalog_path = folder / CATALOG_FILE
    try:
        entries: Any = json.loads(catalog_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FontNotFound(f"no font catalog at {catalog_path}") from exc
    faces = [
        FontFace(
            family=str(entry["family"]),
            weight=int(entry["weight"]),
            italic=bool(entry["italic"]),
            path=folder / str(entry["file"]),
        )
        for entry in entries
    ]
    faces.sort(key=lambda face: (face.family, face.italic, face.weight))
    return tuple(faces)


def catalog() -> list[FontFace]:
    """Every bundled face, sorted by family, then upright before italic, then weight."""
    return list(_catalog_in(fonts_dir()))


def families() -> list[str]:
    """The names of the bundled families, sorted."""
    return sorted({face.family for face in catalog()})


def _family_key(name: str) -> str:
    """Fold a family name for matching: case-insensitive, spaces/hyphens/underscores ignored."""
    return re.sub(r"[\s_\-]+", "", name).casefold()


def nearest_weight(available: Sequence[int], desired: int) -> int:
    """The weight the CSS Fonts level 4 matching algorithm picks from ``available``.

    * ``desired`` in 400..500: weights from ``desired`` up to 500 ascending, then weights below
      ``desired`` descending, then weights above 500 ascending;
    * ``desired`` below 400: weights at or below it descending, then weights above ascending;
    * ``desired`` above 500: weights at or above it ascending, then weights below descending.
    """
    weights = sorted(set(available))
    if not weights:
        raise ValueError("nearest_weight needs at least one available weight")
    if desired in weights:
        return desired
    below = [w for w in weights if w < desired]  # ascending: best candidate is the last
    above = [w for w in weights if w > desired]  # ascending: best candidate is the first
    if 400 <= desired <= 500:
        up_to_500 = [w for w in above if w <= 500]
        if up_to_500:
            return up_to_500[0]
        if below:
            return below[-1]
        return above[0]
    if desired < 400:
        return below[-1] if below else above[0]
    return above[0] if above else below[-1]


def resolve(family: str, weight: int = 400, italic: bool = False) -> FontFace:
    """The bundled face closest to ``(family, weight, italic)``.

    The family matches case-insensitively, ignoring spaces, hyphens and underscores. A missing
    weight falls back per :func:`nearest_weight`; a missing style (italic asked, none bundled, or
    the reverse) falls back to the faces of the other style.
    """
    if not 1 <= weight <= 1000:
        raise ValueError(f"font weight must be within 1..1000, got {weight}")
    key = _family_key(family)
    faces = [face for face in catalog() if _family_key(face.family) == key]
    if not faces:
        raise FontNotFound(
            f"font family {family!r} is not bundled; available: {', '.join(families())}"
        )
    same_style = [face for face in faces if face.italic == italic]
    candidates = same_style or faces
    chosen = nearest_weight([face.weight for face in candidates], weight)
    return next(face for face in candidates if face.weight == chosen)


# --------------------------------------------------------------------------------------------
# reading font files


def _weight_from_style_name(style: str) -> int | None:
    folded = _family_key(style)
    for word, value in _WEIGHT_WORDS:
        if word in folded:
            return value
    return None


def _stat_weight(font: TTFont) -> int | None:
    """The single ``wght`` value the STAT table gives this face, if it gives exactly one."""
    if "STAT" not in font:
        return None
    table = font["STAT"].table
    axes = table.DesignAxisRecord.Axis if table.DesignAxisRecord else []
    wght = [i for i, axis in enumerate(axes) if axis.AxisTag == "wght"]
    if not wght or not table.AxisValueArray:
        return None
    values: set[float] = set()
    for record in table.AxisValueArray.AxisValue:
        if record.Format == 4:
            values.update(r.Value for r in record.AxisValueRecord if r.AxisIndex == wght[0])
        elif record.AxisIndex == wght[0]:
            values.add(record.NominalValue if record.Format == 2 else record.Value)
    return round(values.pop()) if len(values) == 1 else None


def _read_weight(font: TTFont, style_name: str) -> int:
    """The face's CSS weight (100..900).

    OS/2 ``usWeightClass`` when it is a multiple of 100. Some families write 250 for Thin and
    ExtraLight (a Windows GDI work-around, e.g. Roboto and Montserrat); then the STAT table's
    own weight, else the weight word in the style name, else the class rounded to 100.
    """
    weight_class = int(font["OS/2"].usWeightClass) if "OS/2" in font else 0
    if 1 <= weight_class <= 9:  # the old 1..9 scale
        weight_class *= 100
    if weight_class and weight_class % 100 == 0 and 100 <= weight_class <= 900:
        return weight_class
    stat = _stat_weight(font)
    if stat is not None and stat % 100 == 0 and 100 <= stat <= 900:
        return stat
    named = _weight_from_style_name(style_name)
    if named is not None:
        return named
    if weight_class:
        return min(900, max(100, round(weight_class / 100) * 100))
    return 400


def _read_italic(font: TTFont) -> bool:
    if "OS/2" in font and int(font["OS/2"].fsSelection) & (1 | 1 << 9):  # ITALIC or OBLIQUE
        return True
    return bool(int(font["head"].macStyle) & 2)


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _not_a_font(name: str, why: str) -> InputUnreadable:
    return InputUnreadable(f"font {name}: not a TrueType/OpenType font ({why})")


def _open_font(path: Path, name: str | None = None) -> TTFont:
    """Open ``path`` with fontTools, turning every way it can be wrong into our errors (which
    call the font ``name``, by default its file name)."""
    from fontTools.ttLib import TTFont  # read only for a font file, not the bundled catalog

    name = name or path.name
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
            size = os.fstat(handle.fileno()).st_size
    except FileNotFoundError as exc:
        raise InputNotFound(f"font {name}: no such file") from exc
    except IsADirectoryError as exc:
        raise _not_a_font(name, "it is a directory") from exc
    except OSError as exc:
        raise InputUnreadable(f"font {name}: cannot be read ({exc.strerror})") from exc
    if size == 0:
        raise _not_a_font(name, "the file is empty")
    if head == b"ttcf":
        raise _not_a_font(name, "a font collection; give a single TTF/OTF file")
    if head in (b"wOFF", b"wOF2"):
        raise _not_a_font(name, "a WOFF web font; convert it to TTF/OTF")
    if head not in _SFNT_TAGS:
        raise _not_a_font(name, "unknown file signature")
    try:
        font = TTFont(path, lazy=True)
    except Exception as exc:  # fontTools raises many kinds of errors on corrupt input
        raise _not_a_font(name, _describe(exc)) from exc
    try:
        for tag, entry in font.reader.tables.items():
            if entry.offset + entry.length > size:
                raise _not_a_font(name, f"truncated: table {tag.strip()!r} ends past the file")
        required = ("head", "name", "cmap", "maxp", "hhea", "hmtx")
        missing = [tag for tag in required if tag not in font]
        if "glyf" not in font and "CFF " not in font and "CFF2" not in font:
            missing.append("glyf/CFF")
        if missing:
            raise _not_a_font(name, f"missing tables: {', '.join(missing)}")
        for tag in ("head", "maxp", "name", "cmap", "hhea", "hmtx", "OS/2", "STAT"):
            if tag in font:
                _ = font[tag]  # decompile now, so that a broken table fails here
    except InputUnreadable:
        font.close()
        raise
    except Exception as exc:
        font.close()
        raise _not_a_font(name, _describe(exc)) from exc
    return font


def load_font_file(path: Path, name: str | None = None) -> FontFace:
    """Validate a user-supplied TTF/OTF file and read its family, weight and style.

    Raises :class:`InputNotFound` when the file does not exist and :class:`InputUnreadable` when
    it is not a loadable TrueType/OpenType font (text, empty, truncated, WOFF, collection);
    their messages call the font ``name`` (the job's URI for it), by default its file name.
    """
    path = Path(path)
    name = name or path.name
    font = _open_font(path, name)
    try:
        names = font["name"]
        family = next(
            (n for n in (names.getDebugName(16), names.getDebugName(1)) if n and n.strip()),
            path.stem,
        ).strip()
        style = names.getDebugName(17) or names.getDebugName(2) or ""
        return FontFace(
            family=family,
            weight=_read_weight(font, style),
            italic=_read_italic(font),
            path=path,
        )
    except Exception as exc:  # a table that decompiled but holds nonsense
        raise _not_a_font(name, _describe(exc)) from exc
    finally:
        font.close()


@functools.lru_cache(maxsize=64)
def _codepoints(path: str, _mtime_ns: int, _size: int) -> frozenset[int]:
    font = _open_font(Path(path))
    try:
        cmap = font.getBestCmap()
        if cmap is None:
            raise _not_a_font(Path(path).name, "no Unicode character map")
        return frozenset(cmap)
    finally:
        font.close()


def _needs_glyph(char: str) -> bool:
    if unicodedata.category(char) in _NO_GLYPH_CATEGORIES:
        return False
    code = ord(char)
    return not any(code in selectors for selectors in _VARIATION_SELECTORS)


def missing_glyphs(path: Path, text: str) -> list[str]:
    """The characters of ``text`` the font at ``path`` has no glyph for.

    In order of first appearance, each once. Characters that need no glyph (spaces, newlines,
    controls, format characters such as ZWJ or the soft hyphen, variation selectors) are ignored.
    The font's character map is cached per file (path, modification time and size).
    """
    path = Path(path)
    stat = stat_input(path, f"font {path.name}")
    mapped = _codepoints(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    missing: dict[str, None] = {}
    for char in text:
        if char not in missing and ord(char) not in mapped and _needs_glyph(char):
            missing[char] = None
    return list(missing)


# --------------------------------------------------------------------------------------------
# drawing with FreeType

_CLUSTER = regex.compile(r"\X")
# How wide a piece of text the check draws at once, in pixels at its size: bounds the mask.
_CHECK_SPAN_PX = 4096


@contextmanager
def freetype_errors(name: str) -> Iterator[None]:
    """FreeType failing on a font's data (through Pillow), as ``input_unreadable`` naming it.

    FreeType reports a broken font (a hinting program that fails, an outline or table it
    cannot read) as an ``OSError`` without an ``errno``; an ``OSError`` with one (disk full,
    out of file handles) and ``MemoryError`` are faults of the worker and pass through.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno is not None:
            raise
        raise InputUnreadable(
            f"font {name}: FreeType cannot draw with it ({_describe(exc)})"
        ) from exc


def _pieces(text: str, size: float) -> Iterator[str]:
    """Each distinct word of ``text`` once, cut into spans of a bounded width at ``size``."""
    span = max(1, int(_CHECK_SPAN_PX // max(size, 1.0)))
    for word in dict.fromkeys(text.split()):
        clusters = _CLUSTER.findall(word)
        for start in range(0, len(clusters), span):
            yield "".join(clusters[start : start + span])


def check_font(path: Path, samples: Iterable[tuple[str, float, float]], name: str) -> None:
    """Shape and draw each ``(text, size, stroke width)`` with the font at ``path``, hinting
    included, as the render will: a font whose data FreeType cannot use fails here, with
    ``input_unreadable`` naming it (``name``), before any frame is decoded.

    Each distinct word is drawn once per size; a very long word in bounded spans.
    """
    path = Path(path)
    for text, size, stroke in samples:
        with freetype_errors(name):
            font = ImageFont.truetype(str(path), size=size, layout_engine=ImageFont.Layout.RAQM)
            for piece in _pieces(text, size):
                font.getlength(piece)
                font.getmask2(piece, mode="L", stroke_width=stroke, anchor="ls")
