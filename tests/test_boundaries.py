"""The architecture holds: the import contracts fail on a forbidden import, the client is light."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aws_fixtures import SECRET

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` (as ``make lint`` runs it) on the copy of the package in ``tree``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("tree")
    shutil.copytree(
        ROOT / "gpu_worker", copy / "gpu_worker", ignore=shutil.ignore_patterns("*.pyc")
    )
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    clean = _lint_imports(copy)  # the contracts hold on the real tree
    assert clean.returncode == 0, clean.stdout + clean.stderr
    return copy


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")
@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("render/timeline.py", "import boto3", "render core imports neither"),
        ("render/pipeline.py", "from gpu_worker.service import storage", "render core"),
        ("service/jobs.py", "from gpu_worker import cli", "Nothing imports the command line"),
        ("client.py", "import numpy", "The client loads no FFmpeg"),
    ],
)
def test_a_forbidden_import_breaks_the_lint(
    tree: Path, module: str, line: str, contract: str
) -> None:
    # Given a copy of the package whose contracts are kept (the fixture checks it),
    # When one module gains a forbidden import
    path = tree / "gpu_worker" / module
    original = path.read_text(encoding="utf-8")
    path.write_text(f"{line}  # noqa\n{original}", encoding="utf-8")
    try:
        broken = _lint_imports(tree)
    finally:
        path.write_text(original, encoding="utf-8")
    # Then lint-imports (and so `make lint`) fails, naming the broken contract
    assert broken.returncode != 0
    assert contract in broken.stdout and "BROKEN" in broken.stdout


def test_the_client_imports_without_ffmpeg_numpy_or_pillow() -> None:
    # A backend that submits jobs and checks webhooks: av, numpy and PIL cannot even be found.
    script = textwrap.dedent(
        f"""
        import importlib.abc, json, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {{"av", "numpy", "PIL"}}:
                    raise ImportError(f"{{name}} is blocked")
                return None

        sys.meta_path.insert(0, Block())
        from gpu_worker import client
        from gpu_worker.service.webhook import parse_secret, sign

        body = json.dumps({{"type": "video.completed", "job_id": "j"}}).encode()
        headers = {{
            "webhook-id": "msg_1",
            "webhook-timestamp": "1700000000",
            "webhook-signature": sign(parse_secret({SECRET!r}), "msg_1", 1700000000, body),
        }}
        event = client.verify_webhook(headers, body, {SECRET!r}, now=1700000000)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {{"av", "numpy", "PIL"}})
        print(event["job_id"], loaded)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "j []"
