"""Long jobs split over the queue: the plan, the segment messages, the segments' temporary
S3 objects, and the parent's wait and join.

A job whose video lasts longer than ``GPU_WORKER_SEGMENT_SECONDS`` is split by the worker
that receives it (the *parent*) into segments of about that length on the encoder's keyframe
grid, never shorter than 4 s. The parent sends one ``segment`` message per segment but the
first to the same queue (so the queue's backlog, and the scaling on it, counts them), renders
the first itself, then waits (its heartbeat keeps its own message hidden) for the others'
video-only MP4s, uploaded beside the output under ``.<name>.segments/<fingerprint>/``. When
all are there it claims the join with an S3 conditional write (``If-None-Match: *``) holding
its message id, joins them by stream copy with the soundtrack, and hands the result back to
the ordinary path: upload, one webhook, then the temporary objects are removed.

Faults: a segment whose worker dies is handed out again by SQS after its visibility timeout;
a segment delivered twice finds its object there and ends; a parent that dies is handed out
again and sends only the segments still missing; two deliveries of one job race for the join
claim and the loser ends without a webhook (the claim's holder, or its next delivery,
finishes the job). A segment that fails for good (the job's fault) writes an error object the
parent reports; segments that stop arriving are rendered by the parent itself.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from gpu_worker.errors import (
    DecoderUnavailable,
    EncoderUnavailable,
    GpuWorkerError,
    HardwareFault,
    InternalError,
    InvalidJob,
    TransientError,
)
from gpu_worker.job import Job, parse_job
from gpu_worker.render.encoder import NVENC, EncoderChoice
from gpu_worker.render.pipeline import Inputs, RenderResult, prepare
from gpu_worker.render.segments import Span, join_segments, plan_spans, render_segment
from gpu_worker.render.stages import StageClock
from gpu_worker.service.fetch import FontCache, fetch_inputs, plan_inputs
from gpu_worker.service.heartbeat import Heartbeat
from gpu_worker.service.messages import JobContext, Outcome
from gpu_worker.service.outputs import find_rendered, fingerprint
from gpu_worker.service.queue import JobQueue
from gpu_worker.service.storage import S3Uri, Storage, s3_error
from gpu_worker.settings import Settings

log = logging.getLogger(__name__)

SEGMENT = "segment"
WORKER, PARENT = "worker", "parent"  # who started a segment (its ``.started`` object)
POLL = 0.25  # seconds between the parent's looks for finished segments
HEAD_START = 3.0  # seconds idle workers have to start a segment before the parent takes it


class HandedOn(Exception):
    """Another delivery of the same job holds the join: this one ends without a webhook."""


class SegmentMessage(BaseModel):
    """The body of a segment message: the job as received, the frames, where the part goes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["segment"] = "segment"
    job: dict[str, Any]
    index: int
    start: int
    stop: int
    count: int
    encoder: str  # the parent's encoder: every segment of one video comes from the same one

    @property
    def span(self) -> Span:
        return Span(self.index, self.start, self.stop)

    @property
    def job_id(self) -> str | None:
        job_id = self.job.get("job_id")
        return job_id if isinstance(job_id, str) else None


def segment_message(body: str) -> SegmentMessage | None:
    """The segment a message body holds; None for anything else (a job)."""
    if '"kind"' not in body:
        return None
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict) or raw.get("kind") != SEGMENT:
        return None
    try:
        return SegmentMessage.model_validate(raw)
    except ValidationError:
        return None


