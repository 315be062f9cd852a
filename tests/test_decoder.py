"""NVDEC decoding behind a probe: falls back to the CPU where no GPU is, crop maths on the GPU."""

from __future__ import annotations

import pytest

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
