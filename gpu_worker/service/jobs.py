"""One job from message body to outcome: fetch the inputs, render, upload, send the webhook.

An output an earlier attempt of the same job already uploaded is not rendered again (see
:mod:`gpu_worker.service.outputs`); a webhook not delivered at once is handed to the durable
retry path before the message is deleted (:mod:`gpu_worker.service.deliveries`).

The decision of what a failure means lives here: a permanent error (the job's fault) sends
``video.failed`` and deletes the message; a transient one is retried, and on the queue's last
attempt ``video.failed`` is sent before SQS dead-letters it. While a job runs, a heartbeat
keeps its message invisible and ECS scale-in protection is on.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gpu_worker.errors import (
    DecoderUnavailable,
    EncoderUnavailable,
    GpuWorkerError,
    HardwareFault,
    InternalError,
)
from gpu_worker.job import Job, decode_job_text, parse_job
from gpu_worker.render.encoder import SOFTWARE, EncoderChoice, choose_encoder
from gpu_worker.render.pipeline import RenderResult
from gpu_worker.service import webhook
from gpu_worker.service.deliveries import DurableSender
from gpu_worker.service.fetch import FontCache, fetch_inputs, plan_inputs
from gpu_worker.service.health import Health
from gpu_worker.service.heartbeat import Heartbeat
from gpu_worker.service.messages import JobContext, Outcome, best_effort
from gpu_worker.service.outputs import Rendered, find_rendered
from gpu_worker.service.protection import TaskProtection
from gpu_worker.service.queue import JobQueue
from gpu_worker.service.segments import HandedOn, Segments
from gpu_worker.service.shutdown import Released, Shutdown, finish_in_time
from gpu_worker.service.storage import Storage
from gpu_worker.settings import Settings

log = logging.getLogger(__name__)


class JobRunner:
    """Takes one message body to an :class:`Outcome`; shared by the worker's threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        queue: JobQueue,
        storage: Storage,
        webhooks: DurableSender,
        protection: TaskProtection,
        shutdown: Shutdown,
        health: Health,
        render: Callable[..., RenderResult],
        encoder_for: Callable[[str], EncoderChoice] = choose_encoder,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.storage = storage
        self.webhooks = webhooks
        self.protection = protection
        self.shutdown = shutdown
        self.health = health
        self.render = render
        self.encoder_for = encoder_for  # setting -> encoder; a seam for a GPU that fails
        self.max_receives: int | None = settings.max_receives
        self.root: Path | None = None  # the worker's scratch folder, set by Worker.open()
        self.font_cache: FontCache | None = None
        self.segments: Segments | None = None  # the split path, for long jobs

    def process(self, ctx: JobContext, body: str) -> Outcome:
        """Run the job in ``body`` to its outcome; ``ctx.error`` says why when it failed."""
        beat_every = self.settings.visibility_timeout / 3
        with (
            self.protection.held(),
            Heartbeat(lambda: self._beat(ctx), beat_every, f"heartbeat-{ctx.message_id[:8]}"),
        ):
            metadata: dict[str, Any] = {}
            try:
                raw = decode_job_text(body)
                ctx.job_id, metadata = best_effort(raw)
                job = parse_job(raw)
                metadata = job.metadata
                self._complete(ctx, job)
                return Outcome.COMPLETED
            except Released:
                return Outcome.RELEASED
            except HandedOn as exc:  # another delivery of this job joins it and notifies
                log.info("job %s: %s", ctx.job_id, exc)
                return Outcome.COMPLETED
            except GpuWorkerError as exc:
                ctx.error = exc
            except Exception as exc:
                log.exception("job %s: internal error", ctx.job_id)
                ctx.error = InternalError(f"{type(exc).__name__}: {exc}")
            error = ctx.error
            if self.shutdown.abandoned(ctx.message_id):
                return Outcome.RELEASED  # released at the stop deadline: not ours to settle
            if error.permanent:
                if self.segments is not None:
                    self.segments.cleanup(ctx)  # a failed split leaves nothing behind
                self._notify(ctx, webhook.FAILED, error=error, metadata=metadata)
                return Outcome.FAILED
            if self._last_attempt(ctx):
                final = type(error)(
                    f"{error.message} (attempt {ctx.receive_count} of {self.max_receives}; "
                    "the message goes to the dead-letter queue)"
                )
                self._notify(ctx, webhook.FAILED, error=final, metadata=metadata)
            return Outcome.RETRY

    def _complete(self, ctx: JobContext, job: Job) -> None:
        """Fetch, render, upload, notify; raises on any failure."""
        assert self.root is not None and self.font_cache is not None, "open() the worker first"
        output_uris, inputs = plan_inputs(job, self.settings.allowed_buckets)
        # Every rendition must already be there (each uploaded with its own record) for the
        # render to be skipped; any one missing renders them all again.
        found: list[Rendered] = []
        with ctx.clock.stage("output_check", uri=str(output_uris[0])) as check:
            for output_uri in output_uris:
                done = find_rendered(self.storage, job, output_uri)
                if done is None:
                    break
                found.append(done)
            check["found"] = len(found) == len(output_uris)
        if len(found) == len(output_uris):  # an earlier attempt uploaded them, then died
            log.info(
                "job %s: %s already its output; not rendered again",
                job.job_id,
                ", ".join(str(uri) for uri in output_uris),
            )
            done_outputs = [d.output(uri) for d, uri in zip(found, output_uris, strict=True)]
            self._notify(
                ctx,
                webhook.COMPLETED,
                output=done_outputs[0],
                outputs=done_outputs if job.outputs is not None else None,
                encoder=found[0].encoder,
                metadata=job.metadata,
            )
            return
        folder = Path(tempfile.mkdtemp(prefix="job-", dir=self.root))
        try:
            fetched = fetch_inputs(
                inputs,
                folder,
                self.storage,
                self.font_cache,
                self.settings.limits.max_input_bytes,
                ctx.clock,
                before_each=self._stop_point,
            )
            log.info("job %s: rendering", job.job_id)
            result = self._render(ctx, job, folder, fetched)
            ctx.result = result
            written: list[Mapping[str, Any]] = []
            for video, output_uri in zip(result.all, output_uris, strict=True):
                rendered = Rendered.of(video)
                poster_uri = output_uri.sibling(".jpg") if video.poster is not None else None
                size = video.size_bytes
                with ctx.clock.stage("upload", uri=str(output_uri), bytes=size) as attrs:
                    if video.poster is not None and poster_uri is not None:
                        self.storage.upload(video.poster, poster_uri, "image/jpeg")
                        attrs["bytes"] += video.poster.stat().st_size
                    self.storage.upload(
                        video.output, output_uri, "video/mp4", metadata=rendered.metadata(job)
                    )
                written.append(rendered.output(output_uri))
            if self.segments is not None:
                self.segments.cleanup(ctx)  # the temporary segments, once the output is up
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self._notify(
            ctx,
            webhook.COMPLETED,
            output=written[0],
            outputs=written if job.outputs is not None else None,
            encoder=result.encoder,
            metadata=job.metadata,
        )

    def _render(
        self, ctx: JobContext, job: Job, folder: Path, fetched: Mapping[str, Path]
    ) -> RenderResult:
        """Render on the configured path; when the GPU fails (NVENC or NVDEC, at open or
        mid-stream: the worker's fault, never the job's), render again on the CPU path from
        the start, in this process, and count it towards the worker's health."""
        paths = [folder / "output.mp4"]
        if job.outputs is not None:  # one file per rendition
            paths = [folder / f"output-{i}.mp4" for i in range(len(job.outputs))]
        common: dict[str, Any] = {
            "base_dir": folder,
            **({"output": paths[0]} if job.outputs is None else {"outputs": paths}),
            "fetched": fetched,
            "limits": self.settings.limits,
            "clock": ctx.clock,
        }
        try:
            encoder = self.encoder_for(self.settings.encoder)
            if self.segments is not None:
                split = self.segments.render(ctx, job, folder, fetched, encoder, self._stop_point)
                if split is not None:
                    self.health.rendered(fallback=False)
                    return split
            result = self.render(
                job,
                encoder=encoder,
                decoder=self.settings.decoder,
                progress=self._progress(job.job_id),
                **common,
            )
        except (HardwareFault, EncoderUnavailable, DecoderUnavailable) as fault:
            ctx.fallback = fault.message
            self.health.rendered(fallback=True, why=fault.message)
            log.warning("job %s: %s; rendering it again on the CPU", job.job_id, fault.message)
            return self.render(
                job,
                encoder=self.encoder_for(SOFTWARE),
                decoder="cpu",
                progress=self._progress(job.job_id),
                **common,
            )
        self.health.rendered(fallback=False)
        return result

    def _stop_point(self) -> None:
        if self.shutdown.requested:
            raise Released

    def _progress(self, job_id: str) -> Callable[[int, int], None]:
        first: list[float] = []
        logged = [-1]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if not first:
                first.append(now)
            quarter = done * 4 // max(1, total)
            if quarter != logged[0]:
                logged[0] = quarter
                log.info("job %s: frames %d/%d", job_id, done, total)
            if self.shutdown.requested:
                per_frame = (now - first[0]) / (done - 1) if done > 1 else None
                left = self.shutdown.left() - self.shutdown.reserve
                if not finish_in_time(per_frame, total - done, left):
                    log.info("job %s: cannot finish before the stop deadline", job_id)
                    raise Released

        return progress

    def _notify(
        self,
        ctx: JobContext,
        event_type: str,
        *,
        output: Mapping[str, Any] | None = None,
        outputs: Sequence[Mapping[str, Any]] | None = None,
        error: GpuWorkerError | None = None,
        encoder: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        payload = webhook.event(
            event_type,
            ctx.job_id,
            output=output,
            outputs=outputs,
            error=error,
            encoder=encoder,
            timings=ctx.clock.totals,
            metadata=metadata,
        )
        deadline = None
        if self.shutdown.requested:
            deadline = time.monotonic() + max(1.0, self.shutdown.left())
        with ctx.clock.stage("webhook", type=event_type) as attrs:
            ctx.delivery = self.webhooks.send(
                payload, subject=ctx.subject, deadline=deadline, traceparent=ctx.trace_handle
            )
            attrs.update(
                webhook_id=ctx.delivery.webhook_id,
                delivered=ctx.delivery.delivered,
                attempts=ctx.delivery.attempts,
                pending=ctx.delivery.pending,
                dead_lettered=ctx.delivery.dead_lettered,
            )

    def _last_attempt(self, ctx: JobContext) -> bool:
        return self.max_receives is not None and ctx.receive_count >= self.max_receives

    def _beat(self, ctx: JobContext) -> None:
        self.queue.keep_hidden(ctx.receipt)
        self.protection.keep()
