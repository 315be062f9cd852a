"""Whether a job's output is already in S3 from an earlier attempt of the very same job.

The MP4 is uploaded with S3 user metadata, in the same request as its bytes: the job id, a
fingerprint of the job (SHA-256 of its canonical JSON) and the figures its webhook reports.
Before fetching anything the worker asks S3 for the output key's HEAD; the job counts as
already rendered only when all of these hold:

* the object's job id and fingerprint are this job's (an edited job, resubmitted under the
  same id, has another fingerprint and is rendered again);
* its size (``ContentLength``) is the size recorded when it was rendered;
* the poster, when that render wrote one, is there with its recorded size (it is uploaded
  before the MP4, so an MP4 that is there implies it was).

The worker's role may read (``s3:GetObject``) its output prefix but need not list the bucket,
so S3 answers a HEAD of a missing key with 403, not 404: both mean "not there".

Then the job is not rendered again and ``video.completed`` is sent from the recorded figures:
a worker killed after the upload and before its webhook was handed on costs one HEAD, not a
render. Any doubt (no object, another job's object, metadata missing or malformed, a HEAD
that fails) means render, as without this check.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from gpu_worker.errors import GpuWorkerError, InputForbidden
from gpu_worker.job import Job
from gpu_worker.render.pipeline import RenderResult
from gpu_worker.service.storage import S3Uri, Storage

log = logging.getLogger(__name__)

# S3 user metadata keys (sent as x-amz-meta-<key>; S3 gives them back lower-case).
JOB_KEY = "gpu-worker-job"
FINGERPRINT_KEY = "gpu-worker-fingerprint"
RESULT_KEY = "gpu-worker-result"


def fingerprint(job: Job) -> str:
    """SHA-256 of the job's canonical JSON: equal for the same job, whatever its key order."""
    canonical = json.dumps(
        job.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Rendered:
    """What a finished render wrote, as recorded beside the MP4 in S3."""

    duration: float
    width: int
    height: int
    fps: int
    size_bytes: int
    encoder: str
    poster_bytes: int | None = None

    @classmethod
    def of(cls, result: RenderResult) -> Rendered:
        return cls(
            duration=round(result.duration, 3),
            width=result.width,
            height=result.height,
            fps=result.fps,
            size_bytes=result.size_bytes,
            encoder=result.encoder,
            poster_bytes=result.poster.stat().st_size if result.poster is not None else None,
        )

    def metadata(self, job: Job) -> dict[str, str]:
        """The S3 user metadata to upload the MP4 with (ASCII only, well under 2 KB)."""
        return {
            JOB_KEY: job.job_id,
            FINGERPRINT_KEY: fingerprint(job),
            RESULT_KEY: json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=True),
        }

    def output(self, output_uri: S3Uri) -> dict[str, Any]:
        """The webhook's ``output`` block."""
        poster = output_uri.sibling(".jpg") if self.poster_bytes is not None else None
        return {
            "uri": str(output_uri),
            "duration": self.duration,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "size_bytes": self.size_bytes,
            "poster_uri": str(poster) if poster is not None else None,
        }


def _recorded(head: dict[str, Any], job: Job) -> Rendered | None:
    metadata = {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}
    if metadata.get(JOB_KEY) != job.job_id or metadata.get(FINGERPRINT_KEY) != fingerprint(job):
        return None
    try:
        rendered = Rendered(**json.loads(metadata.get(RESULT_KEY, "")))
    except (TypeError, ValueError):
        return None
    if int(head.get("ContentLength", -1)) != rendered.size_bytes:
        return None
    return rendered


def _head(storage: Storage, uri: S3Uri, label: str) -> dict[str, Any] | None:
    try:
        return storage.head(uri, label)
    except InputForbidden:  # a missing key, to a role that may not list the bucket
        return None


def find_rendered(storage: Storage, job: Job, output_uri: S3Uri) -> Rendered | None:
    """This job's output, when an earlier attempt of it already uploaded it whole."""
    try:
        head = _head(storage, output_uri, "output")
        rendered = _recorded(head, job) if head is not None else None
        if rendered is None or rendered.poster_bytes is None:
            return rendered
        poster = _head(storage, output_uri.sibling(".jpg"), "poster")
    except GpuWorkerError as exc:
        log.warning("job %s: cannot tell whether it was rendered before (%s)", job.job_id, exc)
        return None
    if poster is None or int(poster.get("ContentLength", -1)) != rendered.poster_bytes:
        return None
    return rendered
