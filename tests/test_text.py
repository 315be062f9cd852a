"""Text sprites: shaping, wrapping, nothing clipped, clear errors for what cannot be drawn."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gpu_worker.errors import FontNotFound, GlyphMissing, TextOverflow
from gpu_worker.job import Text
from gpu_worker.render.text import Sprite, render_text, wrap

W, H = 1080, 1920


def text(**kw: Any) -> Text:
    kw.setdefault("text", "Bienvenue")
    kw.setdefault("font", "Montserrat")
    kw.setdefault("size", 64)
    return Text.model_validate(kw)


def draw(**kw: Any) -> Sprite:
    return render_text(text(**kw), 0, W, H)


def alpha(sprite: Sprite) -> np.ndarray:
    return np.asarray(sprite.image)[..., 3]


def ink_lines(sprite: Sprite) -> int:
    """How many separate bands of rows hold ink."""
    rows = alpha(sprite).max(axis=1) > 0
    return int(np.sum(rows[1:] & ~rows[:-1]) + rows[0])


def test_sprite_border_is_empty_so_nothing_is_clipped() -> None:
    # Descenders, ascenders, accents on capitals, italic overhang, stroke and shadow.
    sprite = draw(
        text="Ÿgjpq Ÿ fÉ Îlot",
        font="Playfair Display",
        italic=True,
        size=120,
        stroke={"width": 6, "color": "#000000"},
        shadow={"dx": 12, "dy": 18, "blur": 10},
    )
    a = alpha(sprite)
    assert a.max() == 255
    assert a[0].max() == a[-1].max() == a[:, 0].max() == a[:, -1].max() == 0


def test_sprite_on_even_coordinates_with_even_size() -> None:
    sprite = draw(x=0.37, y=0.41)
    assert sprite.x % 2 == sprite.y % 2 == 0
    assert sprite.image.width % 2 == sprite.image.height % 2 == 0


def test_wraps_to_max_width() -> None:
    long = "Piscine chauffée, vue sur la mer et petit-déjeuner fait maison inclus"
    one = draw(text="Piscine", max_width=0.5)
    many = draw(text=long, max_width=0.5)
    assert ink_lines(one) == 1 and ink_lines(many) >= 3
    assert many.content.width <= 0.5 * W + 2


def test_explicit_newlines_are_kept() -> None:
    assert ink_lines(draw(text="Un\nDeux\nTrois")) == 3


@pytest.mark.parametrize(
    ("words", "limit", "expected"),
    [
        ("a b c", 3, ["a b", "c"]),
        ("a b c", 100, ["a b c"]),
        ("longword b", 3, ["longword", "b"]),
        ("a\n\nb", 100, ["a", "", "b"]),
        ("  spaced   out  ", 100, ["spaced out"]),
    ],
)
def test_wrap_table(words: str, limit: float, expected: list[str]) -> None:
    assert wrap(words, len, limit) == expected


@pytest.mark.parametrize("align", ["left", "center", "right"])
def test_alignment(align: str) -> None:
    sprite = draw(text="Une ligne bien plus longue\ncourte", align=align, max_width=1.0)
    a = alpha(sprite)
    rows = np.nonzero(a.max(axis=1))[0]
    second = a[rows[-1] - 5]  # a row in the short second line
    cols = np.nonzero(second)[0]
    first_cols = np.nonzero(a[rows[0] + 20])[0]
    left_gap = cols.min() - first_cols.min()
    right_gap = first_cols.max() - cols.max()
    if align == "left":
        assert left_gap < 10 < right_gap
    elif align == "right":
        assert right_gap < 10 < left_gap
    else:
        assert abs(left_gap - right_gap) < 12


def test_letter_and_line_spacing_widen_and_heighten() -> None:
    plain = draw(text="ESPACE")
    spaced = draw(text="ESPACE", letter_spacing=20)
    # Clusters drawn one by one lose a few pixels of kerning, no more.
    assert spaced.content.width == pytest.approx(plain.content.width + 5 * 20, abs=6)
    tight = draw(text="A\nB", line_spacing=1.0)
    loose = draw(text="A\nB", line_spacing=2.0)
    assert loose.content.height == pytest.approx(tight.content.height + 64, abs=3)


def test_stroke_shadow_background_grow_the_sprite() -> None:
    plain = draw()
    stroked = draw(stroke={"width": 8})
    assert stroked.content.width >= plain.content.width + 15
    shadowed = draw(shadow={"dx": 30, "dy": 30, "blur": 0})
    assert shadowed.image.width >= plain.image.width + 28
    boxed = draw(background={"color": "#000000FF", "padding": 40, "radius": 20})
    a = alpha(boxed)
    assert boxed.content.width == pytest.approx(plain.content.width + 80, abs=4)
    # Rounded corners: the box's corner pixel is transparent, its edge middle is opaque.
    ys, xs = np.nonzero(a == 255)
    assert a[ys.min(), xs.min()] == 0 or a[ys.min() + 1, xs.min() + 1] < 255
    assert a[(ys.min() + ys.max()) // 2, xs.min()] == 255


def test_colour_with_alpha() -> None:
    sprite = draw(color="#FF000080")
    rgba = np.asarray(sprite.image)
    assert rgba[..., 3].max() == pytest.approx(128, abs=2)
    assert rgba[rgba[..., 3] > 100][:, 0].min() > 240


@pytest.mark.parametrize(
    ("font", "sample"),
    [
        ("Montserrat", "Là-bas, l’été « chez Zoë » : c’est déjà Noël !"),
        ("Open Sans", "Ελληνικά και кириллица"),
    ],
)
def test_french_and_other_latin_greek_cyrillic(font: str, sample: str) -> None:
    assert alpha(draw(text=sample, font=font, size=40, max_width=1.0)).max() == 255


def test_apostrophes_and_quotes_are_just_text() -> None:
    # An apostrophe or quote never breaks anything (no shell, no filter escaping).
    sprite = draw(text="L'hôtel \"chez l'ami\" \\ : % {x} ' ;")
    assert alpha(sprite).max() == 255


def test_arabic_and_devanagari_need_a_font_that_has_them(tmp_path: Any) -> None:
    with pytest.raises(GlyphMissing) as err:
        draw(text="مرحبا بكم", font="Roboto")
    assert err.value.code == "glyph_missing" and "U+0645" in str(err.value)
    with pytest.raises(GlyphMissing):
        draw(text="नमस्ते", font="Open Sans")


def test_emoji_missing_is_named() -> None:
    with pytest.raises(GlyphMissing) as err:
        draw(text="Piscine 🏊")
    assert "U+1F3CA" in str(err.value)


def test_unknown_family() -> None:
    with pytest.raises(FontNotFound) as err:
        draw(font="Comic Sans")
    assert "Montserrat" in str(err.value) and err.value.code == "font_not_found"


@pytest.mark.parametrize(
    "kw",
    [
        {"size": 600, "text": "IMPOSSIBLE"},
        {"size": 200, "text": "\n".join(["ligne"] * 12)},
        {"x": 1.0, "anchor": "left", "text": "Débordement"},
        {"y": 0.0, "anchor": "center"},
    ],
)
def test_text_that_cannot_fit_is_an_error(kw: dict[str, Any]) -> None:
    with pytest.raises(TextOverflow) as err:
        draw(**kw)
    assert err.value.code == "text_overflow" and "1080x1920" in str(err.value)


@pytest.mark.parametrize(
    ("anchor", "x", "y"),
    [("top-left", 0, 0), ("bottom-right", 1, 1), ("top-right", 1, 0), ("bottom-left", 0, 1)],
)
def test_corner_anchors_touch_their_corner(anchor: str, x: float, y: float) -> None:
    sprite = draw(anchor=anchor, x=x, y=y, size=40, text="Coin")
    box = sprite.content
    assert box.left >= -0.5 and box.top >= -0.5 and box.right <= W + 0.5 and box.bottom <= H + 0.5
    near_x = box.left if x == 0 else W - box.right
    near_y = box.top if y == 0 else H - box.bottom
    assert near_x < 12 and near_y < 25


FONTS = __import__("pathlib").Path(__file__).parent / "fonts"
ARABIC = FONTS / "NotoSansArabic_400Regular.ttf"
DEVANAGARI = FONTS / "NotoSansDevanagari_400Regular.ttf"


def draw_with(font_file: Any, sample: str) -> Sprite:
    spec = Text.model_validate({"text": sample, "font_uri": str(font_file), "size": 80})
    return render_text(spec, 0, W, H, font_file)


def test_arabic_is_joined_and_right_to_left() -> None:
    # Joined (initial/medial/final) forms are narrower than four isolated letters.
    joined = draw_with(ARABIC, "بببب").content.width
    isolated = draw_with(ARABIC, "ب").content.width
    assert joined < 3.2 * isolated
    # Alef (tall) then beh (low): read right to left, the alef stands on the right.
    a = alpha(draw_with(ARABIC, "اب"))
    cols = np.nonzero(a.max(axis=0))[0]
    rows = np.nonzero(a.max(axis=1))[0]
    top_half = a[rows.min() : rows.min() + (rows.max() - rows.min()) // 4]  # alef's top
    third = (cols.max() - cols.min()) // 3
    right_top = top_half[:, cols.max() - third : cols.max() + 1].max()
    left_top = top_half[:, cols.min() : cols.min() + third].max()
    assert right_top > 200 and left_top < 50


def test_devanagari_conjuncts_are_formed() -> None:
    # क + ् + ष forms the conjunct क्ष, narrower than the two letters side by side.
    conjunct = draw_with(DEVANAGARI, "क्ष").content.width
    apart = draw_with(DEVANAGARI, "क").content.width + draw_with(DEVANAGARI, "ष").content.width
    assert conjunct < 0.85 * apart


def test_font_uri_files_are_checked(tmp_path: Any) -> None:
    from gpu_worker.errors import InputNotFound, InputUnreadable
    from gpu_worker.render.fonts import load_font_file

    bogus = tmp_path / "evil.ttf"
    bogus.write_text("not a font")
    with pytest.raises(InputUnreadable):
        load_font_file(bogus)
    with pytest.raises(InputNotFound):
        load_font_file(tmp_path / "missing.ttf")
    assert load_font_file(ARABIC).family == "Noto Sans Arabic"
