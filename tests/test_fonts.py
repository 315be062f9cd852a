"""Tests of the bundled fonts (fonts/) and of gpu_worker.render.fonts."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont
from PIL import ImageFont

import gpu_worker
from gpu_worker.errors import FontNotFound, InputNotFound, InputUnreadable
from gpu_worker.render import fonts
from gpu_worker.render.fonts import FontFace, nearest_weight

EXPECTED_FACES = {
    # family: (weights, has italics)
    "Montserrat": ((100, 200, 300, 400, 500, 600, 700, 800, 900), True),
    "Open Sans": ((300, 400, 500, 600, 700, 800), True),
    "Playfair Display": ((400, 500, 600, 700, 800, 900), True),
    "Roboto": ((100, 200, 300, 400, 500, 600, 700, 800, 900), True),
}


@pytest.fixture(autouse=True)
def _bundled_fonts() -> Iterator[None]:
    """Every test sees the repository's fonts/ unless it points elsewhere itself."""
    fonts.use_fonts_dir(None)
    yield
    fonts.use_fonts_dir(None)


def _catalog_json() -> list[dict[str, object]]:
    data: list[dict[str, object]] = json.loads(
        (fonts.fonts_dir() / "catalog.json").read_text(encoding="utf-8")
    )
    return data


def _montserrat(weight: int = 400, italic: bool = False) -> Path:
    face = fonts.resolve("Montserrat", weight, italic)
    assert (face.weight, face.italic) == (weight, italic)
    return face.path


# --------------------------------------------------------------------------------------------
# the bundle


def test_fonts_dir_is_the_repository_folder() -> None:
    assert fonts.fonts_dir() == Path(__file__).resolve().parent.parent / "fonts"
    assert (fonts.fonts_dir() / "catalog.json").is_file()


def test_catalog_has_the_four_families() -> None:
    assert fonts.families() == sorted(EXPECTED_FACES)


@pytest.mark.parametrize("family", sorted(EXPECTED_FACES))
def test_every_static_weight_and_italic_is_bundled(family: str) -> None:
    weights, has_italic = EXPECTED_FACES[family]
    faces = [face for face in fonts.catalog() if face.family == family]
    upright = [face.weight for face in faces if not face.italic]
    italic = [face.weight for face in faces if face.italic]
    assert upright == list(weights)
    assert italic == (list(weights) if has_italic else [])
    assert len(faces) == len(weights) * (2 if has_italic else 1)


def test_face_counts() -> None:
    counts = Counter(face.family for face in fonts.catalog())
    assert counts == {"Montserrat": 18, "Open Sans": 12, "Playfair Display": 12, "Roboto": 18}


def test_catalog_is_sorted_by_family_style_weight() -> None:
    faces = fonts.catalog()
    assert faces == sorted(faces, key=lambda f: (f.family, f.italic, f.weight))
    assert len(set(faces)) == len(faces)


def test_catalog_returns_a_fresh_list() -> None:
    first = fonts.catalog()
    first.clear()
    assert len(fonts.catalog()) == 60


@pytest.mark.parametrize("face", fonts.catalog(), ids=lambda f: f.path.name)
def test_every_file_exists_and_opens_with_pillow(face: FontFace) -> None:
    assert face.path.is_file()
    assert face.path.is_relative_to(fonts.fonts_dir())
    font = ImageFont.truetype(str(face.path), 32)
    family, style = font.getname()
    assert family == face.family
    assert ("Italic" in (style or "")) == face.italic
    left, top, right, bottom = font.getbbox("Hamburgefonstiv")
    assert right - left > 100 and bottom - top > 10


