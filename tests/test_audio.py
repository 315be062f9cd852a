"""The soundtrack mixer: gain curves as a table, streaming blocks, loops without gaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from examples.samples import make_music
from gpu_worker.limits import Limits
from gpu_worker.render.audio import AAC_FRAME, BLOCK, RATE, Mixer, Source, ramp


@pytest.mark.parametrize(
    ("n", "fade_in", "fade_out", "expected"),
    [
        (4, 0, 0, [1, 1, 1, 1]),
        (4, 2, 0, [0, 0.5, 1, 1]),
        (4, 0, 2, [1, 1, 1, 0]),
        (5, 0, 3, [1, 1, 1, 0.5, 0]),
        (4, 4, 4, [0, 0.25 * 2 / 3, 0.5 * 1 / 3, 0]),
    ],
)
def test_ramp(n: int, fade_in: int, fade_out: int, expected: list[float]) -> None:
    assert ramp(n, fade_in, fade_out) == pytest.approx(expected)


def test_looped_music_has_no_gap_and_frames_are_exact(tmp_path: Path) -> None:
    music = make_music(tmp_path / "m.m4a", seconds=0.7, amplitude=0.4)
    total = round(2.5 * RATE)
    source = Source(
        music, "m.m4a", start=0.0, at=0, length=total, gain=1.0, fade_in=0, fade_out=0, loop=True
    )
    blocks = list(Mixer(total, [source], Limits()).blocks())
    assert [b.shape[1] for b in blocks[:-1]] == [BLOCK] * (len(blocks) - 1)
    mix = np.concatenate(blocks, axis=1)
    assert mix.shape == (2, total)
    # Every 50 ms window holds the tone: no silent hole where the loop restarts.
    window = RATE // 20
    rms = [
        float(np.sqrt(np.mean(mix[:, i : i + window] ** 2)))
        for i in range(window, total - window, window)
    ]
    assert min(rms) > 0.2
    frames = list(Mixer(total, [source], Limits()).frames())
    assert [f.pts for f in frames[:3]] == [0, AAC_FRAME, 2 * AAC_FRAME]
    assert sum(f.samples for f in frames) == total


def test_placed_source_and_silence_elsewhere(tmp_path: Path) -> None:
    music = make_music(tmp_path / "m.wav", seconds=3.0, amplitude=0.5)
    total = 3 * RATE
    source = Source(
        music, "m.wav", start=1.0, at=RATE, length=RATE, gain=0.5, fade_in=0, fade_out=0
    )
    mix = np.concatenate(list(Mixer(total, [source], Limits()).blocks()), axis=1)
    assert np.abs(mix[:, : RATE - 10]).max() == 0
    assert np.abs(mix[:, 2 * RATE + 10 :]).max() == 0
    assert float(np.sqrt(np.mean(mix[:, RATE + 100 : 2 * RATE - 100] ** 2))) == pytest.approx(
        0.25 / np.sqrt(2), rel=0.05
    )


def _mix(tmp_path: Path, amplitudes: list[float], seconds: float = 1.0) -> np.ndarray:
    total = round(seconds * RATE)
    sources = [
        Source(
            make_music(tmp_path / f"tone-{i}.wav", seconds=seconds, amplitude=a),
            f"tone-{i}.wav",
            start=0.0,
            at=0,
            length=total,
            gain=1.0,
            fade_in=0,
            fade_out=0,
        )
        for i, a in enumerate(amplitudes)
    ]
    return np.concatenate(list(Mixer(total, sources, Limits()).blocks()), axis=1)


def test_sources_summing_above_full_scale_are_limited_not_clipped(tmp_path: Path) -> None:
    # Given two tones in phase whose sum peaks at 1.6 (4 dB over full scale)
    mix = _mix(tmp_path, [0.8, 0.8])
    ceiling = 10 ** (-1 / 20)
    # Then no sample goes above the limiter's ceiling (-1 dBFS)...
    assert np.abs(mix).max() <= ceiling + 1e-4
    # ...and past the first 20 ms the tone keeps its shape: a sine scaled down, not one
    # with flat tops (clipping 1.6 at 1.0 leaves a residual of 17 % against a sine).
    steady = mix[0, RATE // 50 :]
    t = np.arange(steady.size) / RATE + 1 / 50
    sine = np.sin(2 * np.pi * 220.0 * t)
    cosine = np.cos(2 * np.pi * 220.0 * t)
    a, b = np.linalg.lstsq(np.stack([sine, cosine], 1), steady, rcond=None)[0]
    fitted = a * sine + b * cosine
    residual = np.sqrt(np.mean((steady - fitted) ** 2)) / np.sqrt(np.mean(fitted**2))
    assert residual < 0.01
    assert 0.8 < np.hypot(a, b) <= ceiling + 1e-4


def test_a_mix_below_the_knee_is_untouched(tmp_path: Path) -> None:
    quiet = _mix(tmp_path, [0.3, 0.2])
    reference = _mix(tmp_path, [0.3]) + _mix(tmp_path, [0.2])
    assert np.abs(quiet - reference).max() < 1e-6
