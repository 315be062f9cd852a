"""The images' install steps work: the builder stage of each Dockerfile, replayed here.

No Docker engine is needed. The test reads the builder stage of the Dockerfile (its COPY and
RUN instructions), lays the copied files out under a fake root in tmp_path, runs the same
RUN commands with every absolute path moved under that root, then runs the installed
``gpu-worker doctor`` and ``gpu-worker doctor --quick`` (what the final stage and the health
check run). Pip's cache stays on here (the images set PIP_NO_CACHE_DIR=1), so a machine that
has installed the project before resolves from its cache.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _builder_stage(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    steps: list[tuple[str, str]] = []
    stage = -1
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
            continue
        if stage == 0:
            steps.append((keyword.upper(), rest.strip()))
    return steps


def _under(root: Path, path: str, workdir: str) -> Path:
    absolute = PurePosixPath(workdir, path)
    return root / str(absolute).lstrip("/")


def _replay_builder(dockerfile: Path, root: Path) -> dict[str, str]:
    """Run the builder stage of ``dockerfile`` under ``root``; returns its ENV."""
    workdir = "/"
    env: dict[str, str] = {}
    for keyword, rest in _builder_stage(dockerfile):
        if keyword == "WORKDIR":
            workdir = str(PurePosixPath(workdir, rest))
            _under(root, workdir, "/").mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
        elif keyword == "COPY":
            *sources, dest = shlex.split(rest)
            assert not any(s.startswith("--") for s in sources), "builder COPY takes no flags"
            target = _under(root, dest, workdir)
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(
                        src,
                        target,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"),
                    )
                else:
                    dest_file = target / src.name if dest.endswith("/") else target
                    dest_file.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest_file)
        elif keyword == "RUN":
            command = re.sub(r"(?<![\w.])/(?=[\w.])", f"{root}/", rest)
            run_env = {**os.environ, **env}
            run_env.pop("PIP_NO_CACHE_DIR", None)  # the cache makes this test minutes faster
            run_env.pop("VIRTUAL_ENV", None)
            # the image's python3 is its base's 3.11; here, the interpreter running the tests
            run_env["PYTHON"] = sys.executable
            proc = subprocess.run(
                ["sh", "-c", command],
                cwd=_under(root, workdir, "/"),
                env=run_env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert proc.returncode == 0, f"RUN {rest}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        elif keyword not in {"ARG", "LABEL", "SHELL"}:
            raise AssertionError(f"builder stage instruction this test cannot replay: {keyword}")
    return env


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("image-root")
    _replay_builder(ROOT / "Dockerfile.cpu", root)
    venv = root / "opt" / "venv"
    assert (venv / "bin" / "gpu-worker").exists()
    return venv


def _doctor(venv: Path, *args: str, encoder: str = "x264") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPU_WORKER_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["GPU_WORKER_ENCODER"] = encoder
    return subprocess.run(
        [str(venv / "bin" / "gpu-worker"), "doctor", *args],
        cwd=venv.parent,  # not the repository: the installed package must stand alone
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_both_images_share_the_install_steps() -> None:
    cpu = [s for s in _builder_stage(ROOT / "Dockerfile.cpu") if s[0] in {"COPY", "RUN"}]
    cuda = [s for s in _builder_stage(ROOT / "Dockerfile.cuda") if s[0] in {"COPY", "RUN"}]
    assert cpu == cuda


def test_installed_worker_passes_doctor(installed_venv: Path) -> None:
    proc = _doctor(installed_venv)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "libx264" in output
    match = re.search(r"fonts?\W+(\d+)", output, re.IGNORECASE)
    assert match and int(match.group(1)) > 0, output


def test_installed_worker_passes_quick_health_check(installed_venv: Path) -> None:
    proc = _doctor(installed_venv, "--quick", encoder="auto")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_installed_package_is_not_the_checkout(installed_venv: Path) -> None:
    python = installed_venv / "bin" / "python"
    proc = subprocess.run(
        [str(python), "-c", "import gpu_worker, sys; print(gpu_worker.__file__)"],
        cwd=installed_venv.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    location = Path(proc.stdout.strip())
    assert installed_venv in location.parents, location
    assert (location.parent / "_fonts").is_dir(), "the wheel packs fonts/ as gpu_worker/_fonts"
