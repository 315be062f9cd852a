"""Sample media the way phones and cameras record it, made with PyAV for tests: HDR (HLG,
PQ) and BT.2020 SDR patches, interlaced fields, anamorphic pixels, sound that starts after
the picture. Colours are encoded here with the BT.2100 / BT.2020 formulas directly (numpy),
independent of the worker's own conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

# BT.2087: linear BT.709 RGB → linear BT.2020 RGB.
BT709_TO_BT2020 = np.array(
    [
        [0.6274, 0.3293, 0.0433],
        [0.0691, 0.9195, 0.0114],
        [0.0164, 0.0880, 0.8956],
    ]
)
_PQ_M1, _PQ_M2 = 2610 / 16384, 2523 / 4096 * 128
_PQ_C1, _PQ_C2, _PQ_C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
_HLG_A = 0.17883277
_HLG_B = 1 - 4 * _HLG_A
_HLG_C = 0.5 - _HLG_A * np.log(4 * _HLG_A)
TRANSFER_CODES = {"HLG": 18, "PQ": 16, "SDR": 14}  # arib-std-b67, smpte2084, bt2020-10


def encode_bt2100(nits709: F64, transfer: str) -> F64:
    """Display light (cd/m², linear BT.709 RGB, (..., 3)) → BT.2020 R'G'B' signal of
    ``transfer``: HLG (for the 1000 cd/m² reference display), PQ, or SDR (gamma 2.4, 100
    cd/m² white)."""
    rgb = np.asarray(nits709, np.float64) @ BT709_TO_BT2020.T
    if transfer == "PQ":
        y = np.power(np.clip(rgb / 10000.0, 0, 1), _PQ_M1)
        return np.power((_PQ_C1 + _PQ_C2 * y) / (1 + _PQ_C3 * y), _PQ_M2)
    if transfer == "SDR":
        return np.power(np.clip(rgb / 100.0, 0, 1), 1 / 2.4)
    # HLG: undo the OOTF (system gamma 1.2 at 1000 cd/m²), then the OETF.
    display = rgb / 1000.0
    yd = display @ np.array([0.2627, 0.6780, 0.0593])
    ys = np.power(np.maximum(yd, 1e-12), 1 / 1.2)[..., None]
    scene = np.clip(np.where(ys > 0, display * ys / np.maximum(yd[..., None], 1e-12), 0), 0, 1)
    low = np.sqrt(3 * scene)
    high = _HLG_A * np.log(np.maximum(12 * scene - _HLG_B, 1e-12)) + _HLG_C
    return np.where(scene <= 1 / 12, low, high)


def _yuv420p10(signal: F64) -> av.VideoFrame:
    """BT.2020 R'G'B' (h, w, 3; 0-1) as a limited-range 10-bit 4:2:0 frame (BT.2020 NCL)."""
    r, g, b = signal[..., 0], signal[..., 1], signal[..., 2]
    y = 0.2627 * r + 0.6780 * g + 0.0593 * b
    cb = (b - y) / 1.8814
    cr = (r - y) / 1.4746
    h, w = y.shape

    def sub(c: F64) -> F64:
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [
        np.round(64 + 876 * y),
        np.round(512 + 896 * sub(cb)),
        np.round(512 + 896 * sub(cr)),
    ]
    stacked = np.concatenate([planes[0].ravel(), planes[1].ravel(), planes[2].ravel()]).astype(
        np.uint16
    )
    return av.VideoFrame.from_ndarray(stacked.reshape(h * 3 // 2, w), format="yuv420p10le")


def make_hdr_clip(
    path: Path,
    patches: Sequence[Sequence[float]],
    transfer: str,
    *,
    side: int = 64,
    frames: int = 3,
    fps: int = 10,
    codec: str = "libx265",
    dolby_vision_tag: bool = False,
    untagged: tuple[str, ...] = (),
) -> Path:
    """A clip of square patches side by side, each ``side`` pixels, of the given colours
    (display light in cd/m², BT.709 RGB), encoded as 10-bit BT.2020 ``transfer`` (HLG, PQ,
    or SDR) and tagged as phones tag it. ``dolby_vision_tag`` stores it as a Dolby Vision
    stream's sample entry is tagged: ``dvh1`` (with all colour tags ``untagged``, that is how
    profile 5 looks; with HLG tags, profile 8.4). ``untagged`` leaves out some tags
    (``"primaries"``, ``"matrix"``, ``"transfer"``), as some cameras and editors do."""
    colours = np.asarray(patches, np.float64)
    width = side * len(colours)
    image = np.repeat(np.repeat(colours[None, :, :], side, axis=0), side, axis=1)
    signal = encode_bt2100(image, transfer)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+write_colr"}
    if dolby_vision_tag:
        options["strict"] = "unofficial"
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = width, side
        stream.pix_fmt = "yuv420p10le"
        ctx = stream.codec_context
        if codec == "libx265":
            ctx.options = {"preset": "ultrafast", "x265-params": "log-level=error:lossless=1"}
        if dolby_vision_tag:
            ctx.codec_tag = "dvh1"
        ctx.color_primaries = 2 if "primaries" in untagged else 9
        ctx.colorspace = 2 if "matrix" in untagged else 9
        ctx.color_trc = 2 if "transfer" in untagged else TRANSFER_CODES[transfer]
        ctx.color_range = 1
        for i in range(frames):
            frame = _yuv420p10(signal)
            frame.color_primaries = ctx.color_primaries
            frame.colorspace = ctx.colorspace
            frame.color_trc = ctx.color_trc
            frame.color_range = 1
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _write(
    path: Path,
    pictures: Sequence[NDArray[np.uint8]],
    fps: int,
    *,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    sar: Fraction | None = None,
    rotation: int = 0,
) -> None:
    h, w = pictures[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        ctx = stream.codec_context
        ctx.options = {"preset": "ultrafast", "crf": "12", **(options or {})}
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1
        ctx.color_range = 1
        if sar is not None:
            ctx.sample_aspect_ratio = sar
        if rotation:
            stream.set_display_rotation(rotation)
        for i, rgb in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", src_colorspace="ITU709", dst_colorspace="ITU709"
            )
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_interlaced_clip(
    path: Path, *, width: int = 96, height: int = 64, frames: int = 10, fps: int = 10
) -> Path:
    """Interlaced H.264 (top field first) of a white edge moving right: each frame's two
    fields were filmed half a frame apart, so the edge stands at two places on alternate
    lines (comb teeth) until deinterlaced."""
    pictures = []
    for i in range(frames):
        rgb = np.zeros((height, width, 3), np.uint8)
        rgb[0::2, : 16 + 6 * i] = 255  # top field
        rgb[1::2, : 19 + 6 * i] = 255  # bottom field, half a frame later
        pictures.append(rgb)
    _write(path, pictures, fps, options={"flags": "+ildct+ilme", "x264-params": "tff=1"})
    return path


def make_striped_clip(path: Path, *, width: int = 96, height: int = 64, frames: int = 4) -> Path:
    """Progressive H.264 with one-line grey/white stripes: detail a deinterlacer would
    smear, which must pass untouched."""
    rgb = np.full((height, width, 3), 64, np.uint8)
    rgb[0::2] = 224
    _write(path, [rgb] * frames, 10)
    return path


def make_disc_clip(
    path: Path,
    *,
    stored_w: int = 72,
    stored_h: int = 96,
    sar: Fraction = Fraction(4, 3),
    rotation: int = 0,
    frames: int = 3,
) -> Path:
    """A white disc on black, stored with non-square pixels (``sar``: their width over
    height), so that it is round only when shown ``stored_w`` x ``sar`` wide: an ellipse in
    the stored pixels, as HDV (1440x1080, 4:3 pixels) records it. ``rotation`` adds a phone's
    display matrix (stored turned clockwise)."""
    shown_w = stored_w * float(sar)
    y, x = np.mgrid[0:stored_h, 0:stored_w].astype(np.float64)
    radius = min(shown_w, stored_h) * 0.25
    inside = ((x + 0.5) * float(sar) - shown_w / 2) ** 2 + (y + 0.5 - stored_h / 2) ** 2
    rgb = np.zeros((stored_h, stored_w, 3), np.uint8)
    rgb[inside <= radius**2] = 255
    turns = (rotation // 90) % 4
    if turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=-turns))
    stored_sar = sar if turns % 2 == 0 else 1 / sar
    _write(path, [rgb] * frames, 10, sar=stored_sar, rotation=rotation)
    return path


def make_offset_clip(
    path: Path,
    *,
    audio_delay: float = 0.5,
    flash_at: float = 1.0,
    seconds: float = 2.0,
    fps: int = 10,
    container: str = "mp4",
) -> Path:
    """A black clip with a white flash at ``flash_at`` seconds and a 1 kHz beep at the same
    moment, whose audio stream starts ``audio_delay`` seconds after its video (stored as a
    later start time: an edit list in MP4/MOV, a later PTS in MPEG-TS)."""
    rate = 48_000
    size = 64
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "crf": "12"}
        astream = out.add_stream("aac", rate=rate, layout="stereo")
        vframes = round(seconds * fps)
        for i in range(vframes):
            rgb = np.zeros((size, size, 3), np.uint8)
            if i == round(flash_at * fps):
                rgb[...] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        start = round(audio_delay * rate)
        total = round(seconds * rate) - start
        t = np.arange(total) / rate + audio_delay
        wave = np.where(
            (t >= flash_at) & (t < flash_at + 0.1), 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0
        ).astype(np.float32)
        for offset in range(0, total, 1024):
            chunk = wave[offset : offset + 1024]
            aframe = av.AudioFrame.from_ndarray(
                np.stack([chunk, chunk]), format="fltp", layout="stereo"
            )
            aframe.sample_rate = rate
            aframe.pts = start + offset
            aframe.time_base = Fraction(1, rate)
            for packet in astream.encode(aframe):
                out.mux(packet)
        for packet in astream.encode():
            out.mux(packet)
    return path


