"""The command line as a user meets it: outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from helpers import CliRun, job_dict, read_output, run_cli
from PIL import Image

from examples.samples import make_clip

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None) -> CliRun:
    return run_cli(*args, cwd=cwd)


def test_python_dash_m_runs_the_command_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gpu_worker", "validate", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error invalid_job: no job file at")


def test_render_prints_path_duration_and_time(tmp_path: Path) -> None:
    make_clip(tmp_path / "media" / "a.mp4", width=96, height=160, fps=10, seconds=1.0)
    job = job_dict([{"uri": "media/a.mp4"}], texts=[{"text": "Été", "font": "Roboto", "size": 20}])
    job["output"]["uri"] = "renders/a.mp4"
    (tmp_path / "job.json").write_text(json.dumps(job))
    # Relative URIs are relative to the job file, wherever the command runs from.
    proc = cli("render", str(tmp_path / "job.json"), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(tmp_path / "renders" / "a.mp4")
    assert "duration 1.00 s" in lines[1] and "rendered in" in lines[1]
    assert len(read_output(tmp_path / "renders" / "a.mp4").frames) == 10
    quiet = cli("render", str(tmp_path / "job.json"), "-o", str(tmp_path / "b.mp4"), "--quiet")
    assert quiet.returncode == 0 and quiet.stdout.strip() == str(tmp_path / "b.mp4")
    assert quiet.stderr == ""  # no log lines either


def test_preview_writes_png(tmp_path: Path) -> None:
    make_clip(tmp_path / "a.mp4", width=96, height=160, fps=10, seconds=1.0)
    (tmp_path / "job.json").write_text(json.dumps(job_dict([{"uri": "a.mp4"}])))
    proc = cli("preview", str(tmp_path / "job.json"), "--at", "0.5", "-o", str(tmp_path / "f.png"))
    assert proc.returncode == 0, proc.stderr
    image = np.asarray(Image.open(tmp_path / "f.png"))
    assert image.shape == (160, 96, 3)
    late = cli("preview", str(tmp_path / "job.json"), "--at", "7", "-o", str(tmp_path / "g.png"))
    assert (
        late.returncode == 2 and "error invalid_job: --at 7 s is outside the video" in late.stderr
    )


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    bad = {
        "version": 1,
        "job_id": "bad id",
        "output": {"uri": "o.mp4", "fps": 0},
        "clips": [{"uri": "a.mp4", "fit": "zoom"}],
        "texts": [{"text": "x", "font": "Nope", "size": 10}],
    }
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    proc = cli("validate", str(tmp_path / "bad.json"))
    assert proc.returncode == 2
    paths = [line.split(":")[0] for line in proc.stdout.splitlines()]
    assert paths == ["$.job_id", "$.output.fps", "$.clips[0].fit"]
    good = job_dict([{"uri": "a.mp4"}], texts=[{"text": "x", "font": "Nope", "size": 10}])
    (tmp_path / "fonts.json").write_text(json.dumps(good))
    proc = cli("validate", str(tmp_path / "fonts.json"))
    assert proc.returncode == 2 and proc.stdout.startswith("$.texts[0].font: font_not_found")
    (tmp_path / "ok.json").write_text(json.dumps(job_dict([{"uri": "a.mp4"}])))
    assert cli("validate", str(tmp_path / "ok.json")).returncode == 0


def test_schema_fonts_doctor() -> None:
    schema = json.loads(cli("schema").stdout)
    assert schema["title"].startswith("gpu-worker render job")
    fonts = cli("fonts")
    assert fonts.returncode == 0 and "Playfair Display" in fonts.stdout
    assert "60 faces in 4 families" in fonts.stdout
    doctor = cli("doctor")
    assert doctor.returncode == 0
    assert "libx264" in doctor.stdout and "NVENC probe:" in doctor.stdout
    quick = cli("doctor", "--quick")
    assert quick.returncode == 0 and quick.stdout.startswith("ok encoder=")


def test_module_and_console_script_agree() -> None:
    script = Path(sys.executable).with_name("gpu-worker")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "render" in proc.stdout
