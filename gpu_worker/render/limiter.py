"""A peak limiter with a soft knee for the soundtrack: sources that sum above full scale are
turned down smoothly instead of being clipped flat.

The mix is cut into 10 ms windows. Each window's peak asks for a gain (0 dB below the knee,
a quadratic soft knee around the threshold, exactly down to the threshold above it); gains
recover at :data:`RELEASE_DB_PER_SECOND`. Inside a window the gain moves linearly between the
lower of its own and its neighbour's gain at each edge, so it never exceeds what the window's
peak allows (no overshoot) and never jumps (no clicks). State carries over from block to block.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]

THRESHOLD_DB = -1.0  # the ceiling: no sample of the limited mix goes above it
KNEE_DB = 6.0  # width of the soft knee around the threshold
RELEASE_DB_PER_SECOND = 20.0
WINDOW = 480  # samples: 10 ms at 48 kHz


def knee_gain_db(peak_db: float | NDArray[np.float64]) -> NDArray[np.float64]:
    """Gain (dB, ≤ 0) for a window whose peak is ``peak_db`` dBFS: 0 below the knee, the
    quadratic knee within it, and down to exactly the threshold above it."""
    over = np.asarray(peak_db, np.float64) - THRESHOLD_DB
    half = KNEE_DB / 2
    in_knee = -((over + half) ** 2) / (2 * KNEE_DB)
    return np.where(over <= -half, 0.0, np.where(over >= half, -over, in_knee))


class Limiter:
    """Limits a stream of (channels, n) float blocks; one instance per soundtrack."""

    def __init__(self, rate: int = 48_000) -> None:
        self.gain = 1.0  # the gain the previous block ended with
        windows_per_second = rate / WINDOW
        self.release = 10 ** (RELEASE_DB_PER_SECOND / windows_per_second / 20)

    def __call__(self, block: F32) -> F32:
        """``block`` limited in place (and returned)."""
        n = block.shape[1]
        if n == 0:
            return block
        count = math.ceil(n / WINDOW)
        padded = np.zeros((block.shape[0], count * WINDOW), np.float32)
        padded[:, :n] = np.abs(block)
        peaks = padded.reshape(block.shape[0], count, WINDOW).max(axis=(0, 2))
        if peaks.max() <= 10 ** ((THRESHOLD_DB - KNEE_DB / 2) / 20) and self.gain >= 1.0:
            return block  # the common case: nothing near full scale, nothing to do
        with np.errstate(divide="ignore"):
            peak_db = 20 * np.log10(np.maximum(peaks, 1e-9))
        wanted = 10 ** (knee_gain_db(peak_db) / 20)
        gains = np.empty(count)
        level = self.gain
        for i, want in enumerate(wanted):  # instant attack, steady release
            level = min(float(want), level * self.release, 1.0)
            gains[i] = level
        # Edge gains: each edge takes the lower of the two windows it joins.
        edges = np.empty(count + 1)
        edges[0] = min(self.gain, gains[0])
        edges[1:-1] = np.minimum(gains[:-1], gains[1:])
        edges[-1] = gains[-1]
        ramp = np.linspace(0.0, 1.0, WINDOW, endpoint=False)
        per_sample = (edges[:-1, None] + (edges[1:] - edges[:-1])[:, None] * ramp).reshape(-1)
        block *= per_sample[:n].astype(np.float32)
        self.gain = float(gains[-1])
        return block
