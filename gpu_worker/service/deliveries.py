"""Webhooks that outlive the first round of attempts: the retry queue, its schedule, the
webhook dead-letter queue, and the thread that delivers beside render jobs.

A webhook that the job's own round of attempts (``GPU_WORKER_WEBHOOK_TIMEOUT``) could not
deliver, with a retryable answer (no connection, 408, 425, 429, 5xx), is sent to the webhook
queue *before* the job's message is deleted: one SQS message holding the exact body and its
``webhook-id`` (never a signature: each attempt signs afresh). Every worker runs a
:class:`Deliverer` thread that receives those beside render jobs and makes one attempt per
receive (no render resources held). The first comes after the schedule's first delay (the
message's ``DelaySeconds``); a failed attempt hides the message for the next delay (its
visibility timeout), so the message's receive count is its attempt number: 30 s, 2 min,
10 min, 30 min, 1 h, then hourly, until ``GPU_WORKER_WEBHOOK_RETRY_HOURS`` have passed since
the first failure. Nothing is re-sent or copied while it waits.

A non-retryable answer (any other 4xx, an address the guard refuses) or the end of the
schedule moves the delivery to the webhook dead-letter queue, logged as an error (the
template alarms on it); :func:`replay` (``gpu-worker webhooks replay``) re-sends what is there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from gpu_worker.errors import TransientError
from gpu_worker.service.webhook import Delivery, WebhookSender, encode_body, webhook_id
from gpu_worker.settings import SQS_MAX_DELAY, SQS_MAX_VISIBILITY

log = logging.getLogger(__name__)

DELIVERED, PENDING, DEAD_LETTERED = "delivered", "pending", "dead_lettered"
BATCH = 10  # messages received (and attempted side by side) at once: SQS's maximum


class PendingWebhook(BaseModel):
    """The body of a webhook queue (and webhook dead-letter queue) message."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["webhook"] = "webhook"
    webhook_id: str
    event_type: str
    subject: str  # the job id (or sqs-message-<id> for a job without one)
    body: str  # the exact JSON body POSTed on every attempt
    first_failed_at: float  # epoch seconds of the first failed attempt
    first_round_attempts: int = 0  # attempts the job's own round made
    traceparent: str | None = None  # the job's trace: later attempts are traced under it
    last_error: str | None = None
    dead_letter_reason: str | None = None  # why it is in the dead-letter queue

    def to_message(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_message(cls, body: str) -> PendingWebhook:
        return cls.model_validate_json(body)


def next_delay(schedule: tuple[int, ...], attempts: int) -> int:
    """Seconds before the next attempt, once ``attempts`` queued attempts have failed
    (0: the wait before the first one)."""
    return schedule[min(max(0, attempts), len(schedule) - 1)]


class WebhookQueues:
    """The webhook retry queue and its dead-letter queue (``sqs``: a boto3 client)."""

    def __init__(self, sqs: Any, url: str, dead_letter_url: str) -> None:
        self.sqs = sqs
        self.url = url
        self.dead_letter_url = dead_letter_url

    def hand_on(self, pending: PendingWebhook, delay: int) -> None:
        """Queue ``pending`` for its first attempt in ``delay`` s; ``TransientError`` if SQS
        does not take it."""
        self._send(self.url, pending.to_message(), min(SQS_MAX_DELAY, max(0, delay)))

    def dead_letter(self, pending: PendingWebhook) -> None:
        self._send(self.dead_letter_url, pending.to_message(), 0)

    def _send(self, url: str, body: str, delay: int) -> None:
        try:
            self.sqs.send_message(QueueUrl=url, MessageBody=body, DelaySeconds=delay)
        except Exception as exc:
            raise TransientError(f"webhook queue {url}: {type(exc).__name__}: {exc}") from exc

    def receive(self, wait: int, visibility: int) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=BATCH,
            WaitTimeSeconds=wait,
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def delete(self, receipt: str) -> None:
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt)

    def hide(self, receipt: str, seconds: int) -> None:
        self.sqs.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=seconds
        )