@pytest.mark.parametrize("face", fonts.catalog(), ids=lambda f: f.path.name)
def test_catalog_agrees_with_the_file_and_its_name(face: FontFace) -> None:
    read = fonts.load_font_file(face.path)
    assert (read.family, read.weight, read.italic) == (face.family, face.weight, face.italic)
    # Montserrat_700Bold_Italic.ttf
    stem = face.path.stem
    assert stem.endswith("_Italic") == face.italic
    assert stem.split("_")[1][:3] == str(face.weight)
    with TTFont(face.path, lazy=True) as font:
        assert "fvar" not in font, "variable fonts must not be bundled"


def test_catalog_json_entries() -> None:
    entries = _catalog_json()
    assert len(entries) == 60
    for entry in entries:
        assert set(entry) == {"family", "weight", "italic", "file", "licence", "source"}
        assert str(entry["source"]).startswith("@expo-google-fonts/")
        assert (fonts.fonts_dir() / str(entry["file"])).is_file()
        licence = fonts.fonts_dir() / str(entry["licence"])
        assert licence.parent == (fonts.fonts_dir() / str(entry["file"])).parent


@pytest.mark.parametrize("family", sorted(EXPECTED_FACES))
def test_a_licence_file_per_family(family: str) -> None:
    folder = fonts.fonts_dir() / family.replace(" ", "")
    licence = folder / "OFL.txt"
    assert licence.is_file()
    text = licence.read_text(encoding="utf-8")
    assert "SIL Open Font License" in text
    assert "Copyright" in text.splitlines()[0]


def test_the_bundle_has_only_the_catalogued_files() -> None:
    root = fonts.fonts_dir()
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*.ttf")}
    assert on_disk == {str(e["file"]) for e in _catalog_json()}
    assert not list(root.rglob("*.otf")) and not list(root.rglob("*.woff*"))


# --------------------------------------------------------------------------------------------
# weight matching (CSS Fonts level 4, 5.2 step 4)

W9 = (100, 200, 300, 400, 500, 600, 700, 800, 900)


@pytest.mark.parametrize(
    ("available", "desired", "expected"),
    [
        # exact matches always win
        *[(W9, w, w) for w in W9],
        ((400,), 100, 400),
        ((400,), 900, 400),
        ((450,), 450, 450),
        # desired 400: 400, then 500, then below 400 descending, then above 500 ascending
        ((300, 700), 400, 300),
        ((500, 300), 400, 500),
        ((100, 300, 600), 400, 300),
        ((600, 700), 400, 600),
        ((100, 900), 400, 100),
        ((500, 600), 400, 500),
        # desired 500: 500, then 400, then below 400 descending, then above 500 ascending
        ((300, 700), 500, 300),
        ((400, 600), 500, 400),
        ((300, 600), 500, 300),
        ((600, 700), 500, 600),
        ((100, 900), 500, 100),
        # desired between 400 and 500: up to 500 ascending, then below, then above 500
        ((100, 900), 450, 100),
        ((400, 500), 450, 500),
        ((400, 600), 450, 400),
        ((480, 490), 450, 480),
        ((700, 800), 450, 700),
        ((400, 500), 430, 500),
        # desired below 400: at-or-below descending, then above ascending
        ((300, 700), 100, 300),
        ((300, 700), 200, 300),
        ((300, 700), 350, 300),
        ((200, 500), 300, 200),
        ((500, 700), 300, 500),
        ((100, 300, 500), 200, 100),
        ((300, 400, 500), 100, 300),
        # desired above 500: at-or-above ascending, then below descending
        ((300, 700), 600, 700),
        ((300, 700), 800, 700),
        ((300, 400, 500, 700), 600, 700),
        ((300, 400, 500), 600, 500),
        ((100, 300, 500, 700, 900), 600, 700),
        ((400, 600), 550, 600),
        ((100, 200, 300), 900, 300),
        ((100, 900), 600, 900),
        ((100, 900), 300, 100),
        # the bundled families
        ((300, 400, 500, 600, 700, 800), 100, 300),  # Open Sans has no Thin
        ((300, 400, 500, 600, 700, 800), 900, 800),  # ... nor Black
        ((400, 500, 600, 700, 800, 900), 300, 400),  # Playfair Display has no Light
        ((400, 500, 600, 700, 800, 900), 100, 400),
        # order and duplicates in the input do not matter
        ((700, 300, 700), 400, 300),
        ((900, 100, 500), 600, 900),
    ],
)
def test_nearest_weight(available: tuple[int, ...], desired: int, expected: int) -> None:
    assert nearest_weight(available, desired) == expected
    assert nearest_weight(list(reversed(available)), desired) == expected


