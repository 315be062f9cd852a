"""Source colour: reading a video's colour tags, and turning HDR (PQ, HLG) and wide-gamut
(BT.2020) pictures into BT.709 SDR with a 3D LUT applied by libavfilter's ``lut3d``.

The LUT is computed once per (transfer, primaries, peak) with numpy and written as a
``.cube`` file; every clip of that kind reuses it, on the CPU and on the NVDEC path alike
(the filter graph after decoding is the same). Its input is the source's R'G'B' (decoded from
YCbCr with the source's own matrix), its output BT.709 R'G'B' for a BT.1886 (gamma 2.4)
display. The steps, per LUT entry:

1. Display light. PQ: the BT.2100 EOTF (absolute cd/m²). HLG: the BT.2100 inverse OETF and
   the OOTF of the 1000 cd/m² reference display (system gamma 1.2), so HDR reference white
   (75 % HLG) is 203 cd/m². SDR BT.2020: the BT.1886 EOTF, 1.0 being SDR white.
2. Gamut: the BT.2020 → BT.709 matrix in linear light.
3. Tone (HDR only): one gain per colour, from the tone curve applied to its largest
   channel, so every colour keeps its RGB ratios (hue and saturation) and bright saturated
   colours stay saturated instead of turning white. The curve: the BT.2446 method C linear
   segment (gain 0.83802 up to its inflection at 69.85 cd/m², so mid grey 26 cd/m² lands at
   21.8 % of SDR white) continued by an exponential shoulder, smooth at the inflection, that
   reaches SDR white exactly at the source's peak (HLG: 1000 cd/m², its reference display;
   PQ: 1000 cd/m², the usual HDR10 mastering peak; brighter highlights become white). Greys
   follow it exactly: HDR reference white (203 cd/m²) lands at 97 % of SDR white.
4. Colours still outside BT.709 (a channel below 0, or above 1 from BT.2020 SDR) lose
   chroma alone, at constant lightness and hue in Oklab, until they fit: no hue shift, as
   clipping each channel would cause.
5. The inverse BT.1886 EOTF (1/2.4).
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gpu_worker.errors import UnsupportedInput

log = logging.getLogger(__name__)

F64 = NDArray[np.float64]

# FFmpeg's AVColorPrimaries / AVColorTransferCharacteristic / AVColorSpace codes.
UNSPECIFIED = 2
PRI_BT709, PRI_BT2020, PRI_P3_D65 = 1, 9, 12
TRC_BT709, TRC_SMPTE170M, TRC_BT2020_10, TRC_BT2020_12 = 1, 6, 14, 15
TRC_PQ, TRC_HLG = 16, 18
SPC_RGB, SPC_BT709, SPC_FCC, SPC_BT470BG, SPC_SMPTE170M = 0, 1, 4, 5, 6
SPC_SMPTE240M, SPC_BT2020_NCL, SPC_BT2020_CL = 7, 9, 10

HDR_TRANSFERS = {TRC_PQ: "PQ", TRC_HLG: "HLG"}
SDR_TRANSFERS = {1, 4, 5, 6, 7, 13, 14, 15}  # BT.709-like curves a BT.1886 display shows
_MATRIX_NAMES = {
    SPC_BT709: "bt709",
    SPC_FCC: "fcc",
    SPC_BT470BG: "bt601",
    SPC_SMPTE170M: "bt601",
    SPC_SMPTE240M: "smpte240m",
    SPC_BT2020_NCL: "bt2020",
    SPC_BT2020_CL: "bt2020",
}
DOLBY_VISION_TAGS = {"dvh1", "dvhe", "dav1", "dva1", "dvav"}

REFERENCE_WHITE = 203.0  # cd/m², BT.2408
HLG_PEAK = 1000.0  # cd/m², the BT.2100 reference display HLG is shown on
DEFAULT_PQ_PEAK = 1000.0
LUT_SIZE = 33
RGB_FORMAT = "gbrp16le"  # what the LUT runs on: planar, 16 bits (lut3d has SIMD for it)

# BT.2446 method C tone curve, linear segment.
_K1 = 0.83802
_SDR_AT_INFLECTION = 58.535046646  # cd/m² on a 100 cd/m² SDR display
_INFLECTION = _SDR_AT_INFLECTION / _K1  # 69.85 cd/m² of HDR display light

# Linear-light RGB → RGB matrices (D65 both), from the primaries' chromaticities.
_BT2020_TO_BT709 = np.array(
    [
        [1.660491, -0.587641, -0.072850],
        [-0.124550, 1.132900, -0.008349],
        [-0.018151, -0.100579, 1.118730],
    ]
)
_P3_TO_BT709 = np.array(
    [
        [1.224940, -0.224940, 0.0],
        [-0.042057, 1.042057, 0.0],
        [-0.019638, -0.078636, 1.098274],
    ]
)
_TO_BT709 = {PRI_BT2020: _BT2020_TO_BT709, PRI_P3_D65: _P3_TO_BT709}
LUMA_709 = np.array([0.2126, 0.7152, 0.0722])
LUMA_2020 = np.array([0.2627, 0.6780, 0.0593])


@dataclass(frozen=True)
class ColourTags:
    """A video's colour as tagged (FFmpeg codes), with what was decided where tags lack."""

    matrix: int = UNSPECIFIED
    primaries: int = UNSPECIFIED
    transfer: int = UNSPECIFIED
    full_range: bool = False
    bits: int = 8
    peak: float | None = None  # cd/m²: a PQ source's mastering peak, when tagged
    dolby_vision: bool = False

    @property
    def hdr(self) -> str | None:
        """``"PQ"``, ``"HLG"`` or None for SDR."""
        return HDR_TRANSFERS.get(self.transfer)

    def describe(self) -> str:
        return (
            f"matrix {self.matrix}, primaries {self.primaries}, transfer {self.transfer}, "
            f"{'full' if self.full_range else 'limited'} range, {self.bits} bit"
        )