class DurableSender:
    """The job's webhook: one round of attempts now; if that fails, the retry queue (a
    retryable answer) or the dead-letter queue (a final one). Without queues (local use), a
    webhook the round cannot deliver is only logged."""

    def __init__(
        self,
        sender: WebhookSender,
        queues: WebhookQueues | None,
        schedule: tuple[int, ...],
    ) -> None:
        self.sender = sender
        self.queues = queues
        self.schedule = schedule

    def send(
        self,
        payload: Mapping[str, Any],
        *,
        subject: str,
        deadline: float | None = None,
        traceparent: str | None = None,
    ) -> Delivery:
        """Deliver ``payload`` or hand it on; ``TransientError`` when it can be neither (the
        job's message must then stay, so that a later attempt sends it)."""
        delivery = self.sender.send(payload, subject=subject, deadline=deadline)
        if delivery.delivered:
            return delivery
        event_type = str(payload["type"])
        if self.queues is None:
            log.error(
                "webhook %s for job %s not delivered (%s) and no webhook queue is configured: "
                "it is lost",
                event_type,
                subject,
                delivery.error,
            )
            return delivery
        pending = PendingWebhook(
            webhook_id=delivery.webhook_id,
            event_type=event_type,
            subject=subject,
            body=encode_body(payload).decode(),
            first_failed_at=delivery.log[0].at if delivery.log else time.time(),
            first_round_attempts=delivery.attempts,
            traceparent=traceparent,
            last_error=delivery.error,
        )
        if delivery.retryable:
            delay = next_delay(self.schedule, 0)
            self.queues.hand_on(pending, delay)
            log.warning(
                "webhook %s for job %s (%s) handed to the retry queue after %s; "
                "next attempt in %d s",
                event_type,
                subject,
                delivery.webhook_id,
                delivery.error,
                delay,
            )
            return replace(delivery, pending=True)
        reason = f"not retryable: {delivery.error}"
        self.queues.dead_letter(pending.model_copy(update={"dead_letter_reason": reason}))
        log.error(
            "webhook %s for job %s (%s) %s; moved to the webhook dead-letter queue",
            event_type,
            subject,
            delivery.webhook_id,
            reason,
        )
        return replace(delivery, dead_lettered=True)


@dataclass
class DeliveryContext:
    """One queued attempt, what a telemetry hook sees: entered with the webhook and its
    attempt number; on exit ``status``, ``error``, ``outcome`` (delivered, pending,
    dead_lettered) and ``next_delay`` (pending) are set."""

    webhook_id: str
    event_type: str
    subject: str
    attempt: int  # 1 for the first attempt from the queue
    traceparent: str | None
    started: float
    status: int | None = None
    error: str | None = None
    outcome: str | None = None
    next_delay: int | None = None


DeliveryHooks = Callable[[DeliveryContext], AbstractContextManager[object]]


def no_delivery_hooks(ctx: DeliveryContext) -> AbstractContextManager[object]:
    return nullcontext()