def test_nearest_weight_needs_a_weight() -> None:
    with pytest.raises(ValueError):
        nearest_weight([], 400)


# --------------------------------------------------------------------------------------------
# resolve()


@pytest.mark.parametrize(
    ("spelling", "family"),
    [
        ("Montserrat", "Montserrat"),
        ("montserrat", "Montserrat"),
        ("MONTSERRAT", "Montserrat"),
        ("Playfair Display", "Playfair Display"),
        ("playfair-display", "Playfair Display"),
        ("playfair_display", "Playfair Display"),
        ("PlayfairDisplay", "Playfair Display"),
        ("  playfair   DISPLAY ", "Playfair Display"),
        ("open-sans", "Open Sans"),
        ("Open_Sans", "Open Sans"),
        ("opensans", "Open Sans"),
        ("roboto", "Roboto"),
    ],
)
def test_resolve_family_spellings(spelling: str, family: str) -> None:
    face = fonts.resolve(spelling)
    assert (face.family, face.weight, face.italic) == (family, 400, False)
    assert face.path.is_file()


@pytest.mark.parametrize(
    ("family", "weight", "italic", "expected"),
    [
        ("Montserrat", 700, True, (700, True)),
        ("Montserrat", 450, False, (500, False)),
        ("Roboto", 100, True, (100, True)),
        ("Open Sans", 100, False, (300, False)),
        ("Open Sans", 900, True, (800, True)),
        ("Playfair Display", 300, False, (400, False)),
        ("Playfair Display", 100, True, (400, True)),
        ("Playfair Display", 550, True, (600, True)),
    ],
)
def test_resolve_weight_and_style(
    family: str, weight: int, italic: bool, expected: tuple[int, bool]
) -> None:
    face = fonts.resolve(family, weight, italic)
    assert (face.weight, face.italic) == expected
    assert fonts.load_font_file(face.path).weight == expected[0]


def test_resolve_unknown_family_lists_the_families() -> None:
    with pytest.raises(FontNotFound) as caught:
        fonts.resolve("Comic Sans MS", 700)
    message = str(caught.value)
    assert "Comic Sans MS" in message
    assert "\n" not in message
    for family in EXPECTED_FACES:
        assert family in message
    assert caught.value.code == "font_not_found"


def test_resolve_rejects_impossible_weight() -> None:
    with pytest.raises(ValueError):
        fonts.resolve("Roboto", 0)


def _fake_bundle(tmp_path: Path, entries: list[tuple[str, int, bool]]) -> Path:
    folder = tmp_path / "fonts"
    folder.mkdir()
    catalog = [
        {"family": fam, "weight": w, "italic": it, "file": f"{fam}/{fam}_{w}{'i' if it else ''}"}
        for fam, w, it in entries
    ]
    (folder / "catalog.json").write_text(json.dumps(catalog), encoding="utf-8")
    return folder


def test_fonts_dir_override_and_style_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _fake_bundle(
        tmp_path,
        [("Upright", 700, False), ("Upright", 300, False), ("Slanted", 400, True)],
    )
    fonts.use_fonts_dir(folder)  # GPU_WORKER_FONTS_DIR, through the settings
    assert fonts.fonts_dir() == folder
    assert fonts.families() == ["Slanted", "Upright"]
    # italic asked, no italic bundled: the upright faces, nearest weight
    face = fonts.resolve("upright", 400, italic=True)
    assert (face.weight, face.italic, face.path) == (300, False, folder / "Upright/Upright_300")
    # upright asked, only italic bundled: the italic face
    face = fonts.resolve("slanted", 700, italic=False)
    assert (face.weight, face.italic) == (400, True)
    with pytest.raises(FontNotFound, match="available: Slanted, Upright"):
        fonts.resolve("Montserrat")


