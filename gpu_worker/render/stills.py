"""Phone photos: HEIC/HEIF (iPhone) and AVIF stills, EXIF orientation and embedded ICC colour
profiles (Display P3…), turned into an upright sRGB PNG that the render then reads like any
other still.

A JPEG, PNG or WebP with neither an orientation to apply nor a non-sRGB profile is left as it
is (FFmpeg reads it directly). Everything else is decoded once with Pillow (HEIF through
pillow-heif, AVIF through Pillow's own plugin), turned upright (``ImageOps.exif_transpose``:
rotations and mirrors), converted to sRGB with LittleCMS (``ImageCms``, relative
colorimetric) and written to a per-process cache of PNG files. A profile LittleCMS cannot
read is ignored with a log line: the picture is then taken as sRGB.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import logging
import shutil
import tempfile
import threading
from functools import cache
from pathlib import Path

from PIL import Image, ImageCms, ImageOps

from gpu_worker.errors import InputUnreadable, UnsupportedInput
from gpu_worker.limits import Limits
from gpu_worker.render.files import BoundedReader
from gpu_worker.render.pictures import check_side, too_many_pixels

log = logging.getLogger(__name__)

HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}
_PLAIN_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
CACHE_FILES = 256  # normalised photos kept per process (oldest removed first)
_EXIF_ORIENTATION = 0x0112


def photo_kind(path: Path) -> str | None:
    """``"heif"`` or ``"avif"`` for an ISO-BMFF image file, told by its brands (never by its
    name); ``"plain"`` for JPEG, PNG and WebP; None for anything else."""
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(_PLAIN_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "plain"
    if head[4:8] != b"ftyp":
        return None
    size = int.from_bytes(head[:4], "big")
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(size, len(head)), 4)}
    if brands & AVIF_BRANDS:
        return "avif"
    if head[8:12] in HEIF_BRANDS or brands & {b"heic", b"heix"}:
        return "heif"
    return None


@cache
def _register_heif() -> bool:
    try:
        import pillow_heif  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    try:
        description = ImageCms.getProfileDescription(profile)
    except ImageCms.PyCMSError:
        return False
    return "srgb" in description.lower().replace(" ", "")


def _profile(image: Image.Image, label: str) -> ImageCms.ImageCmsProfile | None:
    """The picture's embedded ICC profile when it is not sRGB (and LittleCMS reads it)."""
    icc = image.info.get("icc_profile")
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (ImageCms.PyCMSError, OSError, TypeError) as exc:
        log.warning("%s: unreadable ICC profile (%s): taken as sRGB", label, exc)
        return None
    return None if _is_srgb(profile) else profile


_lock = threading.Lock()
_folder: list[Path] = []


def _cache_dir() -> Path:
    if not _folder:
        folder = Path(tempfile.mkdtemp(prefix="gpu-worker-stills-"))
        atexit.register(shutil.rmtree, folder, True)
        _folder.append(folder)
    return _folder[0]


def _trim(folder: Path) -> None:
    files = sorted(folder.glob("*.png"), key=lambda p: p.stat().st_mtime)
    for old in files[:-CACHE_FILES]:
        old.unlink(missing_ok=True)


def normalised_still(path: Path, label: str, limits: Limits) -> Path | None:
    """An upright sRGB PNG of the photo at ``path`` when it needs one (HEIF, AVIF, an EXIF
    orientation, a non-sRGB profile); None when FFmpeg can read it as it is, or when it is
    not a photo at all."""
    kind = photo_kind(path)
    if kind is None:
        return None
    if kind == "heif" and not _register_heif():
        raise UnsupportedInput(f"{label}: HEIC/HEIF needs pillow-heif, not installed here")
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    try:
        with BoundedReader(path) as handle, Image.open(handle) as image:
            width, height = image.size
            check_side(label, width, height, limits)
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            profile = _profile(image, label)
            if kind == "plain" and orientation in (1, None) and profile is None:
                return None
            with _lock:
                target = _cache_dir() / f"{key[:32]}.png"
                if target.exists():
                    target.touch()
                    return target
            upright = ImageOps.exif_transpose(image)
            has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
            if profile is not None:
                mode = "RGBA" if has_alpha and upright.mode != "CMYK" else "RGB"
                source = (
                    upright if upright.mode in ("RGB", "RGBA", "CMYK") else upright.convert(mode)
                )
                converted = ImageCms.profileToProfile(
                    source,
                    profile,
                    ImageCms.createProfile("sRGB"),
                    renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                    outputMode=mode,
                )
                assert converted is not None
                upright = converted
            else:
                upright = upright.convert("RGBA" if has_alpha else "RGB")
    except Image.DecompressionBombError as exc:
        raise too_many_pixels(f"{label}: the picture", limits) from exc
    except ImageCms.PyCMSError as exc:
        raise InputUnreadable(f"{label}: its colour profile cannot be applied ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputUnreadable(f"{label}: not a readable picture ({exc})") from exc
    with _lock:
        tmp = target.with_suffix(".part")
        upright.save(tmp, format="PNG", compress_level=1)
        tmp.replace(target)
        _trim(target.parent)
    log.info(
        "%s: %s photo%s%s made upright sRGB",
        label,
        kind.upper() if kind != "plain" else "a",
        f", orientation {orientation}" if orientation not in (1, None) else "",
        ", ICC profile converted" if profile is not None else "",
    )
    return target