@dataclass(frozen=True)
class Parts:
    """Where one job's segments live in S3: beside the output, keyed by the job's content."""

    output: S3Uri
    job: Job
    count: int

    @property
    def prefix(self) -> str:
        folder, _, name = self.output.key.rpartition("/")
        stem = name.rsplit(".", 1)[0]
        head = f"{folder}/" if folder else ""
        return f"{head}.{stem}.segments/{fingerprint(self.job)[:16]}/"

    def video(self, index: int) -> S3Uri:
        return S3Uri(self.output.bucket, f"{self.prefix}{index:04d}-of-{self.count:04d}.mp4")

    def started(self, index: int) -> S3Uri:
        """Who started rendering the segment: ``worker`` or ``parent``."""
        return S3Uri(self.output.bucket, f"{self.prefix}{index:04d}.started")

    def error(self, index: int) -> S3Uri:
        return S3Uri(self.output.bucket, f"{self.prefix}{index:04d}.error.json")

    @property
    def claim(self) -> S3Uri:
        return S3Uri(self.output.bucket, f"{self.prefix}join.claim")

    def objects(self) -> list[S3Uri]:
        return [
            *(self.video(i) for i in range(self.count)),
            *(self.error(i) for i in range(self.count)),
            *(self.started(i) for i in range(self.count)),
            self.claim,
        ]


def plan(job: Job, frames: int, seconds: float) -> list[Span]:
    """The segments of a video of ``frames``: one span (no split) unless it lasts longer than
    ``seconds``; else about ``seconds`` each, at least 4 s, on the keyframe grid."""
    fps = job.renditions[0].fps
    duration = frames / fps
    if seconds <= 0 or duration <= seconds:
        return [Span(0, 0, frames)]
    return plan_spans(frames, fps, max(1, math.ceil(duration / seconds)))


def _error_of(code: str, message: str) -> GpuWorkerError:
    """The permanent error whose ``code`` is ``code`` (a segment's failure, read back)."""
    found: list[type[GpuWorkerError]] = [GpuWorkerError]
    for kind in found:
        found.extend(kind.__subclasses__())
        if kind.code == code and kind.permanent:
            return kind(message)
    return InvalidJob(message)


def _setting(encoder: str) -> str:
    return "nvenc" if encoder == NVENC else "x264"


