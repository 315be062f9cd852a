"""Loudness normalisation and ducking, read back from the rendered MP4 and measured with an
independent meter (pyloudnorm's BS.1770, scipy's oversampling for true peak): the mix lands
within 1 LU of the target with its true peak at or below -1 dBTP, and the music goes down
while a clip speaks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyloudnorm
import pytest
from helpers import job_dict
from scipy.signal import resample_poly

from examples.samples import make_clip, make_music
from gpu_worker.errors import InvalidJob
from gpu_worker.job import parse_job
from gpu_worker.render.limiter import Limiter

RATE = 48_000


def lufs(audio: np.ndarray) -> float:
    return float(pyloudnorm.Meter(RATE).integrated_loudness(audio.T.astype(np.float64)))


def true_peak_db(audio: np.ndarray) -> float:
    up = resample_poly(audio.astype(np.float64), 4, 1, axis=1)
    return float(20 * np.log10(np.abs(up).max()))


def level_db(audio: np.ndarray, hz: float, t0: float, t1: float) -> float:
    """The level of the ``hz`` component of the left channel between t0 and t1 seconds."""
    seg = audio[0, round(t0 * RATE) : round(t1 * RATE)].astype(np.float64)
    t = np.arange(seg.size) / RATE
    amp = 2 * abs(np.mean(seg * np.exp(-2j * np.pi * hz * t)))
    return float(20 * np.log10(amp))


@pytest.mark.parametrize(("amplitude", "target"), [(0.9, -14.0), (0.02, -16.0)])
def test_the_mix_is_normalised_to_the_target(
    tmp_path: Path, render: Callable[..., Any], amplitude: float, target: float
) -> None:
    make_clip(tmp_path / "a.mp4", width=96, height=160, fps=10, seconds=1.5, audio_hz=None)
    music = make_music(tmp_path / "m.wav", seconds=1.5, hz=330, amplitude=amplitude)
    with av.open(str(music)) as source:
        samples = np.concatenate([f.to_ndarray() for f in source.decode(audio=0)], axis=1)
    assert abs(lufs(samples / 32768) - target) > 3  # the source is far from the target
    data = job_dict([{"uri": "a.mp4"}], audio={"uri": "m.wav", "loudness": target, "loop": False})
    _, out = render(data)
    assert lufs(out.audio) == pytest.approx(target, abs=1.0)
    assert true_peak_db(out.audio) <= -1.0


def test_clip_sound_alone_is_normalised(tmp_path: Path, render: Callable[..., Any]) -> None:
    make_clip(tmp_path / "a.mp4", width=96, height=160, fps=10, seconds=1.5, audio_hz=500)
    _, out = render(job_dict([{"uri": "a.mp4", "volume": 0.2}], audio={"loudness": -18}))
    assert lufs(out.audio) == pytest.approx(-18.0, abs=1.0)
    assert true_peak_db(out.audio) <= -1.0


def test_true_peak_limiter_catches_peaks_between_samples() -> None:
    # A quarter-rate sine sampled at 45 degrees: every sample is at 0.707 of the true peak.
    n = np.arange(RATE)
    wave = np.sin(np.pi / 2 * n + np.pi / 4).astype(np.float32)
    block = np.stack([wave, wave]) * np.float32(0.95)
    assert np.abs(block).max() < 10 ** (-1 / 20) < 0.95  # samples under -1 dBFS, true peak not
    sample_peak = Limiter(RATE)(block.copy())
    assert true_peak_db(sample_peak) > -1.0
    limited = Limiter(RATE, threshold_db=-1.0, true_peak=True)(block.copy())
    assert true_peak_db(limited) <= -0.95


def test_music_ducks_while_a_clip_speaks(tmp_path: Path, render: Callable[..., Any]) -> None:
    make_clip(tmp_path / "quiet.mp4", width=96, height=160, fps=10, seconds=1.0, audio_hz=None)
    make_clip(tmp_path / "talk.mp4", width=96, height=160, fps=10, seconds=1.0, audio_hz=1000)
    make_music(tmp_path / "m.wav", seconds=3.0, hz=220, amplitude=0.1)
    clips = [{"uri": "quiet.mp4"}, {"uri": "talk.mp4", "volume": 0.5}, {"uri": "quiet.mp4"}]
    duck = {"db": -12, "attack": 0.2, "release": 0.3}
    _, ducked = render(job_dict(clips, audio={"uri": "m.wav", "duck": duck}))

    music = 20 * np.log10(0.1)  # the music's level as made
    before = level_db(ducked.audio, 220, 0.2, 0.9)
    during = level_db(ducked.audio, 220, 1.3, 1.9)  # after the attack
    after = level_db(ducked.audio, 220, 2.4, 2.9)  # after the release
    assert before == pytest.approx(music, abs=0.5)
    assert during - before == pytest.approx(-12.0, abs=1.5)
    assert after == pytest.approx(music, abs=0.5)
    # The voice itself (a 0.3 tone at volume 0.5) is untouched; the ramp is gradual.
    assert level_db(ducked.audio, 1000, 1.3, 1.9) == pytest.approx(20 * np.log10(0.15), abs=0.5)
    mid_attack = level_db(ducked.audio, 220, 1.05, 1.15)
    assert before - 10 < mid_attack < before - 2


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        ({"duck": {"db": -12}}, "$.audio: duck lowers the music: give the music's uri"),
        ({"loudness": 3}, "$.audio.loudness: Input should be less than or equal to -5"),
        ({"uri": "m.wav", "duck": {"db": 6}}, "$.audio.duck.db: Input should be less than 0"),
    ],
)
def test_bad_audio_settings_are_invalid(audio: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJob) as caught:
        parse_job(job_dict([{"uri": "a.mp4"}], audio=audio))
    assert message in caught.value.message
