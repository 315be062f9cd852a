"""One SQS message in the worker's hands: what it carries, and the outcome it ends with.

Each message gets exactly one explicit :class:`Outcome`, and only the first two delete it:

    completed   rendered (or found already uploaded by an earlier
                attempt), ``video.completed`` sent or handed to the
                webhook retry queue                                   → deleted
    failed      a permanent error (bad job, bad input, limits);
                ``video.failed`` sent                                 → deleted
    retry       a transient error; visible again after a growing delay,
                and on the queue's last attempt ``video.failed`` sent  → redelivered / DLQ
    released    given back on shutdown (visibility 0)                 → another worker, at once
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gpu_worker.errors import GpuWorkerError
from gpu_worker.job import JOB_ID_PATTERN, METADATA_MAX_BYTES
from gpu_worker.render.pipeline import RenderResult
from gpu_worker.render.stages import StageClock
from gpu_worker.service import webhook

_JOB_ID = re.compile(JOB_ID_PATTERN)


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    RETRY = "retry"
    RELEASED = "released"


DELETED = frozenset({Outcome.COMPLETED, Outcome.FAILED})


@dataclass
class JobContext:
    """One message being handled: what telemetry needs, in one place (see ``JobHooks``).

    A hook is entered with ``job_id`` (as the message claims it; None for a body without a
    sane one), ``traceparent``, ``queue_wait``, ``receive_count`` and ``clock`` (add a listener
    to see every stage: fetch_inputs per input, probe ... encode, upload, webhook). When it
    exits, ``outcome`` is decided and ``result`` (rendered) or ``error`` (failed) is set;
    no exception passes through a hook.
    """

    message_id: str
    receipt: str = field(repr=False)
    receive_count: int
    sent_timestamp: float | None  # epoch seconds the message was sent (SQS SentTimestamp)
    traceparent: str | None  # W3C trace context the backend attached, if any
    received_at: float = field(default_factory=time.time)
    clock: StageClock = field(default_factory=StageClock)
    job_id: str | None = None
    outcome: Outcome | None = None
    error: GpuWorkerError | None = None
    result: RenderResult | None = None
    delivery: webhook.Delivery | None = None
    fallback: str | None = None  # why the GPU path failed, when the job was rendered on the CPU
    segment: int | None = None  # the segment's index, when the message is a part of a split job
    # The job's own trace (a W3C traceparent) when a telemetry hook gave one: webhook
    # attempts made later, from the retry queue, are traced under it.
    own_traceparent: str | None = None

    @property
    def trace_handle(self) -> str | None:
        """The trace a later webhook attempt belongs to: the job's own, else the backend's."""
        return self.own_traceparent or self.traceparent

    @property
    def queue_wait(self) -> float | None:
        """Seconds the message waited in the queue before this receive."""
        if self.sent_timestamp is None:
            return None
        return max(0.0, self.received_at - self.sent_timestamp)

    @property
    def subject(self) -> str:
        """What the webhook id is derived from: the job id, or the message when there is none."""
        return self.job_id if self.job_id is not None else f"sqs-message-{self.message_id}"

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> JobContext:
        attributes = message.get("Attributes") or {}
        sent = attributes.get("SentTimestamp")
        trace = (message.get("MessageAttributes") or {}).get("traceparent") or {}
        try:
            count = int(attributes.get("ApproximateReceiveCount", 1))
        except ValueError:
            count = 1
        return cls(
            message_id=str(message.get("MessageId", "")),
            receipt=str(message.get("ReceiptHandle", "")),
            receive_count=count,
            sent_timestamp=int(sent) / 1000 if sent and str(sent).isdigit() else None,
            traceparent=trace.get("StringValue"),
        )


JobHooks = Callable[[JobContext], AbstractContextManager[object]]


def no_hooks(ctx: JobContext) -> AbstractContextManager[object]:
    return nullcontext()


def best_effort(raw: Any) -> tuple[str | None, dict[str, Any]]:
    """The job id and metadata of a job that failed validation, if they look sane."""
    if not isinstance(raw, dict):
        return None, {}
    job_id = raw.get("job_id")
    job_id = job_id if isinstance(job_id, str) and _JOB_ID.match(job_id) else None
    metadata = raw.get("metadata")
    if isinstance(metadata, dict):
        try:
            if len(json.dumps(metadata).encode()) <= METADATA_MAX_BYTES:
                return job_id, metadata
        except (TypeError, ValueError, RecursionError):
            pass
    return job_id, {}


def peek_job_id(body: str) -> str | None:
    """The job id a message claims, before validation (None when it holds no sane one)."""
    try:
        return best_effort(json.loads(body))[0]
    except (ValueError, RecursionError):
        return None