def _s15(value: float) -> bytes:
    return round(value * 65536).to_bytes(4, "big", signed=True)


def display_p3_icc() -> bytes:
    """A Display P3 ICC profile (v2 matrix/TRC, D50-adapted colorants, the sRGB curve), as
    iPhones embed in their photos: built here so tests need no profile file."""
    d50 = (0.9642, 1.0, 0.8249)
    colorants = {
        b"rXYZ": (0.515121, 0.241196, -0.001053),
        b"gXYZ": (0.291977, 0.692245, 0.041885),
        b"bXYZ": (0.157104, 0.066574, 0.784073),
    }
    x = np.linspace(0.0, 1.0, 1024)
    curve = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    curv = b"curv\0\0\0\0" + len(x).to_bytes(4, "big")
    curv += np.round(curve * 65535).astype(">u2").tobytes()
    name = b"Display P3 (test)\0"
    desc = b"desc\0\0\0\0" + len(name).to_bytes(4, "big") + name + bytes(4 + 4 + 2 + 1 + 67)
    tags: list[tuple[bytes, bytes]] = [
        (b"desc", desc),
        (b"wtpt", b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in d50)),
        *(
            (sig, b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in xyz))
            for sig, xyz in colorants.items()
        ),
        (b"rTRC", curv),
        (b"gTRC", curv),
        (b"bTRC", curv),
        (b"cprt", b"text\0\0\0\0No copyright, test data\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += sig + (offset + len(data)).to_bytes(4, "big") + len(body).to_bytes(4, "big")
        data += body + bytes(-len(body) % 4)
    size = offset + len(data)
    header = (
        size.to_bytes(4, "big")
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(24)
        + bytes(4)
        + b"".join(_s15(v) for v in d50)
        + bytes(4)
    )
    header += bytes(128 - len(header))
    return header + len(tags).to_bytes(4, "big") + table + data


def make_photo(
    path: Path,
    rgb: NDArray[np.uint8],
    *,
    format: str,
    orientation: int = 1,
    icc: bytes | None = None,
) -> Path:
    """A photo of ``rgb`` (as stored: turning it is the viewer's job when ``orientation``, an
    EXIF value, says so) in ``format`` (JPEG, PNG, AVIF, HEIF), with an embedded ICC
    profile when given."""
    from PIL import Image

    if format == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    image = Image.fromarray(rgb, "RGB")
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    options: dict[str, object] = {"exif": exif.tobytes()} if orientation != 1 else {}
    if icc is not None:
        options["icc_profile"] = icc
    if format in ("JPEG", "AVIF", "HEIF"):
        options["quality"] = 95 if format == "JPEG" else 90
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=format, **options)
    return path
