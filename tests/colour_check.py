"""Colour differences as a viewer sees them: CIE L*a*b* and ΔE*ab (CIE 1976) of BT.709
pictures shown on a BT.1886 (gamma 2.4) display."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

# Linear BT.709 RGB → CIE XYZ (D65).
_RGB709_TO_XYZ = np.array(
    [
        [0.4124, 0.3576, 0.1805],
        [0.2126, 0.7152, 0.0722],
        [0.0193, 0.1192, 0.9505],
    ]
)
_WHITE = _RGB709_TO_XYZ @ np.ones(3)


def lab(linear709: F64) -> F64:
    """Linear BT.709 RGB (1.0 = display white; (..., 3)) → CIE L*a*b*."""
    xyz = np.asarray(linear709, np.float64) @ _RGB709_TO_XYZ.T / _WHITE
    d = 6 / 29
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def shown(rgb8: F64) -> F64:
    """8-bit BT.709 R'G'B' → the linear light a BT.1886 display shows (1.0 = white)."""
    return np.power(np.asarray(rgb8, np.float64) / 255.0, 2.4)


def delta_e(a_linear: F64, b_linear: F64) -> float:
    """ΔE*ab between two linear BT.709 colours."""
    return float(np.linalg.norm(lab(a_linear) - lab(b_linear), axis=-1))


def hue_angle(linear709: F64) -> float:
    """CIE L*a*b* hue angle in degrees."""
    values = lab(linear709)
    return float(np.degrees(np.arctan2(values[..., 2], values[..., 1])) % 360)


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


def oklab_hue(linear709: F64) -> float:
    """Hue angle in degrees in Oklab, whose hue lines look constant to a viewer (CIELAB's
    bend, notably for saturated reds and blues)."""
    lab_values = np.cbrt(np.asarray(linear709, np.float64) @ _OKLAB_M1.T) @ _OKLAB_M2.T
    return float(np.degrees(np.arctan2(lab_values[..., 2], lab_values[..., 1])) % 360)
