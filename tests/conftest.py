"""Shared fixtures: a media folder, rendering a job dict and reading the result back."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Output, read_output

from gpu_worker.job import parse_job
from gpu_worker.render.pipeline import RenderResult, render_job


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Commands run in-process install their JSON log handler on the root logger; put the
    test's own handlers back after each test, so no handler outlives the stream it writes to."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture
def render(tmp_path: Path) -> Callable[..., tuple[RenderResult, Output]]:
    """Render a job dict into tmp_path and read the result back."""

    def _render(data: dict[str, Any], base_dir: Path | None = None) -> tuple[RenderResult, Output]:
        job = parse_job(json.loads(json.dumps(data)))
        out = tmp_path / "out.mp4"
        result = render_job(job, base_dir=base_dir or tmp_path, output=out)
        return result, read_output(out)

    return _render
