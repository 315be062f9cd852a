"""The job queue as the worker uses it: receive, keep hidden, delete or hand back (SQS)."""

from __future__ import annotations

import json
import logging
from typing import Any

from gpu_worker.errors import TransientError
from gpu_worker.service.messages import DELETED, JobContext, Outcome
from gpu_worker.settings import SQS_MAX_VISIBILITY

log = logging.getLogger(__name__)


def retry_visibility(receive_count: int, base: float, cap: float) -> int:
    """Seconds a message stays hidden after transient failure number ``receive_count``:
    ``base`` doubling per attempt, at most ``cap`` (and at most SQS's 12 hours)."""
    if base <= 0:
        return 0
    seconds = base * 2 ** max(0, receive_count - 1)
    return int(min(cap, seconds, SQS_MAX_VISIBILITY))


class JobQueue:
    """One SQS queue: ``sqs`` is a boto3 client (thread-safe)."""

    def __init__(
        self,
        sqs: Any,
        url: str,
        *,
        visibility_timeout: int,
        retry_delay: float,
        retry_delay_max: float,
    ) -> None:
        self.sqs = sqs
        self.url = url
        self.visibility_timeout = visibility_timeout
        self.retry_delay = retry_delay
        self.retry_delay_max = retry_delay_max

    def receive(self, wait: int) -> list[dict[str, Any]]:
        """At most one message, long-polling ``wait`` seconds; ``TransientError`` on failure."""
        try:
            answer = self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=wait,
                VisibilityTimeout=self.visibility_timeout,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        except Exception as exc:
            raise TransientError(f"receive: {type(exc).__name__}: {exc}") from exc
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def keep_hidden(self, receipt: str) -> None:
        """Extend a message's invisibility by the visibility timeout (the heartbeat)."""
        self.sqs.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=self.visibility_timeout
        )

    def redrive_max_receives(self) -> int | None:
        """The queue's redrive ``maxReceiveCount``: the attempt after which SQS dead-letters."""
        try:
            answer = self.sqs.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["RedrivePolicy"]
            )
            policy = answer.get("Attributes", {}).get("RedrivePolicy")
            if policy:
                return int(json.loads(policy)["maxReceiveCount"])
        except Exception as exc:
            log.warning("cannot read the queue's redrive policy: %s", exc)
            return None
        log.warning(
            "the queue has no redrive policy: a job failing transiently is retried until the "
            "queue's retention ends, and no video.failed webhook is sent for it"
        )
        return None

    def settle(self, ctx: JobContext) -> None:
        """Tell SQS how the message ended: delete it, or make it visible again when due."""
        if ctx.outcome in DELETED:
            try:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=ctx.receipt)
            except Exception as exc:
                log.warning(
                    "message %s: delete failed (%s); it will be redelivered", ctx.message_id, exc
                )
            return
        delay = 0  # released: another worker may start it at once
        if ctx.outcome is Outcome.RETRY:
            # After the last attempt SQS moves it to the dead-letter queue on its next receive.
            delay = retry_visibility(ctx.receive_count, self.retry_delay, self.retry_delay_max)
        self.set_visibility(ctx.message_id, ctx.receipt, delay)

    def set_visibility(self, message_id: str, receipt: str, seconds: int) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=seconds
            )
        except Exception as exc:
            log.warning("message %s: cannot set visibility %d s (%s)", message_id, seconds, exc)
