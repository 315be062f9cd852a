"""Job files made by Hypothesis: a valid job with a few values replaced, removed or added,
rendered like any job. Each ends in a video or a job error with its code."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fuzz_cases import cases_per_seed, full_job, job_case
from fuzz_runner import Pool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Values that sit on the contract's edges or name things a job should not reach.
NUMBERS = [0, -1, 1, 2, 15, 16, 17, 3840, 3842, 0.0001, 1e-300, 86_400, 86_401, 1e308, 2**63]
WORDS = ["", " ", "\u200b", "#FFF", "#GGGGGG", "cover", "crossfade", "top-left", "fade"]
PATHS = ["clean.png", "h264-aac.mp4", "music.m4a", "roboto.ttf", "missing.mp4", "job.json"]
ESCAPES = ["../clean.png", "/dev/zero", "/proc/self/mem", "s3://b/k.mp4", "http://x/y", "file:x"]
TEXTS = ["\u0645\u0631\u062d\u0628\u0627", "\U0001f600", "A" * 300, "x\ny\n\nz"]
EDGES = st.sampled_from([*NUMBERS, *WORDS, *PATHS, *ESCAPES, *TEXTS])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | EDGES
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _places(item, (*path, i))


@st.composite
def edited_jobs(draw: st.DrawFn) -> dict[str, Any]:
    job = copy.deepcopy(full_job(0))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from([p for p in _places(job) if p]))
        parent = job
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if action == "set":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
        else:
            parent.append(copy.deepcopy(parent[path[-1]]))
    return job


@settings(
    max_examples=3 * cases_per_seed(),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(job=edited_jobs())
def test_edited_jobs_end_in_a_video_or_a_job_error(
    job: dict[str, Any], seeds: dict[str, Path], pool: Pool
) -> None:
    _, failures = pool.run([job_case(job, "hypothesis", seeds)])
    assert not failures, failures[0]