def test_packaged_copy_wins_over_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site-packages" / "gpu_worker"
    (package / "_fonts").mkdir(parents=True)
    monkeypatch.setattr(gpu_worker, "__file__", str(package / "__init__.py"))
    assert fonts.fonts_dir() == package / "_fonts"
    shutil.rmtree(package / "_fonts")
    assert fonts.fonts_dir() == tmp_path / "site-packages" / "fonts"


# --------------------------------------------------------------------------------------------
# load_font_file()


def test_load_font_file_reads_a_bundled_face() -> None:
    face = fonts.load_font_file(fonts.fonts_dir() / "PlayfairDisplay/PlayfairDisplay_700Bold.ttf")
    assert (face.family, face.weight, face.italic) == ("Playfair Display", 700, False)
    face = fonts.load_font_file(fonts.fonts_dir() / "OpenSans/OpenSans_600SemiBold_Italic.ttf")
    assert (face.family, face.weight, face.italic) == ("Open Sans", 600, True)


@pytest.mark.parametrize(
    ("file", "weight"),
    [("Roboto/Roboto_100Thin.ttf", 100), ("Montserrat/Montserrat_200ExtraLight_Italic.ttf", 200)],
)
def test_load_font_file_sees_through_the_250_weight_class(file: str, weight: int) -> None:
    path = fonts.fonts_dir() / file
    with TTFont(path, lazy=True) as font:
        assert font["OS/2"].usWeightClass == 250  # the GDI work-around these files carry
    assert fonts.load_font_file(path).weight == weight


def test_load_font_file_falls_back_to_the_style_name(tmp_path: Path) -> None:
    with TTFont(_montserrat(200)) as font:
        del font["STAT"]
        assert font["OS/2"].usWeightClass == 250
        font.save(tmp_path / "NoStat.ttf")
    face = fonts.load_font_file(tmp_path / "NoStat.ttf")
    assert (face.family, face.weight, face.italic) == ("Montserrat", 200, False)


def test_load_font_file_takes_family_from_typographic_name(tmp_path: Path) -> None:
    # name ID 1 of Montserrat SemiBold is "Montserrat SemiBold"; ID 16 is "Montserrat"
    face = fonts.load_font_file(_montserrat(600, True))
    assert (face.family, face.weight, face.italic) == ("Montserrat", 600, True)


def test_load_font_file_missing(tmp_path: Path) -> None:
    with pytest.raises(InputNotFound, match=r"font nope\.ttf"):
        fonts.load_font_file(tmp_path / "nope.ttf")


def _truncated(tmp_path: Path) -> Path:
    data = _montserrat().read_bytes()
    path = tmp_path / "truncated.ttf"
    path.write_bytes(data[: len(data) // 2])
    return path


def _header_only(tmp_path: Path) -> Path:
    path = tmp_path / "header.ttf"
    path.write_bytes(_montserrat().read_bytes()[:200])
    return path


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: d / "empty.ttf", id="zero-bytes"),
        pytest.param(lambda d: d / "notes.ttf", id="text-file"),
        pytest.param(lambda d: d / "tiny.ttf", id="four-bytes"),
        pytest.param(lambda d: d / "web.woff2", id="woff2"),
        pytest.param(lambda d: d / "set.ttc", id="collection"),
        pytest.param(lambda d: d / "image.otf", id="png-named-otf"),
        pytest.param(_truncated, id="truncated"),
        pytest.param(_header_only, id="header-only"),
        pytest.param(lambda d: d, id="directory"),
    ],
)
def test_load_font_file_rejects_non_fonts(tmp_path: Path, make: object) -> None:
    (tmp_path / "empty.ttf").write_bytes(b"")
    (tmp_path / "notes.ttf").write_text("this is not a font\n" * 50, encoding="utf-8")
    (tmp_path / "tiny.ttf").write_bytes(b"\x00\x01\x00\x00")
    (tmp_path / "web.woff2").write_bytes(b"wOF2" + b"\x00" * 200)
    (tmp_path / "set.ttc").write_bytes(b"ttcf" + b"\x00" * 200)
    (tmp_path / "image.otf").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    assert callable(make)
    path = make(tmp_path)
    with pytest.raises(InputUnreadable) as caught:
        fonts.load_font_file(path)
    message = str(caught.value)
    assert message.startswith(f"font {path.name}: not a TrueType/OpenType font")
    assert "\n" not in message
    assert caught.value.code == "input_unreadable"


