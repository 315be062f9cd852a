"""What a backend needs from gpu-worker: put a job on the queue, and check a webhook it gets.

from gpu_worker.client import submit_job, verify_webhook

message_id = submit_job(queue_url, job_dict)            # validated before it is sent
message_id = submit_job(queue_url, template, merge={"hotel": "Le Bristol", "price": 420})
event = verify_webhook(request.headers, request.body, "whsec_...")  # raises if forged
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from gpu_worker.job import Job, decode_job_text, parse_job
from gpu_worker.service.webhook import SIGNATURE_VERSION, parse_secret, sign
from gpu_worker.template import with_merge

__all__ = ["WebhookVerificationError", "submit_job", "verify_webhook"]

TOLERANCE_SECONDS = 300


class WebhookVerificationError(ValueError):
    """A webhook whose signature, timestamp or body does not check out: reject it (400)."""


def _job_body(
    job: Job | Mapping[str, Any] | str | bytes, merge: Mapping[str, Any] | None = None
) -> tuple[Job, str]:
    """The validated job and the message body: the job as given, with ``merge`` added to its
    own; the worker fills the placeholders the same way (values never hold placeholders, so
    filling twice changes nothing)."""
    if isinstance(job, Job) and not merge:
        return job, job.model_dump_json(by_alias=True, exclude_none=True)
    if isinstance(job, Job):
        data = json.loads(job.model_dump_json(by_alias=True, exclude_none=True))
    else:
        data = decode_job_text(job) if isinstance(job, str | bytes) else dict(job)
    data = with_merge(data, dict(merge) if merge else None)
    return parse_job(data), json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def submit_job(
    queue_url: str,
    job: Job | Mapping[str, Any] | str | bytes,
    *,
    sqs: Any = None,
    traceparent: str | None = None,
    delay_seconds: int = 0,
    merge: Mapping[str, Any] | None = None,
) -> str:
    """Validate ``job`` (raises ``InvalidJob``) and send it to the queue; the SQS message id.

    ``merge`` fills the job's ``{{name}}`` placeholders (added to the job's own ``merge``,
    winning on a name); a placeholder left without a value is ``InvalidJob`` naming them all.

    ``traceparent`` (W3C trace context) travels as a message attribute, so the worker's spans
    join the backend's trace. ``sqs`` defaults to ``boto3.client("sqs")``.
    """
    _, body = _job_body(job, merge)
    if sqs is None:
        import boto3

        sqs = boto3.client("sqs")
    extra: dict[str, Any] = {}
    if traceparent:
        extra["MessageAttributes"] = {
            "traceparent": {"DataType": "String", "StringValue": traceparent}
        }
    answer = sqs.send_message(
        QueueUrl=queue_url, MessageBody=body, DelaySeconds=delay_seconds, **extra
    )
    return str(answer["MessageId"])


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    raise WebhookVerificationError(f"missing header {name}")


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str,
    *,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a Standard Webhooks signature and timestamp; the decoded event when genuine.

    ``headers`` may use any letter case; ``body`` must be the raw request body, unparsed.
    Raises :class:`WebhookVerificationError` for a missing header, a timestamp more than
    ``tolerance`` seconds away (replay), a signature that does not match, or a body that is
    not a JSON object. De-duplicate on the ``webhook-id`` header: a redelivered job keeps it.
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        key = parse_secret(secret)
    except ValueError as exc:
        raise WebhookVerificationError(f"bad secret: {exc}") from exc
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old or in the future")
    expected = sign(key, msg_id, timestamp, raw).encode()
    prefix = f"{SIGNATURE_VERSION},"
    offered = [s for s in signatures.split() if s.startswith(prefix)]
    if not any(hmac.compare_digest(expected, s.encode()) for s in offered):
        raise WebhookVerificationError("no matching signature")
    try:
        event = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WebhookVerificationError("the body is not JSON") from exc
    if not isinstance(event, dict):
        raise WebhookVerificationError("the body is not a JSON object")
    return event
