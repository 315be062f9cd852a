"""Fixtures of the fuzzing harness: the seeds, made once a session, and a worker pool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_runner import Pool
from fuzz_seeds import make_seeds

CASE_TIMEOUT = 60.0  # seconds one tiny render may take before it counts as a hang


@pytest.fixture(scope="session")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.fixture(scope="session")
def pool() -> Iterator[Pool]:
    with Pool(workers=2, timeout=CASE_TIMEOUT) as workers:
        yield workers