def test_missing_glyphs_on_a_broken_font(tmp_path: Path) -> None:
    with pytest.raises(InputUnreadable):
        fonts.missing_glyphs(_truncated(tmp_path), "abc")
    with pytest.raises(InputNotFound):
        fonts.missing_glyphs(tmp_path / "gone.ttf", "abc")


# --------------------------------------------------------------------------------------------
# missing_glyphs()

FRENCH = (
    "« L’été dernier, à l’hôtel de l’Œil-de-Bœuf, Noël et Zoé ont goûté "
    "une crème brûlée ; ça coûtait 12,50 € ! » — Où ? Là-bas… "
    "ÀÂÄÇÉÈÊËÎÏÔÖÙÛÜŸ àâäçéèêëîïôöùûüÿ æÆ œŒ ‹ › “ ” ‘ ’ 1er"
)


@pytest.mark.parametrize("face", [f for f in fonts.catalog()], ids=lambda f: f.path.name)
def test_french_needs_nothing_missing(face: FontFace) -> None:
    assert fonts.missing_glyphs(face.path, FRENCH) == []


def test_french_with_typographic_spaces() -> None:
    # narrow no-break space before ; : ! ? and no-break space inside guillemets
    text = "«\u00a0Bonjour\u00a0» dit-il\u202f! Vraiment\u202f?\nOui\t: c’est ça."
    assert fonts.missing_glyphs(_montserrat(), text) == []


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("مرحبا", ["م", "ر", "ح", "ب", "ا"]),
        ("سلام سلام", ["س", "ل", "ا", "م"]),  # each once, in order of first appearance
        ("नमस्ते", ["न", "म", "स", "्", "त", "े"]),
        ("Bonjour 👋 !", ["👋"]),
        ("❤️", ["❤"]),  # U+2764 is missing; its variation selector U+FE0F needs no glyph
        ("👨\u200d👩\u200d👧", ["👨", "👩", "👧"]),  # ZWJ needs no glyph
        ("Ω ok", []),  # Montserrat draws U+03A9 OHM / Greek capital omega
        ("日本", ["日", "本"]),
        ("abc\u00addef\u200b\u200c\ufeff", []),  # soft hyphen, ZWSP, ZWNJ, BOM: format chars
        ("a\u2028b\u2029c\r\n\x00", []),  # line/paragraph separators and controls
        ("x \u3000 y", []),  # ideographic space is a space separator
        ("Mixed: café मराठी 🙂", ["म", "र", "ा", "ठ", "ी", "🙂"]),
        ("", []),
    ],
)
def test_missing_glyphs_in_montserrat(text: str, missing: list[str]) -> None:
    assert fonts.missing_glyphs(_montserrat(), text) == missing


def test_missing_glyphs_sees_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "font.ttf"
    shutil.copyfile(_montserrat(), path)
    assert fonts.missing_glyphs(path, "Ωж") == []
    with TTFont(_montserrat()) as font:
        for table in font["cmap"].tables:
            table.cmap.pop(ord("ж"), None)
        font.save(path)
    assert fonts.missing_glyphs(path, "Ωж") == ["ж"]
