"""What ``gpu-worker validate`` reports of a decoded job: placeholders without a ``merge``
value and the contract's problems, each with its JSON path, then the fonts' (a family missing
from the catalog, characters a font cannot draw) and a local caption file's. The command line
and the studio page both list these lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gpu_worker.errors import GpuWorkerError
from gpu_worker.job import Job, problems, validate
from gpu_worker.limits import Limits
from gpu_worker.render import fonts
from gpu_worker.render.subtitles import read_captions
from gpu_worker.template import fill


def job_problems(
    data: Any, base_dir: Path | None = None, limits: Limits | None = None
) -> tuple[Job | None, list[str]]:
    """The job when it follows the contract (its placeholders filled), and every problem
    found, one line each; a local caption file is read when ``base_dir`` is given."""
    filled, merge_errors = fill(data)
    unfilled = merge_errors or filled.problems()
    try:
        job = validate(filled.data)
    except ValidationError as exc:
        return None, [*unfilled, *problems(exc)]
    if unfilled:
        return None, unfilled
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
    found += _caption_problems(job, base_dir, limits or Limits())
    return job, found


def _caption_problems(job: Job, base_dir: Path | None, limits: Limits) -> list[str]:
    """The captions' font, the glyphs of their cues, and a local caption file that is not
    proper SRT/WebVTT (read only with a ``base_dir``; a file in S3 is read by the worker)."""
    spec = job.captions
    if spec is None:
        return []
    found = []
    cues = list(spec.cues or [])
    if spec.uri is not None and "://" not in spec.uri and base_dir is not None:
        path = Path(spec.uri) if Path(spec.uri).is_absolute() else base_dir / spec.uri
        try:
            cues = read_captions(path, "captions.uri", limits)
        except GpuWorkerError as exc:
            found.append(f"$.captions.uri: {exc.code}: {exc}")
    if spec.font_uri is None and spec.font is not None:
        try:
            face = fonts.resolve(spec.font, spec.weight, spec.italic).path
        except GpuWorkerError as exc:
            return [*found, f"$.captions.font: {exc.code}: {exc}"]
        missing = fonts.missing_glyphs(face, "".join(cue.text for cue in cues))
        if missing:
            found.append(
                f"$.captions: glyph_missing: {face.stem} cannot draw "
                + " ".join(repr(c) for c in missing)
            )
    return found