@dataclass(frozen=True)
class ColourPlan:
    """How a source's pixels become BT.709 SDR: the YCbCr matrix to read them with (a
    libswscale name, None for RGB sources) and the LUT to apply, if any."""

    in_matrix: str | None
    full_range: bool
    lut: Path | None
    what: str  # for logs: "SDR BT.709", "HLG BT.2020"…

    def input_args(self) -> str:
        """libswscale options reading the source (before ``out_*`` options)."""
        args = []
        if self.in_matrix is not None:
            args.append(f"in_color_matrix={self.in_matrix}")
            args.append(f"in_range={'pc' if self.full_range else 'tv'}")
        return ":".join(args)


def read_tags(ctx: Any, frame: Any, codec_tag: str | None = None) -> ColourTags:
    """The colour tags of a stream from its codec context and first decoded frame (the frame
    wins where both say something: decoders fill it from the bitstream)."""

    def pick(name: str) -> int:
        # 0 and 3 are reserved codes (0 is "RGB" as a matrix, decided by the pixel format).
        for source in (frame, ctx):
            value = int(getattr(source, name, UNSPECIFIED) or 0)
            if value not in (0, UNSPECIFIED, 3):
                return value
        return UNSPECIFIED

    fmt = getattr(frame, "format", None) or getattr(ctx, "format", None)
    name = fmt.name if fmt is not None else ""
    bits = int(fmt.components[0].bits) if fmt is not None and fmt.components else 8
    colour_range = int(getattr(frame, "color_range", 0) or getattr(ctx, "color_range", 0) or 0)
    full = colour_range == 2 or name.startswith("yuvj")
    # Dolby Vision is told by its sample entry (dvh1, dvhe, dav1…). Frame side data (DOVI
    # metadata, mastering display) is not read: touching ``frame.side_data`` in PyAV 18
    # crashes the interpreter at the next garbage collection.
    dolby = (codec_tag or "").lower() in DOLBY_VISION_TAGS
    matrix = pick("colorspace")
    if name.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "pal8", "gray")):
        matrix = SPC_RGB
    return ColourTags(matrix, pick("color_primaries"), pick("color_trc"), full, bits, None, dolby)


