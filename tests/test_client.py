"""The backend's side: submit_job puts a validated job on SQS; verify_webhook accepts only
genuine, fresh webhooks."""

from __future__ import annotations

import json
import time

import pytest
from aws_fixtures import SECRET, Aws, job

from gpu_worker.client import WebhookVerificationError, submit_job, verify_webhook
from gpu_worker.errors import InvalidJob
from gpu_worker.job import parse_job
from gpu_worker.service.webhook import parse_secret, sign

pytest_plugins = ["aws_fixtures"]

BODY = b'{"type":"video.completed","job_id":"j-1"}'
NOW = 1_700_000_000


def headers(body: bytes = BODY, *, stamp: int = NOW, secret: str = SECRET) -> dict[str, str]:
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(parse_secret(secret), "msg_1", stamp, body),
    }


def test_verify_accepts_a_genuine_webhook() -> None:
    assert verify_webhook(headers(), BODY, SECRET, now=NOW + 10)["job_id"] == "j-1"
    assert verify_webhook(headers(), BODY.decode(), SECRET, now=NOW)["type"] == "video.completed"


def test_verify_ignores_header_case_and_extra_signatures() -> None:
    h = {k.title(): v for k, v in headers().items()}
    h["Webhook-Signature"] = "v1,AAAA v2,xyz " + h["Webhook-Signature"]
    assert verify_webhook(h, BODY, SECRET, now=NOW)["job_id"] == "j-1"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("tampered body", "no matching signature"),
        ("other secret", "no matching signature"),
        ("too old", "too old"),
        ("from the future", "too old"),
        ("no signature", "missing header webhook-signature"),
        ("timestamp not a number", "not a number"),
        ("not json", "not JSON"),
        ("json array", "not a JSON object"),
    ],
)
def test_verify_rejects(case: str, message: str) -> None:
    body, h, now = BODY, headers(), NOW
    if case == "tampered body":
        body = BODY.replace(b"j-1", b"j-2")
    elif case == "other secret":
        h = headers(secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    elif case == "too old":
        now = NOW + 301
    elif case == "from the future":
        now = NOW - 301
    elif case == "no signature":
        del h["webhook-signature"]
    elif case == "timestamp not a number":
        h["webhook-timestamp"] = "yesterday"
    elif case in ("not json", "json array"):
        body = b"not json" if case == "not json" else b"[1]"
        h = headers(body)
    with pytest.raises(WebhookVerificationError, match=message):
        verify_webhook(h, body, SECRET, now=now)


def test_verify_uses_the_clock_by_default() -> None:
    stamp = int(time.time())
    assert verify_webhook(headers(stamp=stamp), BODY, SECRET)["job_id"] == "j-1"


def test_submit_job_sends_the_job_with_its_trace(aws: Aws) -> None:
    spec = job(aws, [f"s3://{aws.bucket}/a.mp4"], metadata={"order": 7})
    message_id = submit_job(
        aws.queue_url, spec, sqs=aws.sqs, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    )
    (message,) = aws.sqs.receive_message(
        QueueUrl=aws.queue_url, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]
    assert message["MessageId"] == message_id
    assert json.loads(message["Body"]) == spec
    assert message["MessageAttributes"]["traceparent"]["StringValue"].startswith("00-aaaa")


def test_submit_job_accepts_a_parsed_job(aws: Aws) -> None:
    parsed = parse_job(job(aws, [f"s3://{aws.bucket}/a.mp4"]))
    submit_job(aws.queue_url, parsed, sqs=aws.sqs)
    (message,) = aws.sqs.receive_message(QueueUrl=aws.queue_url, WaitTimeSeconds=1)["Messages"]
    assert parse_job(json.loads(message["Body"])) == parsed


def test_submit_job_refuses_an_invalid_job_before_sending(aws: Aws) -> None:
    bad = job(aws, [f"s3://{aws.bucket}/a.mp4"], output={"width": 63})
    with pytest.raises(InvalidJob, match="even"):
        submit_job(aws.queue_url, bad, sqs=aws.sqs)
    with pytest.raises(InvalidJob, match="JSON"):
        submit_job(aws.queue_url, "{nope", sqs=aws.sqs)
    assert aws.counts() == (0, 0)
