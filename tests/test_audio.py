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
