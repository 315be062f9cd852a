"""Every error code reached by a bad job or a bad file, as one clear line, exit code 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helpers
import pytest
from helpers import job_dict

from examples.samples import make_clip, make_music
from gpu_worker.errors import EncoderUnavailable, GpuWorkerError
from gpu_worker.render.encoder import choose_encoder, nvenc_probe


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    run = helpers.run_cli(*args, env=env, cwd=cwd)
    return run.returncode, run.stdout, run.stderr


def write_job(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "job.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "ok.mp4", width=96, height=160, fps=10, seconds=1.0)


def truncated(tmp_path: Path, clip: Path) -> Path:
    data = clip.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 3])
    return path


HOSTILE: dict[str, Callable[[Path, Path], Path]] = {
    "zero bytes": lambda d, c: (d / "empty.mp4", (d / "empty.mp4").write_bytes(b""))[0],
    "text file": lambda d, c: (d / "notes.mp4", (d / "notes.mp4").write_text("hello " * 50))[0],
    "truncated mp4": truncated,
    "random junk": lambda d, c: (
        d / "junk.mp4",
        (d / "junk.mp4").write_bytes(bytes(range(256)) * 40),
    )[0],
}


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("zero bytes", "input_unreadable"),
        ("text file", "input_unreadable"),
        ("truncated mp4", "input_unreadable"),
        ("random junk", "input_unreadable"),
    ],
)
def test_bad_files(tmp_path: Path, clip: Path, case: str, code: str) -> None:
    bad = HOSTILE[case](tmp_path, clip)
    rc, _, err = run_cli("render", str(write_job(tmp_path, job_dict([{"uri": bad.name}]))))
    assert rc == 2
    assert err.strip().splitlines()[-1].startswith(f"error {code}: ")
    assert not (tmp_path / "out.mp4").exists()


def test_playlist_and_concat_script_are_never_followed(tmp_path: Path, clip: Path) -> None:
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(clip.read_bytes())
    (tmp_path / "playlist.mp4").write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{secret}\n#EXT-X-ENDLIST\n"
    )
    (tmp_path / "concat.mp4").write_text(f"ffconcat version 1.0\nfile '{secret}'\n")
    (tmp_path / "padded.mp4").write_text(f"\n\n  #EXTM3U\n#EXTINF:1,\nfile://{secret}\n")
    for name in ("playlist.mp4", "concat.mp4", "padded.mp4"):
        rc, _, err = run_cli("render", str(write_job(tmp_path, job_dict([{"uri": name}]))))
        assert rc == 2 and "error unsupported_input: " in err, (name, err)


def test_missing_input(tmp_path: Path) -> None:
    rc, _, err = run_cli("render", str(write_job(tmp_path, job_dict([{"uri": "nope.mp4"}]))))
    assert rc == 2 and "error input_not_found: nope.mp4: no such file" in err


def test_s3_input_in_local_render_is_explained(tmp_path: Path) -> None:
    rc, _, err = run_cli("render", str(write_job(tmp_path, job_dict([{"uri": "s3://b/k.mp4"}]))))
    assert rc == 2 and "error unsupported_input:" in err and "gpu-worker serve" in err


def test_invalid_job_json_and_contract(tmp_path: Path) -> None:
    rc, _, err = run_cli("render", str(write_job(tmp_path, "{not json")))
    assert rc == 2 and err.startswith("error invalid_job: the job is not valid JSON")
    bad = job_dict([{"uri": "a.mp4", "speed": 2}], output={"width": 101})
    rc, _, err = run_cli("render", str(write_job(tmp_path, bad)))
    assert rc == 2
    assert (
        "$.output.width: Value error, must be even" in err or "$.output.width: must be even" in err
    )
    assert "$.clips[0].speed: Extra inputs are not permitted" in err
    assert len(err.strip().splitlines()) == 1


def test_font_glyph_and_overflow_codes(tmp_path: Path, clip: Path) -> None:
    cases = {
        "font_not_found": {"text": "x", "font": "Nope Sans", "size": 20},
        "glyph_missing": {"text": "日本", "font": "Roboto", "size": 20},
        "text_overflow": {"text": "ÉNORME", "font": "Roboto", "size": 400},
    }
    for code, text in cases.items():
        data = job_dict([{"uri": clip.name}], texts=[text])
        rc, _, err = run_cli("render", str(write_job(tmp_path, data)))
        assert rc == 2 and f"error {code}: " in err, (code, err)


def test_limits(tmp_path: Path, clip: Path) -> None:
    data = job_dict([{"uri": clip.name}] * 3)
    rc, _, err = run_cli(
        "render", str(write_job(tmp_path, data)), env={"GPU_WORKER_MAX_OUTPUT_SECONDS": "2"}
    )
    assert rc == 2 and "error limit_exceeded: the video would last 3.0 s; the limit is 2 s" in err
    rc, _, err = run_cli(
        "render", str(write_job(tmp_path, data)), env={"GPU_WORKER_MAX_CLIPS": "2"}
    )
    assert rc == 2 and "error limit_exceeded: 3 clips" in err


def test_huge_declared_picture_is_refused_before_decoding(tmp_path: Path) -> None:
    # A PNG header claiming 60000 x 60000 pixels, and nothing behind it.
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    (tmp_path / "bomb.png").write_bytes(png)
    data = job_dict([{"uri": "bomb.png", "duration": 1}])
    rc, _, err = run_cli("render", str(write_job(tmp_path, data)))
    assert rc == 2 and "error limit_exceeded: bomb.png: the picture declares far more" in err
    # A picture a little over the side limit names its size.
    from examples.samples import make_image

    make_image(tmp_path / "big.png", width=4100, height=10)
    rc, _, err = run_cli(
        "render", str(write_job(tmp_path, job_dict([{"uri": "big.png", "duration": 1}])))
    )
    assert (
        rc == 2 and "error limit_exceeded: big.png: 4100x10 is over the limit of 4096x4096" in err
    )


def test_music_without_audio_and_bad_transition(tmp_path: Path, clip: Path) -> None:
    silent = make_clip(
        tmp_path / "silent.mp4", width=96, height=160, fps=10, seconds=1, audio_hz=None
    )
    data = job_dict([{"uri": clip.name}], audio={"uri": silent.name})
    rc, _, err = run_cli("render", str(write_job(tmp_path, data)))
    assert rc == 2 and "error invalid_job: audio: silent.mp4 has no audio stream" in err
    data = job_dict(
        [{"uri": clip.name}, {"uri": clip.name, "transition": {"type": "crossfade", "duration": 3}}]
    )
    rc, _, err = run_cli("render", str(write_job(tmp_path, data)))
    assert rc == 2 and "error invalid_job: clips[1].transition" in err
    make_music(tmp_path / "m.m4a", seconds=1)
    data = job_dict([{"uri": "m.m4a"}])
    rc, _, err = run_cli("render", str(write_job(tmp_path, data)))
    assert rc == 2 and "has no video stream" in err


def test_music_that_breaks_midway_fails_the_job_and_leaves_no_video(tmp_path: Path) -> None:
    """The soundtrack is mixed in its own thread: a music file that probes well but cannot
    be decoded past its middle still fails the job with the input's code, and nothing is
    left that looks finished."""
    import av

    clip = make_clip(tmp_path / "clip.mp4", width=96, height=160, fps=10, seconds=4)
    music = make_music(tmp_path / "good.m4a", seconds=4)
    with av.open(str(music)) as container:
        positions = [p.pos for p in container.demux(audio=0) if p.size]
    data = bytearray(music.read_bytes())
    junk = bytes((i * 151 + 7) % 256 for i in range(len(data)))
    start, end = positions[len(positions) // 2], positions[-3]
    data[start:end] = junk[start:end]  # the moov, at the end, stays whole
    (tmp_path / "broken.m4a").write_bytes(data)
    job = job_dict([{"uri": clip.name}], audio={"uri": "broken.m4a"})
    rc, _, err = run_cli("render", str(write_job(tmp_path, job)))
    assert rc == 2
    assert err.strip().splitlines()[-1].startswith("error input_unreadable: broken.m4a")
    assert not (tmp_path / "out.mp4").exists()
    assert not list(tmp_path.glob(".out.*"))


def test_trim_past_end_and_text_after_end(tmp_path: Path, clip: Path) -> None:
    rc, _, err = run_cli(
        "render", str(write_job(tmp_path, job_dict([{"uri": clip.name, "trim_start": 5}])))
    )
    assert rc == 2 and "past the end" in err
    data = job_dict(
        [{"uri": clip.name}], texts=[{"text": "x", "font": "Roboto", "size": 10, "start": 9}]
    )
    rc, _, err = run_cli("render", str(write_job(tmp_path, data)))
    assert rc == 2 and "after the video ends" in err


@pytest.mark.skipif(nvenc_probe()[0], reason="NVENC works on this machine")
def test_forcing_nvenc_without_gpu(tmp_path: Path, clip: Path) -> None:
    with pytest.raises(EncoderUnavailable):
        choose_encoder("nvenc")
    rc, _, err = run_cli(
        "render",
        str(write_job(tmp_path, job_dict([{"uri": clip.name}]))),
        env={"GPU_WORKER_ENCODER": "nvenc"},
    )
    assert rc == 2 and err.startswith("error encoder_unavailable: GPU_WORKER_ENCODER=nvenc")


def test_every_code_is_stable_and_documented() -> None:
    import gpu_worker.errors as errors

    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, GpuWorkerError)
    }
    assert {
        "invalid_job",
        "font_not_found",
        "glyph_missing",
        "text_overflow",
        "input_not_found",
        "input_unreadable",
        "unsupported_input",
        "input_forbidden",
        "limit_exceeded",
        "encoder_unavailable",
        "transient",
        "internal",
    } <= codes
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    for code in codes:
        assert f"`{code}`" in readme, f"README does not explain {code}"


def test_other_url_schemes_are_forbidden(tmp_path: Path) -> None:
    for uri in ("http://169.254.169.254/latest/meta-data", "file:///etc/passwd", "ftp://x/a.mp4"):
        rc, _, err = run_cli("render", str(write_job(tmp_path, job_dict([{"uri": uri}]))))
        assert rc == 2 and "error input_forbidden: " in err, (uri, err)
