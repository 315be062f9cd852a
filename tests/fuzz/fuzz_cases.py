"""Fuzz cases: a tiny job (64x64, 0.5 s, 10 fps) around one mutated input, by seed kind."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from fuzz_mutations import mutate
from fuzz_runner import FONT_CODES, JOB_CODES, MEDIA_CODES, OVERLAY_CODES
from fuzz_seeds import FONT_TEXT, SEEDS

CASES_ENV = "GPU_WORKER_FUZZ_CASES"
QUICK_CASES = 16  # per seed in `make test`
SOAK_CASES = 60  # per seed in `make soak`, after the quick ones


def cases_per_seed() -> int:
    """Cases per seed: ``GPU_WORKER_FUZZ_CASES`` when set, else 16."""
    if os.environ.get(CASES_ENV):
        return int(os.environ[CASES_ENV])
    return QUICK_CASES


def base_job(n: int) -> dict[str, Any]:
    return {
        "version": 1,
        "job_id": f"fuzz-{n}",
        "output": {
            "uri": "out.mp4",
            "width": 64,
            "height": 64,
            "fps": 10,
            "quality": "draft",
            "poster": n % 4 == 0,
        },
        "clips": [{"uri": "clean.png", "duration": 0.5}],
    }


def media_case(name: str, kind: str, n: int, seeds: dict[str, Path]) -> dict[str, Any]:
    """Case ``n`` of seed ``name``: the job that reads the mutated file where its kind goes."""
    job = base_job(n)
    files: dict[str, Any] = {name: {"seed": str(seeds[name]), "mutation": f"{name}:{n}"}}
    allowed = MEDIA_CODES
    if kind == "video":
        job["clips"] = [{"uri": name, "duration": 0.5, "volume": 1.0, "fit": "contain"}]
    elif kind == "still":
        job["clips"] = [{"uri": name, "duration": 0.5}]
    else:
        files["clean.png"] = {"seed": str(seeds["still.png"]), "mutation": None}
    if kind == "audio":
        job["audio"] = {"uri": name, "fade_in": 0.1}
    elif kind == "overlay":
        job["overlays"] = [{"uri": name, "width": 0.5, "animation": {"in": "fade"}}]
        allowed = OVERLAY_CODES
    elif kind == "caption":
        style = "word_highlight" if n % 2 else "line"
        job["captions"] = {"uri": name, "font": "Roboto", "size": 8, "style": style}
        allowed = FONT_CODES
    elif kind == "font":
        text: dict[str, Any] = {"text": FONT_TEXT, "font_uri": name, "size": 10 + 3 * (n % 3)}
        if n % 2:
            text["stroke"] = {"width": 1.5}
            text["shadow"] = {"blur": 2}
        job["texts"] = [text]
        allowed = FONT_CODES
    return {"id": f"{kind}/{name}/{n}", "job": job, "files": files, "allowed": sorted(allowed)}


def media_cases(
    seeds: dict[str, Path], kinds: set[str], per_seed: int, start: int = 0
) -> list[dict[str, Any]]:
    """Cases ``start`` to ``start + per_seed`` of every seed of these kinds."""
    return [
        media_case(seed.name, seed.kind, n, seeds)
        for seed in SEEDS
        if seed.kind in kinds
        for n in range(start, start + per_seed)
    ]


def clean_files(seeds: dict[str, Path]) -> dict[str, Any]:
    """The unmutated seeds a job-JSON case may name."""
    names = ("clean.png", "h264-aac.mp4", "music.m4a", "roboto.ttf", "logo.png", "logo.svg")
    sources = ("still.png", "h264-aac.mp4", "music.m4a", "roboto.ttf", "logo.png", "logo.svg")
    return {
        name: {"seed": str(seeds[source]), "mutation": None}
        for name, source in zip(names, sources, strict=True)
    }


def full_job(n: int) -> dict[str, Any]:
    """A valid job naming every clean file: two clips with a crossfade, two overlays, a text
    in a fetched font, one in a bundled family, and music."""
    job = base_job(n)
    job["clips"] = [
        {"uri": "clean.png", "duration": 0.5},
        {
            "uri": "h264-aac.mp4",
            "duration": 0.5,
            "volume": 0.5,
            "transition": {"type": "crossfade", "duration": 0.2},
        },
    ]
    job["texts"] = [
        {"text": FONT_TEXT, "font_uri": "roboto.ttf", "size": 12, "y": 0.3},
        {"text": "Ab", "font": "Open Sans", "size": 14, "y": 0.7, "animation": {"in": "fade"}},
    ]
    job["overlays"] = [
        {"uri": "logo.png", "x": 0.2, "y": 0.2, "width": 0.3},
        {"uri": "logo.svg", "x": 0.8, "y": 0.8, "height": 0.3, "opacity": 0.7},
    ]
    job["audio"] = {"uri": "music.m4a", "fade_out": 0.2}
    return job


def job_text_case(n: int, seeds: dict[str, Path]) -> dict[str, Any]:
    """Case ``n`` of the job file itself: its JSON text mutated like any input file."""
    text = json.dumps(full_job(n), indent=1).encode()
    mutated, applied = mutate(text, f"job.json:{n}")
    return {
        "id": f"job/job.json/{n} ({applied})",
        "job_bytes": base64.b64encode(mutated).decode(),
        "files": clean_files(seeds),
        "allowed": sorted(JOB_CODES),
    }


def job_case(job: dict[str, Any], label: str, seeds: dict[str, Path]) -> dict[str, Any]:
    """A case for a job given as data (made by Hypothesis): the clean files beside it."""
    return {
        "id": f"job/{label}",
        "job": job,
        "files": clean_files(seeds),
        "allowed": sorted(JOB_CODES),
    }