def plan_for(tags: ColourTags, width: int, height: int, label: str) -> ColourPlan:
    """Decide how to read a source: fill missing tags with the documented defaults (logged),
    refuse HDR that cannot be mapped, and fetch the LUT when one is needed.

    Defaults: an untagged matrix is BT.709 from 720 lines up and BT.601 below (as players
    do), BT.2020 when the transfer is HDR or the primaries BT.2020; untagged primaries are
    BT.2020 for an HDR transfer, else BT.709; an untagged transfer is SDR."""
    hdr = tags.hdr
    if tags.dolby_vision and hdr is None and tags.primaries != PRI_BT709:
        raise UnsupportedInput(
            f"{label}: Dolby Vision without an HLG, HDR10 or SDR base layer (such as profile 5) "
            "cannot be mapped to SDR by this worker"
        )
    primaries = tags.primaries
    if primaries == UNSPECIFIED:
        primaries = PRI_BT2020 if hdr is not None else PRI_BT709
        if hdr is not None:
            log.info("%s: %s without colour primaries: read as BT.2020", label, hdr)
    matrix: str | None
    if tags.matrix == SPC_RGB:
        matrix = None
    elif tags.matrix in _MATRIX_NAMES:
        matrix = _MATRIX_NAMES[tags.matrix]
        if hdr is not None and matrix != "bt2020":
            log.warning(
                "%s: %s tagged with a %s matrix: contradictory tags, read as tagged",
                label,
                hdr,
                matrix,
            )
    elif hdr is not None or primaries == PRI_BT2020:
        matrix = "bt2020"
        log.info("%s: no colour matrix tag: read as BT.2020 (like its primaries)", label)
    else:
        matrix = "bt709" if min(width, height) >= 720 else "bt601"
        if tags.transfer == UNSPECIFIED and tags.primaries == UNSPECIFIED:
            log.debug("%s: untagged colour: read as %s", label, matrix)
    if hdr is None and tags.transfer not in SDR_TRANSFERS | {UNSPECIFIED}:
        log.warning("%s: unknown transfer %d: shown as SDR (BT.1886)", label, tags.transfer)
    gamut = primaries if primaries in _TO_BT709 else PRI_BT709
    if hdr is None and gamut == PRI_BT709:
        return ColourPlan(matrix, tags.full_range, None, "SDR BT.709")
    peak = HLG_PEAK
    if hdr == "PQ":
        peak = min(10000.0, max(400.0, tags.peak or DEFAULT_PQ_PEAK))
    what = f"{hdr or 'SDR'} {'BT.2020' if gamut == PRI_BT2020 else 'P3'}"
    return ColourPlan(matrix, tags.full_range, lut_file(hdr, gamut, round(peak)), what)


# --- the transfer functions (BT.2100, BT.1886) -------------------------------------------

_PQ_M1, _PQ_M2 = 2610 / 16384, 2523 / 4096 * 128
_PQ_C1, _PQ_C2, _PQ_C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
_HLG_A = 0.17883277
_HLG_B = 1 - 4 * _HLG_A
_HLG_C = 0.5 - _HLG_A * np.log(4 * _HLG_A)


def pq_eotf(signal: F64) -> F64:
    """PQ signal (0-1) → display light in cd/m²."""
    p = np.power(np.clip(signal, 0.0, 1.0), 1 / _PQ_M2)
    return 10000.0 * np.power(np.maximum(p - _PQ_C1, 0.0) / (_PQ_C2 - _PQ_C3 * p), 1 / _PQ_M1)


def pq_inverse_eotf(nits: F64) -> F64:
    """Display light in cd/m² → PQ signal (0-1)."""
    y = np.power(np.clip(nits / 10000.0, 0.0, 1.0), _PQ_M1)
    return np.power((_PQ_C1 + _PQ_C2 * y) / (1 + _PQ_C3 * y), _PQ_M2)


def hlg_inverse_oetf(signal: F64) -> F64:
    """HLG signal (0-1) → scene light (0-1)."""
    e = np.clip(signal, 0.0, 1.0)
    low = e * e / 3.0
    high = (np.exp((np.maximum(e, 0.5) - _HLG_C) / _HLG_A) + _HLG_B) / 12.0
    return np.where(e <= 0.5, low, high)


def hlg_oetf(scene: F64) -> F64:
    """Scene light (0-1) → HLG signal (0-1)."""
    e = np.clip(scene, 0.0, 1.0)
    low = np.sqrt(3.0 * e)
    high = _HLG_A * np.log(np.maximum(12.0 * e - _HLG_B, 1e-12)) + _HLG_C
    return np.where(e <= 1 / 12, low, high)


def hlg_ootf(scene: F64, luma: F64, peak: float = HLG_PEAK, gamma: float = 1.2) -> F64:
    """Scene-light RGB (..., 3) → display light in cd/m² (the BT.2100 HLG OOTF)."""
    ys = np.maximum(scene @ luma, 0.0)[..., None]
    return peak * np.power(np.maximum(ys, 1e-12), gamma - 1.0) * scene


def tone_curve(nits: F64, peak: float) -> F64:
    """HDR display luminance (cd/m²) → SDR luminance relative to SDR white (0-1)."""
    sdr_ip = _SDR_AT_INFLECTION / 100.0
    slope = _K1 * (peak - _INFLECTION) / 100.0 / (1.0 - sdr_ip)  # in units of the shoulder
    a = slope
    for _ in range(60):  # a = slope * (1 - e^-a): the shoulder's start slope matches k1
        a = slope * (1.0 - np.exp(-a))
    t = np.clip((nits - _INFLECTION) / (peak - _INFLECTION), 0.0, 1.0)
    shoulder = sdr_ip + (1.0 - sdr_ip) * (1.0 - np.exp(-a * t)) / (1.0 - np.exp(-a))
    return np.where(nits <= _INFLECTION, nits * _K1 / 100.0, shoulder)


