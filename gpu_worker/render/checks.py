"""What ``gpu-worker validate`` reports of a decoded job: the contract's problems, each with
its JSON path, then the fonts' (a family missing from the catalog, characters a font cannot
draw). The command line and the studio page both list these lines.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gpu_worker.errors import GpuWorkerError
from gpu_worker.job import Job, problems, validate
from gpu_worker.render import fonts


def job_problems(data: Any) -> tuple[Job | None, list[str]]:
    """The job when it follows the contract, and every problem found, one line each."""
    try:
        job = validate(data)
    except ValidationError as exc:
        return None, problems(exc)
    found = []
    for i, text in enumerate(job.texts):
        if text.font_uri is None and text.font is not None:
            try:
                path = fonts.resolve(text.font, text.weight, text.italic).path
            except GpuWorkerError as exc:
                found.append(f"$.texts[{i}].font: {exc.code}: {exc}")
                continue
            missing = fonts.missing_glyphs(path, text.text)
            if missing:
                found.append(
                    f"$.texts[{i}].text: glyph_missing: {path.stem} cannot draw "
                    + " ".join(repr(c) for c in missing)
                )
    return job, found
