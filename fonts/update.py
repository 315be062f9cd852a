"""Re-create the bundled fonts and ``catalog.json`` from the @expo-google-fonts npm packages.

Run from anywhere with the project's virtualenv (needs ``npm`` on PATH and the registry):

    .venv/bin/python fonts/update.py             # the pinned versions below: same bytes again
    .venv/bin/python fonts/update.py --latest    # the newest versions; then pin them below

For each package it runs ``npm pack`` in a temporary folder, extracts the tarball, keeps every
static ``.ttf`` (variable fonts, those with an ``fvar`` table, are skipped) and the font licence
(``LICENSE_FONT``, saved as ``OFL.txt`` or ``LICENSE.txt``). Weight and style are read from each
font file with :func:`gpu_worker.render.fonts.load_font_file` and must agree with the file name
(``Montserrat_700Bold_Italic.ttf`` is 700, italic); any disagreement stops the script.
Only the family folders it writes and ``catalog.json`` are replaced; README.md and this script
stay.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from fontTools.ttLib import TTFont

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gpu_worker.render.fonts import CATALOG_FILE, load_font_file  # noqa: E402

# npm package -> pinned version. Add a family here, run the script, commit the result.
PACKAGES: dict[str, str] = {
    "@expo-google-fonts/montserrat": "0.4.2",
    "@expo-google-fonts/open-sans": "0.4.2",
    "@expo-google-fonts/playfair-display": "0.4.2",
    "@expo-google-fonts/roboto": "0.4.3",
}

# Montserrat_700Bold_Italic.ttf -> weight 700, italic.
FILE_NAME = re.compile(
    r"^(?P<prefix>[A-Za-z0-9]+)_(?P<weight>\d{3})[A-Za-z]+(?P<italic>_Italic)?\.ttf$"
)


def npm_pack(spec: str, workdir: Path) -> Path:
    """Download ``spec`` with ``npm pack`` into ``workdir``; return the extracted package dir."""
    result = subprocess.run(
        ["npm", "pack", spec, "--json", "--silent"],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    )
    info = json.loads(result.stdout)[0]
    tarball = workdir / str(info["filename"])
    target = workdir / tarball.name.removesuffix(".tgz")
    with tarfile.open(tarball) as archive:
        archive.extractall(target, filter="data")
    return target / "package"


def licence_name(text: str) -> str:
    if "SIL Open Font License" in text:
        return "OFL.txt"
    if "Apache License" in text:
        return "LICENSE.txt"
    raise SystemExit("unknown font licence: " + text[:200])


def bundle(package: str, version: str, workdir: Path, staging: Path) -> list[dict[str, Any]]:
    """Copy one package's static faces and licence into ``staging/<FamilyDir>``."""
    root = npm_pack(f"{package}@{version}", workdir)
    meta = json.loads((root / "package.json").read_text(encoding="utf-8"))
    source = f"{meta['name']}@{meta['version']}"
    family = json.loads((root / "metadata.json").read_text(encoding="utf-8"))["family"]
    family_dir = family.replace(" ", "")
    out = staging / family_dir
    out.mkdir(parents=True)
    licence_text = (root / "LICENSE_FONT").read_text(encoding="utf-8")
    licence = f"{family_dir}/{licence_name(licence_text)}"
    (staging / licence).write_text(licence_text, encoding="utf-8")

    faces: list[dict[str, Any]] = []
    for ttf in sorted(root.rglob("*.ttf")):
        match = FILE_NAME.match(ttf.name)
        if match is None:
            raise SystemExit(f"{source}: unexpected file name {ttf.name}")
        with TTFont(ttf, lazy=True) as font:
            if "fvar" in font:
                print(f"  skip variable font {ttf.name}")
                continue
        face = load_font_file(ttf)
        named = (int(match["weight"]), match["italic"] is not None)
        if (face.weight, face.italic) != named or face.family != family:
            raise SystemExit(
                f"{source}: {ttf.name} reads as {face.family!r} {face.weight}"
                f"{' italic' if face.italic else ''}; its name says {family!r} {named}"
            )
        shutil.copyfile(ttf, out / ttf.name)
        faces.append(
            {
                "family": family,
                "weight": face.weight,
                "italic": face.italic,
                "file": f"{family_dir}/{ttf.name}",
                "licence": licence,
                "source": source,
            }
        )
    if not faces:
        raise SystemExit(f"{source}: no static .ttf faces found")
    print(f"  {family}: {len(faces)} faces from {source}")
    return faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latest", action="store_true", help="take the newest npm versions")
    parser.add_argument("--dest", type=Path, default=HERE, help="folder to write (default: here)")
    args = parser.parse_args()
    dest: Path = args.dest.resolve()

    faces: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fonts-update-") as tmp:
        workdir, staging = Path(tmp) / "npm", Path(tmp) / "staging"
        workdir.mkdir()
        staging.mkdir()
        for package, pinned in sorted(PACKAGES.items()):
            version = "latest" if args.latest else pinned
            print(f"{package}@{version}")
            faces += bundle(package, version, workdir, staging)

        dest.mkdir(parents=True, exist_ok=True)
        old_catalog = dest / CATALOG_FILE
        stale: set[str] = set()
        if old_catalog.exists():
            stale = {e["file"].split("/")[0] for e in json.loads(old_catalog.read_text("utf-8"))}
        for name in sorted(stale | {p.name for p in staging.iterdir()}):
            if (dest / name).is_dir():
                shutil.rmtree(dest / name)
        for family_dir in sorted(staging.iterdir()):
            shutil.copytree(family_dir, dest / family_dir.name)

    faces.sort(key=lambda f: (f["family"], f["italic"], f["weight"]))
    text = json.dumps(faces, indent=2, ensure_ascii=False) + "\n"
    (dest / CATALOG_FILE).write_text(text, encoding="utf-8")
    print(f"wrote {len(faces)} faces to {dest / CATALOG_FILE}")


if __name__ == "__main__":
    main()
