"""A TrueType font whose hinting programs FreeType cannot run is the job's fault: the render
stops with ``input_unreadable`` naming the font, before any clip is read, leaving no output."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from helpers import CALL, ENDF, FDEF, PUSHB_1, UNDEFINED_OPCODE, hinted_font

from gpu_worker.cli import main


@pytest.mark.parametrize(
    ("fpgm", "prep", "reason"),
    [
        (bytes([PUSHB_1, 0, FDEF, PUSHB_1, 1, FDEF, ENDF, ENDF]), None, "nested DEFS"),
        (None, bytes([PUSHB_1, 200, CALL]), "invalid reference"),
        (None, bytes([UNDEFINED_OPCODE]), "invalid opcode"),
    ],
    ids=["fpgm-nested-defs", "prep-calls-undefined", "prep-undefined-opcode"],
)
def test_a_font_whose_hinting_fails_is_input_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fpgm: bytes, prep: bytes, reason: str
) -> None:
    (tmp_path / "hinted.ttf").write_bytes(hinted_font(fpgm, prep))
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(64))  # not decodable
    job = {
        "version": 1,
        "job_id": "font",
        "output": {"uri": "out.mp4", "width": 64, "height": 64, "fps": 10},
        "clips": [{"uri": "clip.mp4", "duration": 0.5}],
        "texts": [{"text": "Hotel", "font_uri": "hinted.ttf", "size": 20}],
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    code = main(["render", str(tmp_path / "job.json"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err.startswith("error input_unreadable: font hinted.ttf: "), err
    assert reason in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "hinted.ttf", "job.json"]


def test_the_same_font_with_its_own_programs_renders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.samples import make_image

    (tmp_path / "hinted.ttf").write_bytes(hinted_font())
    make_image(tmp_path / "still.png", 64, 64)
    job = {
        "version": 1,
        "job_id": "font",
        "output": {"uri": "out.mp4", "width": 64, "height": 64, "fps": 10},
        "clips": [{"uri": "still.png", "duration": 0.5}],
        "texts": [{"text": "Hotel", "font_uri": "hinted.ttf", "size": 20}],
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert main(["render", str(tmp_path / "job.json"), "--quiet"]) == 0
    assert (tmp_path / "out.mp4").stat().st_size > 0


def test_a_full_disk_while_drawing_stays_the_workers_fault() -> None:
    from gpu_worker.errors import InputUnreadable
    from gpu_worker.render.fonts import freetype_errors

    unreadable = pytest.raises(InputUnreadable, match=r"^font f\.ttf: .*invalid reference")
    with unreadable, freetype_errors("f.ttf"):
        raise OSError("invalid reference")  # how FreeType's errors reach Python
    with pytest.raises(OSError) as raised, freetype_errors("f.ttf"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert not isinstance(raised.value, InputUnreadable)
