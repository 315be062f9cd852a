"""Mutated inputs of every kind end in a video or a job error with its code: never
``internal``, never a crash of the interpreter, never a hang, never an output left behind.

``make test`` runs 16 cases per seed, ``make soak`` 60 more; ``GPU_WORKER_FUZZ_CASES=300`` runs
300 per seed in place of the 16 (see the README).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from fuzz_cases import (
    SOAK_CASES,
    cases_per_seed,
    full_job,
    job_case,
    job_text_case,
    media_case,
    media_cases,
)
from fuzz_runner import Pool
from fuzz_seeds import SEEDS

KINDS = ("video", "still", "audio", "overlay", "font", "caption")
# The refusal each kind's damage must reach at least once: a broken caption file is a
# malformed job (its line is named), a broken media or font file an unreadable input.
REFUSAL = {"caption": "invalid_job"}


def _report(failures: list[str]) -> str:
    shown = "\n\n".join(failures[:10])
    more = f"\n\n... and {len(failures) - 10} more" if len(failures) > 10 else ""
    return f"{len(failures)} failing cases:\n\n{shown}{more}"


def test_every_seed_renders_unmutated(seeds: dict[str, Path], pool: Pool) -> None:
    cases = [media_case(seed.name, seed.kind, 1, seeds) for seed in SEEDS]
    for case in cases:
        for spec in case["files"].values():
            spec["mutation"] = None
    cases.append(job_case(full_job(1), "full", seeds))
    results, failures = pool.run(cases)
    assert not failures, _report(failures)
    assert {r["id"]: r["code"] for r in results} == {c["id"]: "ok" for c in cases}
    assert all(r["frames"] == 5 for r in results if r["id"] != "job/full")  # 0.5 s at 10 fps


@pytest.mark.parametrize("kind", KINDS)
def test_mutated_inputs_end_in_a_video_or_a_job_error(
    kind: str, seeds: dict[str, Path], pool: Pool
) -> None:
    cases = media_cases(seeds, {kind}, cases_per_seed())
    results, failures = pool.run(cases)
    assert len(results) == len(cases)
    assert not failures, _report(failures)
    codes = Counter(result["code"] for result in results)
    assert codes["ok"] and codes[REFUSAL.get(kind, "input_unreadable")], codes  # both ends


@pytest.mark.soak
def test_more_mutated_inputs_in_the_soak_run(seeds: dict[str, Path], pool: Pool) -> None:
    start = cases_per_seed()
    cases = media_cases(seeds, set(KINDS), SOAK_CASES, start)
    cases += [job_text_case(n, seeds) for n in range(2 * start, 2 * (start + SOAK_CASES))]
    results, failures = pool.run(cases)
    assert len(results) == len(cases)
    assert not failures, _report(failures)


def test_mutated_job_files_end_in_a_video_or_a_job_error(
    seeds: dict[str, Path], pool: Pool
) -> None:
    cases = [job_text_case(n, seeds) for n in range(2 * cases_per_seed())]
    results, failures = pool.run(cases)
    assert not failures, _report(failures)
    codes = Counter(result["code"] for result in results)
    assert codes["invalid_job"], codes


def test_a_worker_that_dies_or_hangs_is_reported_and_replaced(seeds: dict[str, Path]) -> None:
    good = media_case("still.png", "still", 0, seeds)
    cases = [
        {"id": "selftest/crash", "selftest": "crash", "allowed": []},
        {"id": "selftest/hang", "selftest": "hang", "allowed": [], "timeout": 1.0},
        good,
    ]
    with Pool(workers=1) as pool:
        results, failures = pool.run(cases)
    assert [r["code"] for r in results[:2]] == ["crash", "hang"]
    assert failures[0].startswith("selftest/crash") and "SIGABRT" in failures[0]
    assert failures[1].startswith("selftest/hang") and "no answer in 1 s" in failures[1]
    assert len(failures) == 2 and results[2]["id"] == good["id"]


def test_a_png_declaring_a_4_gib_chunk_costs_no_4_gib(
    seeds: dict[str, Path], pool: Pool, tmp_path: Path
) -> None:
    data = bytearray(seeds["logo.png"].read_bytes())
    idat = data.index(b"IDAT") - 4
    data[idat : idat + 4] = (0xFFFFFFF0).to_bytes(4, "big")
    (tmp_path / "huge-chunk.png").write_bytes(data)
    seeds = {**seeds, "huge-chunk.png": tmp_path / "huge-chunk.png"}
    for kind in ("overlay", "still"):
        case = media_case("huge-chunk.png", kind, 0, seeds)
        case["files"]["huge-chunk.png"]["mutation"] = None
        (result,), failures = pool.run([case])  # a worker has 3 GiB of address space
        assert not failures, failures
        assert result["code"] in ("ok", "input_unreadable"), result
