"""NVDEC decoding behind a probe: falls back to the CPU where no GPU is, crop maths on the GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import read_output

from gpu_worker.errors import DecoderUnavailable
from gpu_worker.job import Fit
from gpu_worker.render.decoder import choose_decoder, cuvid_options, nvdec_probe

NO_NVDEC = not nvdec_probe("h264")[0]


@pytest.mark.skipif(not NO_NVDEC, reason="NVDEC works on this machine")
def test_falls_back_to_software_without_a_gpu() -> None:
    choice = choose_decoder("h264")
    assert choice.name is None and not choice.hardware
    assert "NVDEC" in choice.reason
    with pytest.raises(DecoderUnavailable) as err:
        choose_decoder("h264", "nvdec")
    assert err.value.code == "decoder_unavailable"


def test_cpu_forced_and_unknown_codecs() -> None:
    assert choose_decoder("h264", "cpu").name is None
    assert choose_decoder("prores", "auto").name is None  # no NVDEC decoder for it


@pytest.mark.parametrize(
    ("fit", "rotation", "stored", "options", "size"),
    [
        # Landscape 1920x1080 into portrait 1080x1920: keep the middle 608 columns.
        (Fit.COVER, 0, (1920, 1080), {"crop": "0x0x656x656", "resize": "1080x1920"}, (1080, 1920)),
        # Already the right shape: resize only.
        (Fit.COVER, 0, (720, 1280), {"crop": "0x0x0x0", "resize": "1080x1920"}, (1080, 1920)),
        # A phone clip stored landscape with a 90° display matrix: resized in stored
        # orientation, turned upright by the filter graph afterwards.
        (Fit.COVER, 90, (1920, 1080), {"crop": "0x0x0x0", "resize": "1920x1080"}, (1920, 1080)),
        # A square source stored turned: crop rows in stored coordinates (its columns upright).
        (
            Fit.COVER,
            270,
            (1000, 1000),
            {"crop": "219x219x0x0", "resize": "1920x1080"},
            (1920, 1080),
        ),
        (Fit.CONTAIN, 0, (1920, 1080), {}, (1920, 1080)),
        (Fit.BLUR, 0, (1920, 1080), {}, (1920, 1080)),
    ],
)
def test_cuvid_crop_and_resize(
    fit: Fit,
    rotation: int,
    stored: tuple[int, int],
    options: dict[str, str],
    size: tuple[int, int],
) -> None:
    got, w, h = cuvid_options(fit, rotation, stored[0], stored[1], 1080, 1920)
    assert got == options and (w, h) == size


@pytest.mark.skipif(NO_NVDEC, reason="no NVDEC session opens here (no NVIDIA GPU)")
def test_nvdec_renders_what_the_cpu_renders(tmp_path: Path) -> None:
    # Given an H.264 clip turned by a display matrix, covered into a portrait frame
    from examples.samples import make_clip
    from gpu_worker.job import parse_job
    from gpu_worker.render.encoder import choose_encoder
    from gpu_worker.render.pipeline import render_job

    clip = make_clip(tmp_path / "a.mp4", width=320, height=180, fps=10, seconds=1.0)
    job = parse_job(
        {
            "version": 1,
            "job_id": "nvdec",
            "output": {"uri": "out.mp4", "width": 144, "height": 256, "fps": 10},
            "clips": [{"uri": str(clip)}],
        }
    )
    outputs = {}
    for decoder in ("nvdec", "cpu"):
        out = tmp_path / f"{decoder}.mp4"
        render_job(
            job, base_dir=tmp_path, output=out, encoder=choose_encoder("x264"), decoder=decoder
        )
        outputs[decoder] = read_output(out)
    # Then NVDEC's crop and resize give the same pictures as FFmpeg's, within scaler noise
    gpu, cpu = outputs["nvdec"], outputs["cpu"]
    assert len(gpu.frames) == len(cpu.frames) == 10
    for a, b in zip(gpu.frames, cpu.frames, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4