class Segments:
    """The split path of one worker: renders segment messages, and splits and joins jobs."""

    def __init__(
        self,
        settings: Settings,
        *,
        queue: JobQueue,
        storage: Storage,
        encoder_for: Callable[[str], EncoderChoice],
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.storage = storage
        self.encoder_for = encoder_for
        self.root: Path | None = None
        self.font_cache: FontCache | None = None
        self._parts: dict[str, Parts] = {}  # message id -> the split it joined

    # -- a segment message ---------------------------------------------------------------------

    def process(self, ctx: JobContext, message: SegmentMessage) -> Outcome:
        """Render one segment to its temporary object; the message's outcome."""
        ctx.job_id = message.job_id
        beat = self.settings.visibility_timeout / 3
        with Heartbeat(lambda: self.queue.keep_hidden(ctx.receipt), beat, "heartbeat-segment"):
            try:
                job = parse_job(message.job)
                output_uris, inputs = plan_inputs(job, self.settings.allowed_buckets)
                output_uri = output_uris[0]  # split jobs have one output
                parts = Parts(output_uri, job, message.count)
                target = parts.video(message.index)
                if self._exists(target) or find_rendered(self.storage, job, output_uri):
                    log.info("job %s: segment %d is already done", job.job_id, message.index)
                    return Outcome.COMPLETED
                if self._marker(parts.started(message.index)) == PARENT:
                    # The parent had nobody else to render it (should it die, its next
                    # delivery renders or sends again what is missing).
                    log.info("job %s: segment %d is the parent's", job.job_id, message.index)
                    return Outcome.COMPLETED
                self._mark(parts.started(message.index), WORKER)
                with self._folder() as folder:
                    fetched = fetch_inputs(
                        inputs,
                        folder,
                        self.storage,
                        self._fonts(),
                        self.settings.limits.max_input_bytes,
                        ctx.clock,
                    )
                    path = render_segment(
                        job,
                        message.span,
                        base_dir=folder,
                        output=folder / "segment.mp4",
                        fetched=fetched,
                        limits=self.settings.limits,
                        clock=ctx.clock,
                        encoder=self.encoder_for(_setting(message.encoder)),
                        decoder=self.settings.decoder if message.encoder == NVENC else "cpu",
                    )
                    with ctx.clock.stage("upload", uri=str(target)):
                        self.storage.upload(path, target, "video/mp4")
                if find_rendered(self.storage, job, output_uri) is not None:
                    self._remove(target)  # joined without it meanwhile: nobody will read it
                return Outcome.COMPLETED
            except (HardwareFault, EncoderUnavailable, DecoderUnavailable) as exc:
                # This machine cannot make the parent's encoding (a GPU that failed, a CPU
                # task given an NVENC segment): another worker, or the parent, renders it.
                ctx.error = exc
                return Outcome.RETRY
            except GpuWorkerError as exc:
                ctx.error = exc
                if not exc.permanent:
                    return Outcome.RETRY
                self._report(message, exc)
                return Outcome.FAILED
            except Exception as exc:
                log.exception("segment of job %s: internal error", ctx.job_id)
                ctx.error = InternalError(f"{type(exc).__name__}: {exc}")
                return Outcome.RETRY

    def _report(self, message: SegmentMessage, error: GpuWorkerError) -> None:
        """Leave the job's error where the parent looks for its segments."""
        try:
            job = parse_job(message.job)
            output_uri = plan_inputs(job, self.settings.allowed_buckets)[0][0]
            parts = Parts(output_uri, job, message.count)
            target = parts.error(message.index)
            body = json.dumps({"code": error.code, "message": error.message})
            self.storage.client.put_object(Bucket=target.bucket, Key=target.key, Body=body)
        except Exception as exc:
            log.warning("cannot report the failed segment %d: %s", message.index, exc)

    # -- the parent ----------------------------------------------------------------------------

    def render(
        self,
        ctx: JobContext,
        job: Job,
        folder: Path,
        fetched: Mapping[str, Path],
        encoder: EncoderChoice,
        stop_point: Callable[[], None],
    ) -> RenderResult | None:
        """Split, wait and join ``job`` when it is long enough; None when it is not (the
        caller renders it whole). Raises :class:`HandedOn` when another delivery of the same
        job holds the join."""
        seconds = self.settings.segment_seconds
        if seconds <= 0 or job.outputs is not None:
            return None  # a job with several outputs renders whole (one decode for all)
        clock = ctx.clock
        comp = prepare(job, Inputs(folder, fetched), self.settings.limits, StageClock())
        spans = plan(job, comp.frames, seconds)
        if len(spans) < 2:
            return None
        output_uri = plan_inputs(job, self.settings.allowed_buckets)[0][0]
        parts = Parts(output_uri, job, len(spans))
        self._parts[ctx.message_id] = parts
        with clock.stage("fan_out", segments=len(spans)) as attrs:
            missing = [s for s in spans if not self._exists(parts.video(s.index))]
            sent = [s for s in missing if s.index != 0]
            self._send(ctx, job, sent, len(spans), encoder)
            attrs["sent"] = len(sent)
        log.info(
            "job %s: split into %d segments; %d sent to the queue",
            job.job_id,
            len(spans),
            len(sent),
        )
        local = folder / "segments"
        local.mkdir(exist_ok=True)
        paths = [local / f"{s.index:04d}.mp4" for s in spans]
        if spans[0] in missing:
            self._render_here(ctx, job, spans[0], folder, fetched, encoder, paths[0], parts)
        self._wait(ctx, job, spans, parts, paths, folder, fetched, encoder, stop_point)
        self._claim(ctx, parts)
        return join_segments(
            job,
            paths,
            base_dir=folder,
            output=folder / "output.mp4",
            fetched=fetched,
            limits=self.settings.limits,
            clock=clock,
            decoder="cpu",
            encoder=encoder.name,
        )

    def _render_here(
        self,
        ctx: JobContext,
        job: Job,
        span: Span,
        folder: Path,
        fetched: Mapping[str, Path],
        encoder: EncoderChoice,
        path: Path,
        parts: Parts,
    ) -> None:
        with ctx.clock.stage("segment", index=span.index, frames=span.stop - span.start):
            render_segment(
                job,
                span,
                base_dir=folder,
                output=path,
                fetched=fetched,
                limits=self.settings.limits,
                clock=ctx.clock,
                encoder=encoder,
                decoder=self.settings.decoder if encoder.hardware else "cpu",
            )
        self.storage.upload(path, parts.video(span.index), "video/mp4")

    def _send(
        self, ctx: JobContext, job: Job, spans: list[Span], count: int, encoder: EncoderChoice
    ) -> None:
        raw = job.model_dump(mode="json", exclude_none=True)
        attributes: dict[str, Any] = {}
        if ctx.trace_handle:  # each segment's span is a child of the job's
            attributes["traceparent"] = {"DataType": "String", "StringValue": ctx.trace_handle}
        entries = [
            {
                "Id": str(span.index),
                "MessageBody": SegmentMessage(
                    job=raw,
                    index=span.index,
                    start=span.start,
                    stop=span.stop,
                    count=count,
                    encoder=encoder.name,
                ).model_dump_json(),
                "MessageAttributes": attributes,
            }
            for span in spans
        ]
        for first in range(0, len(entries), 10):
            batch = entries[first : first + 10]
            try:
                answer = self.queue.sqs.send_message_batch(QueueUrl=self.queue.url, Entries=batch)
            except Exception as exc:
                raise TransientError(f"send segments: {type(exc).__name__}: {exc}") from exc
            if answer.get("Failed"):
                raise TransientError(f"send segments: {answer['Failed'][0]}")

    def _wait(
        self,
        ctx: JobContext,
        job: Job,
        spans: list[Span],
        parts: Parts,
        paths: list[Path],
        folder: Path,
        fetched: Mapping[str, Path],
        encoder: EncoderChoice,
        stop_point: Callable[[], None],
    ) -> None:
        """Download each segment as it appears. While none comes, render here the last one
        no worker has started (with no other worker free, the parent renders them all, one
        after the other); a segment a worker started that stops coming is rendered here too,
        after 3 visibility timeouts and 30 s without news."""
        stall = 3 * self.settings.visibility_timeout + 30
        fanned_out = last_news = time.monotonic()
        with ctx.clock.stage("wait_segments") as attrs:
            waiting = [s for s in spans if not paths[s.index].exists()]
            rounds = 0
            while waiting:
                stop_point()
                rounds += 1
                if rounds % 8 == 0 and find_rendered(self.storage, job, parts.output):
                    raise HandedOn(f"job {job.job_id} was joined by another delivery")
                news = False
                for span in list(waiting):
                    self._check_error(parts, span.index)
                    if self._fetch(parts.video(span.index), paths[span.index]):
                        waiting.remove(span)
                        last_news, news = time.monotonic(), True
                free: list[Span] = []
                if not news and time.monotonic() - fanned_out > HEAD_START:
                    free = [s for s in waiting if self._marker(parts.started(s.index)) != WORKER]
                if free:
                    span = free[-1]  # workers take the queue's front: start from the back
                    waiting.remove(span)
                    self._mark(parts.started(span.index), PARENT)
                    self._render_here(
                        ctx, job, span, folder, fetched, encoder, paths[span.index], parts
                    )
                    last_news = time.monotonic()
                elif waiting and time.monotonic() - last_news > stall:
                    span = waiting.pop(0)
                    log.warning("job %s: segment %d is late; rendered here", job.job_id, span.index)
                    self._render_here(
                        ctx, job, span, folder, fetched, encoder, paths[span.index], parts
                    )
                    last_news = time.monotonic()
                elif waiting:
                    time.sleep(POLL)
            attrs["segments"] = len(spans)

    def _check_error(self, parts: Parts, index: int) -> None:
        target = parts.error(index)
        try:
            answer = self.storage.client.get_object(Bucket=target.bucket, Key=target.key)
        except Exception:
            return
        try:
            found = json.loads(answer["Body"].read())
            code, message = str(found["code"]), str(found["message"])
        except (ValueError, KeyError, TypeError):
            code, message = InvalidJob.code, f"segment {index} failed"
        raise _error_of(code, message)

    def _claim(self, ctx: JobContext, parts: Parts) -> None:
        """Claim the join for this message (S3 ``If-None-Match: *``); a claim held by this
        message (an earlier delivery of it) is ours; one held by another raises HandedOn."""
        claim = parts.claim
        client = self.storage.client
        try:
            client.put_object(
                Bucket=claim.bucket, Key=claim.key, Body=ctx.message_id.encode(), IfNoneMatch="*"
            )
        except Exception as exc:
            if "PreconditionFailed" not in str(exc) and "412" not in str(exc):
                raise s3_error(exc, f"claim {claim}") from exc
        try:
            holder = client.get_object(Bucket=claim.bucket, Key=claim.key)["Body"].read().decode()
        except Exception as exc:
            raise s3_error(exc, f"read {claim}") from exc
        if holder != ctx.message_id:
            raise HandedOn(f"the join of job {parts.job.job_id} is held by message {holder}")
        # A claim made after the holder finished (and removed its claim) finds the output.
        if find_rendered(self.storage, parts.job, parts.output) is not None:
            self.cleanup(ctx)
            raise HandedOn(f"job {parts.job.job_id} was joined by another delivery")

    def cleanup(self, ctx: JobContext) -> None:
        """Remove the job's temporary objects once its output is uploaded (best effort)."""
        parts = self._parts.pop(ctx.message_id, None)
        if parts is None:
            return
        client = self.storage.client
        keys = [{"Key": uri.key} for uri in parts.objects()]
        try:
            client.delete_objects(Bucket=parts.output.bucket, Delete={"Objects": keys})
        except Exception as exc:
            log.warning("job %s: temporary segments left: %s", parts.job.job_id, exc)

    def forget(self, ctx: JobContext) -> None:
        self._parts.pop(ctx.message_id, None)

    # -- helpers -------------------------------------------------------------------------------

    def _remove(self, uri: S3Uri) -> None:
        try:
            self.storage.client.delete_object(Bucket=uri.bucket, Key=uri.key)
        except Exception as exc:
            log.warning("cannot remove %s: %s", uri, exc)

    def _marker(self, uri: S3Uri) -> str | None:
        try:
            body = self.storage.client.get_object(Bucket=uri.bucket, Key=uri.key)["Body"]
            return str(body.read().decode())
        except Exception:
            return None  # absent (or unreadable: the same to the caller)

    def _mark(self, uri: S3Uri, who: str) -> None:
        try:
            self.storage.client.put_object(Bucket=uri.bucket, Key=uri.key, Body=who.encode())
        except Exception as exc:
            raise s3_error(exc, f"mark {uri}") from exc

    def _exists(self, uri: S3Uri) -> bool:
        try:
            return self.storage.head(uri, "segment") is not None
        except GpuWorkerError:
            return False  # a role that may not list the bucket: 403 for a missing key

    def _fetch(self, uri: S3Uri, dest: Path) -> bool:
        if not self._exists(uri):
            return False
        tmp = dest.with_suffix(".part")
        tmp.unlink(missing_ok=True)
        self.storage.download(uri, tmp, "segment", 2**40)
        tmp.replace(dest)
        return True

    def _fonts(self) -> FontCache:
        assert self.font_cache is not None, "open() the worker first"
        return self.font_cache

    def _folder(self) -> _Scratch:
        assert self.root is not None, "open() the worker first"
        return _Scratch(self.root)


class _Scratch:
    """A job folder under the worker's scratch folder, removed on exit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path: Path | None = None

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="segment-", dir=self.root))
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