_OKLAB_M1 = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ]
)
_OKLAB_M2 = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ]
)


def oklab(rgb: F64) -> F64:
    """Linear BT.709 RGB (..., 3) → Oklab (L, a, b)."""
    return np.cbrt(rgb @ _OKLAB_M1.T) @ _OKLAB_M2.T


def oklab_to_rgb(lab: F64) -> F64:
    """Oklab (..., 3) → linear BT.709 RGB."""
    return np.power(lab @ np.linalg.inv(_OKLAB_M2).T, 3) @ np.linalg.inv(_OKLAB_M1).T


def fit_gamut(rgb: F64, steps: int = 20) -> F64:
    """Linear RGB (..., 3) brought into [0, 1] by lowering its chroma alone, at constant
    lightness and hue in Oklab (a space built so that constant hue looks constant), to the
    most saturated colour that fits; colours already inside are returned as they are."""
    outside = ((rgb < 0.0) | (rgb > 1.0)).any(axis=-1)
    if not outside.any():
        return rgb
    lab = oklab(rgb[outside])
    lab[:, 0] = np.clip(lab[:, 0], 0.0, 1.0)
    lo = np.zeros(len(lab))
    hi = np.ones(len(lab))
    for _ in range(steps):  # the largest chroma scale still inside, by bisection
        mid = (lo + hi) / 2
        trial = oklab_to_rgb(np.column_stack([lab[:, 0], lab[:, 1:] * mid[:, None]]))
        fits = ((trial >= -1e-9) & (trial <= 1.0 + 1e-9)).all(axis=-1)
        lo = np.where(fits, mid, lo)
        hi = np.where(fits, hi, mid)
    fitted = oklab_to_rgb(np.column_stack([lab[:, 0], lab[:, 1:] * lo[:, None]]))
    out = rgb.copy()
    out[outside] = fitted
    return np.clip(out, 0.0, 1.0)


def to_sdr(signal: F64, hdr: str | None, primaries: int, peak: float) -> F64:
    """Source R'G'B' (..., 3; 0-1) → BT.709 R'G'B' for a BT.1886 display: the LUT's maths."""
    source_luma = LUMA_2020 if primaries == PRI_BT2020 else LUMA_709
    if hdr == "PQ":
        light = pq_eotf(signal)
    elif hdr == "HLG":
        light = hlg_ootf(hlg_inverse_oetf(signal), source_luma)
    else:
        light = np.power(np.clip(signal, 0.0, 1.0), 2.4)
    rgb = light @ _TO_BT709.get(primaries, np.eye(3)).T
    if hdr is not None:
        # One gain per colour, from its largest channel: ratios (hue, saturation) are kept
        # and no channel passes SDR white, so bright saturated colours stay saturated.
        top = rgb.max(axis=-1)
        sdr_top = tone_curve(np.maximum(top, 0.0), peak)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.where(top > 1e-9, sdr_top / top, _K1 / 100.0)
        rgb = rgb * gain[..., None]
    return np.power(fit_gamut(rgb), 1 / 2.4)


_lock = threading.Lock()
_files: dict[tuple[str | None, int, int], Path] = {}
_folder: list[Path] = []


def lut_file(hdr: str | None, primaries: int, peak: int) -> Path:
    """The ``.cube`` file for this kind of source, computed on first use in this process."""
    key = (hdr, primaries, peak)
    with _lock:
        if key in _files and _files[key].exists():
            return _files[key]
        if not _folder:
            folder = Path(tempfile.mkdtemp(prefix="gpu-worker-lut-"))
            atexit.register(shutil.rmtree, folder, True)
            _folder.append(folder)
        axis = np.linspace(0.0, 1.0, LUT_SIZE)
        # .cube order: red varies fastest, then green, then blue.
        b, g, r = np.meshgrid(axis, axis, axis, indexing="ij")
        grid = np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)
        table = to_sdr(grid, hdr, primaries, float(peak))
        path = _folder[0] / f"{hdr or 'sdr'}-{primaries}-{peak}.cube"
        tmp = path.with_suffix(".part")
        with tmp.open("w") as handle:
            handle.write(f"LUT_3D_SIZE {LUT_SIZE}\n")
            np.savetxt(handle, table, fmt="%.6f")
        tmp.replace(path)
        _files[key] = path
        return path


def lut_filters(plan: ColourPlan) -> list[tuple[str, str]]:
    """The filters after a scaler that read the source into RGB (``format``) and map it
    (``lut3d``); empty when the source needs no LUT."""
    if plan.lut is None:
        return []
    return [("format", RGB_FORMAT), ("lut3d", f"file={plan.lut}:interp=tetrahedral")]
