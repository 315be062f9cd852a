"""Webhooks: Standard Webhooks signatures, retries and backoff, the address guard, delivery
to a real HTTP receiver that fails, redirects or is down."""

from __future__ import annotations

import ipaddress
import threading
import time

import pytest
from aws_fixtures import SECRET, Aws, Receiver, free_port

from gpu_worker.client import verify_webhook
from gpu_worker.errors import InputForbidden, InvalidJob
from gpu_worker.service import webhook
from gpu_worker.service.deliveries import Deliverer, PendingWebhook, WebhookQueues, next_delay
from gpu_worker.service.webhook import (
    WebhookSender,
    parse_retry_after,
    parse_secret,
    refusal,
    retry_delay,
    sign,
    webhook_id,
)
from gpu_worker.settings import Settings

pytest_plugins = ["aws_fixtures"]


def sender(url: str, **kwargs: object) -> WebhookSender:
    options: dict[str, object] = {
        "allow_private": True,
        "total_timeout": 5.0,
        "base_delay": 0.05,
        "max_delay": 0.2,
    }
    options.update(kwargs)
    return WebhookSender(url, parse_secret(SECRET), **options)  # type: ignore[arg-type]


def completed(job_id: str = "job-1") -> dict[str, object]:
    return webhook.event(webhook.COMPLETED, job_id, output={"uri": "s3://b/k.mp4"})


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    key = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("secret", ["", "whsec_!!!", "whsec_" + "QUJD", "not base64 at all"])
def test_bad_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError):
        parse_secret(secret)


def test_webhook_id_depends_on_job_and_type_only() -> None:
    assert webhook_id("job-1", webhook.COMPLETED) == webhook_id("job-1", webhook.COMPLETED)
    assert webhook_id("job-1", webhook.COMPLETED) != webhook_id("job-1", webhook.FAILED)
    assert webhook_id("job-1", webhook.COMPLETED) != webhook_id("job-2", webhook.COMPLETED)
    assert webhook_id("job-1", webhook.FAILED).startswith("msg_")