class Deliverer:
    """The thread that delivers queued webhooks beside the render threads of a worker."""

    def __init__(
        self,
        queues: WebhookQueues,
        sender: WebhookSender,
        *,
        schedule: tuple[int, ...],
        retry_hours: float,
        poll_wait: int,
        hooks: DeliveryHooks | None = None,
    ) -> None:
        self.queues = queues
        self.sender = sender
        self.schedule = schedule
        self.retry_seconds = retry_hours * 3600
        self.poll_wait = poll_wait
        self.hooks: DeliveryHooks = hooks or no_delivery_hooks
        # A received message stays hidden while its attempt runs, and then some.
        self.visibility = int(sender.attempt_timeout) + 30
        self._stop = threading.Event()
        self._delivering = threading.Event()  # set while a batch of attempts runs
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(BATCH, thread_name_prefix="webhook")
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop receiving, waiting up to ``timeout`` for attempts under way (not for an idle
        long poll: the thread ends when it returns). A message whose attempt is cut short
        comes back once its visibility timeout ends."""
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._thread is not None and self._delivering.is_set():
            self._thread.join(timeout)

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                messages = self.queues.receive(self.poll_wait, self.visibility)
                failures = 0
            except Exception as exc:
                failures += 1
                delay = min(30.0, 2.0**failures)
                log.warning("webhook queue: cannot receive (%s); again in %.0f s", exc, delay)
                self._stop.wait(delay)
                continue
            if messages and self._pool is not None and not self._stop.is_set():
                self._delivering.set()
                try:
                    list(self._pool.map(self.deliver, messages))
                except RuntimeError:  # the pool was shut down by stop(): they come back
                    pass
                finally:
                    self._delivering.clear()

    def deliver(self, message: Mapping[str, Any]) -> DeliveryContext | None:
        """One attempt for one queue message, and what becomes of the message; never raises."""
        receipt = str(message.get("ReceiptHandle", ""))
        body = str(message.get("Body", ""))
        try:
            pending = PendingWebhook.from_message(body)
        except ValidationError:
            self._unreadable(receipt, body)
            return None
        try:
            count = int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 1))
        except ValueError:
            count = 1
        ctx = DeliveryContext(
            pending.webhook_id,
            pending.event_type,
            pending.subject,
            count,
            pending.traceparent,
            time.time(),
        )
        try:
            with self.hooks(ctx):
                self._attempt(pending, receipt, ctx)
        except Exception:
            log.exception("webhook %s: unexpected failure; it comes back later", ctx.webhook_id)
        return ctx

    def _attempt(self, pending: PendingWebhook, receipt: str, ctx: DeliveryContext) -> None:
        attempt = self.sender.attempt(pending.webhook_id, pending.body.encode())
        ctx.status, ctx.error = attempt.status, attempt.error
        label = f"{pending.event_type} for job {pending.subject} ({pending.webhook_id})"
        if attempt.delivered:
            ctx.outcome = DELIVERED
            log.info("webhook %s delivered at attempt %d from the retry queue", label, ctx.attempt)
            self.queues.delete(receipt)
            return
        waited = time.time() - pending.first_failed_at
        if not attempt.retryable or waited >= self.retry_seconds:
            reason = (
                f"not retryable: {attempt.error}"
                if not attempt.retryable
                else f"not delivered in {waited / 3600:.1f} h ({ctx.attempt} attempts from the "
                f"retry queue); last: {attempt.error}"
            )
            dead = pending.model_copy(
                update={"last_error": attempt.error, "dead_letter_reason": reason}
            )
            self.queues.dead_letter(dead)
            self.queues.delete(receipt)
            ctx.outcome = DEAD_LETTERED
            log.error("webhook %s %s; moved to the webhook dead-letter queue", label, reason)
            return
        delay = next_delay(self.schedule, ctx.attempt)
        if attempt.retry_after is not None:
            delay = max(delay, int(attempt.retry_after))
        delay = min(delay, SQS_MAX_VISIBILITY)
        self.queues.hide(receipt, delay)
        ctx.outcome, ctx.next_delay = PENDING, delay
        log.warning(
            "webhook %s attempt %d from the retry queue failed (%s); again in %d s",
            label,
            ctx.attempt,
            attempt.error,
            delay,
        )

    def _unreadable(self, receipt: str, body: str) -> None:
        """A message that is no webhook: kept, as it is, in the dead-letter queue."""
        log.error("webhook queue: a message that is not a webhook; moved to the dead-letter queue")
        try:
            self.queues.sqs.send_message(QueueUrl=self.queues.dead_letter_url, MessageBody=body)
            self.queues.delete(receipt)
        except Exception as exc:
            log.warning("cannot move the unreadable webhook message (%s)", exc)


# --------------------------------------------------------------------------------------------
# gpu-worker webhooks replay


@dataclass(frozen=True)
class Replayed:
    """One dead-lettered webhook after a replay: ``delivered`` (and deleted) or not."""

    webhook_id: str | None
    event_type: str | None
    subject: str | None
    delivered: bool
    error: str | None = None
    reason: str | None = None  # why it had been dead-lettered


def _dead_letters(sqs: Any, url: str, limit: int | None) -> Iterator[dict[str, Any]]:
    """Messages of the dead-letter queue, each hidden 5 min once received (no repeats)."""
    seen = 0
    while limit is None or seen < limit:
        count = BATCH if limit is None else min(BATCH, limit - seen)
        answer = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=count, WaitTimeSeconds=1, VisibilityTimeout=300
        )
        messages = answer.get("Messages", [])
        if not messages:
            return
        for message in messages:
            seen += 1
            yield message


def replay(
    sqs: Any,
    dead_letter_url: str,
    sender: WebhookSender,
    *,
    limit: int | None = None,
    dry_run: bool = False,
) -> list[Replayed]:
    """Re-send each webhook in the dead-letter queue now (same ``webhook-id``, same body, a
    fresh signature), one round of attempts each; delete what is delivered and leave the rest
    there, visible again. ``dry_run`` lists them and sends nothing."""
    done: list[Replayed] = []
    left: list[str] = []
    for message in _dead_letters(sqs, dead_letter_url, limit):
        receipt = str(message["ReceiptHandle"])
        try:
            pending = PendingWebhook.from_message(str(message.get("Body", "")))
        except ValidationError:
            done.append(Replayed(None, None, None, False, "not a webhook message"))
            left.append(receipt)
            continue
        found = Replayed(
            pending.webhook_id,
            pending.event_type,
            pending.subject,
            False,
            reason=pending.dead_letter_reason or pending.last_error,
        )
        if dry_run:
            done.append(found)
            left.append(receipt)
            continue
        # The id is the job's; recompute it rather than trust a hand-edited message.
        msg_id = webhook_id(pending.subject, pending.event_type)
        if msg_id != pending.webhook_id:
            done.append(replace(found, error="its webhook-id does not match its job and type"))
            left.append(receipt)
            continue
        label = f"{pending.event_type} for job {pending.subject}"
        delivery = sender.send_body(msg_id, pending.body.encode(), label=label)
        if delivery.delivered:
            sqs.delete_message(QueueUrl=dead_letter_url, ReceiptHandle=receipt)
            done.append(replace(found, delivered=True))
        else:
            done.append(replace(found, error=delivery.error))
            left.append(receipt)
    for receipt in left:
        try:
            sqs.change_message_visibility(
                QueueUrl=dead_letter_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )
        except Exception as exc:
            log.warning("cannot make a dead-lettered webhook visible again (%s)", exc)
    return done


def describe(item: Replayed) -> str:
    """One line per replayed webhook, for the command line."""
    what = f"{item.webhook_id or '-'} {item.event_type or '-'} job {item.subject or '-'}"
    if item.delivered:
        return f"delivered {what}"
    if item.error is None:
        return f"waiting   {what}: {item.reason or 'no reason recorded'}"
    return f"failed    {what}: {item.error}"
