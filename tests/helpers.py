"""Test helpers: job dicts for tiny renders, and reading a rendered MP4 back."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import av
import numpy as np


@dataclass
class Output:
    """A rendered MP4 read back: RGB frames, their times, the audio as (2, n) samples."""

    frames: list[np.ndarray]
    times: list[float]
    audio: np.ndarray
    audio_rate: int
    duration: float
    video_codec: str
    profile: str | None
    pix_fmt: str
    colorspace: Any


def read_output(path: Path) -> Output:
    frames: list[np.ndarray] = []
    times: list[float] = []
    with av.open(str(path)) as container:
        vstream = container.streams.video[0]
        codec = vstream.codec_context.name
        profile = vstream.codec_context.profile
        pix_fmt = vstream.codec_context.format.name
        colorspace = vstream.codec_context.colorspace
        duration = container.duration / av.time_base if container.duration else 0.0
        for frame in container.decode(vstream):
            rgb = frame.reformat(format="rgb24", src_colorspace="ITU709", dst_colorspace="ITU709")
            frames.append(rgb.to_ndarray())
            times.append(float(frame.time or 0.0))
    chunks = []
    rate = 48_000
    with av.open(str(path)) as container:
        if container.streams.audio:
            astream = container.streams.audio[0]
            rate = astream.codec_context.sample_rate
            for aframe in container.decode(astream):
                chunks.append(
                    aframe.to_ndarray().reshape(2, -1)
                    if aframe.format.is_planar
                    else aframe.to_ndarray().reshape(-1, 2).T
                )
    audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((2, 0), np.float32)
    return Output(frames, times, audio, rate, duration, codec, profile, pix_fmt, colorspace)


def job_dict(clips: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    output = {"uri": "out.mp4", "width": 96, "height": 160, "fps": 10}
    output.update(extra.pop("output", {}))
    return {"version": 1, "job_id": "test-job", "output": output, "clips": clips, **extra}


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ imported as a module (the folder is not a package)."""
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", root / "benchmarks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclass
class CliRun:
    """What one ``gpu-worker`` command did: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> CliRun:
    """``gpu-worker ARGS`` in this process (``cli.main``), with ``env`` added to the
    environment and ``cwd`` as the working folder for the call; fast enough to run many."""
    import contextlib
    import io
    import logging
    import os

    from gpu_worker import cli

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    root = logging.getLogger()
    saved_logging = (list(root.handlers), root.level)
    # The local servers other tests leave running (moto's werkzeug) log from their own
    # threads: keep those lines out of what this command printed.
    werkzeug = logging.getLogger("werkzeug")
    saved_werkzeug = werkzeug.propagate
    werkzeug.propagate = False
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        werkzeug.propagate = saved_werkzeug
        root.handlers[:] = saved_logging[0]
        root.setLevel(saved_logging[1])
    return CliRun(code, out.getvalue(), err.getvalue())


# TrueType instructions, to write hinting programs that FreeType cannot run.
PUSHB_1, FDEF, ENDF, CALL, UNDEFINED_OPCODE = 0xB0, 0x2C, 0x2D, 0x2B, 0x28


def hinted_font(fpgm: bytes | None = None, prep: bytes | None = None, text: str = "Hotel") -> bytes:
    """Roboto cut down to ``text``, hinting kept, its font or control-value program replaced."""
    import io

    from fontTools import subset
    from fontTools.ttLib import TTFont
    from fontTools.ttLib.tables import ttProgram

    font = TTFont(Path(__file__).resolve().parents[1] / "fonts/Roboto/Roboto_400Regular.ttf")
    options = subset.Options()
    options.hinting = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text)
    subsetter.subset(font)
    for tag, code in (("fpgm", fpgm), ("prep", prep)):
        if code is not None:
            program = ttProgram.Program()
            program.fromBytecode(code)
            font[tag].program = program
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()