def test_failed_event_carries_the_error_code() -> None:
    body = webhook.event(webhook.FAILED, "j", error=InvalidJob("bad"), metadata={"a": 1})
    assert body["type"] == "video.failed"
    assert body["error"] == {"code": "invalid_job", "message": "bad"}
    assert body["output"] is None and body["metadata"] == {"a": 1}


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [
        (1, 0.0, 0.5),  # half the first step
        (1, 1.0, 1.0),  # the whole first step
        (2, 0.0, 1.0),
        (3, 0.5, 3.0),  # step 4: 2 + 2 * 0.5
        (4, 1.0, 8.0),
        (6, 1.0, 30.0),  # step 32, capped at 30
        (50, 0.0, 15.0),  # huge attempts stay capped
        (0, 1.0, 1.0),  # attempt numbers below 1 count as the first
        (2, 7.0, 2.0),  # jitter is clamped to [0, 1]
    ],
)
def test_retry_delay(attempt: int, jitter: float, expected: float) -> None:
    assert retry_delay(attempt, base=1.0, cap=30.0, jitter=jitter) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),  # 10 s after "now" below
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: at once
        ("soon", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(header, now) == expected


@pytest.mark.parametrize(
    ("address", "allow_private", "refused"),
    [
        ("8.8.8.8", False, False),
        ("2606:4700:4700::1111", False, False),
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("10.1.2.3", False, True),
        ("172.16.0.1", False, True),
        ("192.168.1.1", False, True),
        ("100.64.0.1", False, True),  # carrier-grade NAT, not global
        ("0.0.0.0", False, True),
        ("224.0.0.1", False, True),
        ("169.254.169.254", False, True),  # EC2 instance metadata
        ("169.254.170.2", False, True),  # ECS task metadata and credentials
        ("fd00:ec2::254", False, True),  # EC2 metadata over IPv6
        ("::ffff:127.0.0.1", False, True),  # IPv4-mapped loopback
        ("fe80::1", False, True),
        ("127.0.0.1", True, False),  # allowed for local testing
        ("10.1.2.3", True, False),
        ("169.254.169.254", True, True),  # metadata stays refused even then
        ("169.254.170.2", True, True),
        ("fd00:ec2::254", True, True),
        ("::ffff:169.254.169.254", True, True),
    ],
)
def test_refused_addresses(address: str, allow_private: bool, refused: bool) -> None:
    assert (refusal(ipaddress.ip_address(address), allow_private) is not None) is refused


def test_private_destination_is_refused_without_sending(receiver: Receiver) -> None:
    url = f"http://localhost:{receiver.port}/hook"
    delivery = sender(url, allow_private=False).send(completed(), subject="job-1")
    assert not delivery.delivered and delivery.attempts == 1
    assert "loopback" in (delivery.error or "")
    assert receiver.requests == []
    with pytest.raises(InputForbidden):
        webhook.resolve("127.0.0.1", 80, allow_private=False)


def test_delivered_with_a_valid_signature(receiver: Receiver) -> None:
    payload = completed()
    delivery = sender(f"{receiver.url}/hooks?x=1").send(payload, subject="job-1")
    assert delivery.delivered and delivery.attempts == 1 and delivery.status == 200
    (request,) = receiver.posts()
    assert request.path == "/hooks?x=1"
    event = verify_webhook(request.headers, request.body, SECRET)
    assert event["job_id"] == "job-1" and event["type"] == "video.completed"
    assert request.headers["webhook-id"] == webhook_id("job-1", "video.completed")


def test_retries_on_5xx_with_the_same_id(receiver: Receiver) -> None:
    receiver.fail(2, 503)
    delivery = sender(receiver.url).send(completed(), subject="job-1")
    assert delivery.delivered and delivery.attempts == 3
    requests = receiver.posts()
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    for request in requests:
        verify_webhook(request.headers, request.body, SECRET)


def test_honours_retry_after_on_429(receiver: Receiver) -> None:
    receiver.fail(1, 429, retry_after="2")
    slept: list[float] = []
    delivery = sender(receiver.url, sleep=slept.append).send(completed(), subject="j")
    assert delivery.delivered and delivery.attempts == 2
    assert slept == [2.0]


@pytest.mark.parametrize("status", [400, 401, 404, 410])
def test_client_errors_are_not_retried(receiver: Receiver, status: int) -> None:
    receiver.fail(5, status)
    delivery = sender(receiver.url).send(completed(), subject="j")
    assert not delivery.delivered and delivery.attempts == 1 and delivery.status == status


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    target = Receiver().start()
    try:
        receiver.fail(5, 302, location=f"{target.url}/elsewhere")
        delivery = sender(receiver.url).send(completed(), subject="j")
        assert not delivery.delivered and delivery.status == 302
        assert target.requests == []
    finally:
        target.stop()


def test_gives_up_within_the_total_time() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    delivery = sender(f"http://127.0.0.1:{port}", total_timeout=0.6).send(completed(), subject="j")
    assert not delivery.delivered and delivery.attempts >= 2
    assert time.monotonic() - started < 1.5


def test_receiver_down_then_up_is_delivered() -> None:
    down = Receiver()  # not started: connections are refused
    timer = threading.Timer(0.4, down.start)
    timer.start()
    try:
        delivery = sender(down.url, total_timeout=5.0).send(completed("job-9"), subject="job-9")
        assert delivery.delivered and delivery.attempts >= 2
        (request,) = down.posts()
        assert verify_webhook(request.headers, request.body, SECRET)["job_id"] == "job-9"
    finally:
        timer.join()
        down.stop()


# --------------------------------------------------------------------------------------------
# the retry queue: one attempt per receive, on a schedule, until the retry window is over

HOUR = 3600.0


def queued(aws: Aws, *, failed_ago: float, traceparent: str | None = None) -> dict[str, object]:
    """A webhook handed on ``failed_ago`` seconds ago, as the deliverer receives it."""
    payload = completed("job-q")
    pending = PendingWebhook(
        webhook_id=webhook_id("job-q", webhook.COMPLETED),
        event_type=webhook.COMPLETED,
        subject="job-q",
        body=webhook.encode_body(payload).decode(),
        first_failed_at=time.time() - failed_ago,
        traceparent=traceparent,
    )
    WebhookQueues(aws.sqs, aws.webhook_queue_url, aws.webhook_dlq_url).hand_on(pending, 0)
    (message,) = aws.sqs.receive_message(
        QueueUrl=aws.webhook_queue_url,
        WaitTimeSeconds=1,
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )["Messages"]
    return dict(message)


def deliverer(aws: Aws, url: str, **kwargs: object) -> Deliverer:
    settings = Settings.from_env({})  # the production schedule: 30 s, 2 min, ... hourly, 24 h
    options: dict[str, object] = {
        "schedule": settings.webhook_retry_schedule,
        "retry_hours": settings.webhook_retry_hours,
        "poll_wait": 1,
    }
    options.update(kwargs)
    queues = WebhookQueues(aws.sqs, aws.webhook_queue_url, aws.webhook_dlq_url)
    return Deliverer(queues, sender(url), **options)  # type: ignore[arg-type]


def test_the_default_schedule_is_30s_2min_10min_30min_then_hourly() -> None:
    schedule = Settings.from_env({}).webhook_retry_schedule
    waits = [next_delay(schedule, attempts) for attempts in range(8)]
    assert waits == [30, 120, 600, 1800, 3600, 3600, 3600, 3600]


@pytest.mark.parametrize(
    ("attempt", "failed_ago", "status", "retry_after", "outcome", "wait"),
    [
        (1, 30.0, 503, None, "pending", 120),  # the first queued attempt, then 2 min
        (3, 800.0, None, None, "pending", 1800),  # no connection at all
        (9, 6 * HOUR, 429, "7200", "pending", 7200),  # Retry-After longer than the step
        (28, 23.9 * HOUR, 502, None, "pending", 3600),  # hourly until the day is over
        (29, 24.0 * HOUR, 503, None, "dead_lettered", None),  # then given up
        (2, 200.0, 410, None, "dead_lettered", None),  # gone: at once
    ],
)
def test_a_queued_attempt_delivers_waits_or_gives_up(
    aws: Aws,
    receiver: Receiver,
    attempt: int,
    failed_ago: float,
    status: int | None,
    retry_after: str | None,
    outcome: str,
    wait: int | None,
) -> None:
    if status is None:
        receiver.stop()
    else:
        headers = {"retry_after": retry_after} if retry_after else {}
        receiver.fail(1, status, **headers)
    message = queued(aws, failed_ago=failed_ago)
    message["Attributes"] = {"ApproximateReceiveCount": str(attempt)}  # as if received N times

    ctx = deliverer(aws, receiver.url).deliver(message)

    assert ctx is not None and (ctx.outcome, ctx.next_delay) == (outcome, wait)
    assert ctx.status == status
    if outcome == "pending":  # hidden for the wait, not copied anywhere
        assert aws.counts(aws.webhook_queue_url) == (0, 1)
        assert aws.waiting(aws.webhook_dlq_url) == 0
    else:
        assert aws.waiting(aws.webhook_queue_url) == 0
        (dead,) = aws.sqs.receive_message(QueueUrl=aws.webhook_dlq_url)["Messages"]
        record = PendingWebhook.from_message(dead["Body"])
        assert record.webhook_id == webhook_id("job-q", webhook.COMPLETED)
        assert record.last_error == f"HTTP {status}"
        assert record.dead_letter_reason is not None
        assert ("not retryable" in record.dead_letter_reason) is (status == 410)


def test_a_queued_attempt_is_a_span_in_the_jobs_trace(aws: Aws, receiver: Receiver) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gpu_worker.observability.setup import setup_telemetry
    from gpu_worker.observability.spans import delivery_hooks

    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry = setup_telemetry(span_exporters=[spans], metric_readers=[metrics])
    trace = "00-" + "5" * 32 + "-" + "6" * 16 + "-01"
    receiver.fail(1, 503)
    worker = deliverer(aws, receiver.url, hooks=delivery_hooks(telemetry))
    worker.deliver(queued(aws, failed_ago=30, traceparent=trace))
    telemetry.force_flush()
    (span,) = [s for s in spans.get_finished_spans() if s.name == "webhook_delivery"]
    assert format(span.context.trace_id, "032x") == "5" * 32
    assert span.attributes["http.response.status_code"] == 503
    assert span.attributes["webhook.outcome"] == "pending"
    assert span.attributes["webhook.id"] == webhook_id("job-q", webhook.COMPLETED)
    assert span.status.status_code.name == "ERROR"
    counts = {
        point.attributes["webhook.outcome"]: point.value
        for resource in metrics.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "gpu_worker.webhooks"
        for point in metric.data.data_points
    }
    assert counts == {"pending": 1}
    telemetry.shutdown()
