"""Webhooks to the backend: Standard Webhooks signing, event bodies, delivery with retries, and
the guard that keeps them away from loopback, private and metadata addresses.

A webhook's id is derived from the job and the event type, so a job delivered twice sends the
same id and the backend can de-duplicate. Delivery never raises: a webhook that is not
delivered is reported in :class:`Delivery` (and handed on to the durable retry path of
:mod:`gpu_worker.service.deliveries`); the video is already in S3.
The host is resolved once per attempt, every address checked, and the connection made to the
checked address (no second lookup an attacker could answer differently); redirects are never
followed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import urllib3

from gpu_worker.errors import GpuWorkerError, InputForbidden, TransientError
from gpu_worker.settings import webhook_url_problem

log = logging.getLogger(__name__)

COMPLETED = "video.completed"
FAILED = "video.failed"
SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
USER_AGENT = "gpu-worker-webhook/1"

# Metadata endpoints refused even when private addresses are allowed for local testing:
# EC2 IMDS, the ECS task metadata/credentials endpoint, EC2 IMDS over IPv6.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254")
)
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_secret(value: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_`` + base64 (the prefix optional)."""
    encoded = value.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not whsec_ followed by base64") from exc
    if len(key) < 16:
        raise ValueError(f"the key is {len(key)} bytes; use at least 16 (24 to 64 is usual)")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def webhook_id(subject: str, event_type: str) -> str:
    """A stable id for one event about one job: the same on every redelivery."""
    digest = hashlib.sha256(f"{subject}\n{event_type}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def event(
    event_type: str,
    job_id: str | None,
    *,
    output: Mapping[str, Any] | None = None,
    outputs: Sequence[Mapping[str, Any]] | None = None,
    error: GpuWorkerError | None = None,
    encoder: str | None = None,
    timings: Mapping[str, float] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of a ``video.completed`` or ``video.failed`` webhook; ``outputs`` (every
    rendition of a job with several, ``output`` being the first) only when given."""
    body: dict[str, Any] = {
        "type": event_type,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "job_id": job_id,
        "output": dict(output) if output is not None else None,
        "error": {"code": error.code, "message": error.message} if error is not None else None,
        "encoder": encoder,
        "timings": {name: round(seconds, 4) for name, seconds in (timings or {}).items()},
        "metadata": dict(metadata or {}),
    }
    if outputs is not None:
        body["outputs"] = [dict(item) for item in outputs]
    return body


def encode_body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def retry_delay(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): exponential, capped, with
    "equal jitter" — ``jitter`` in [0, 1) picks a point in the upper half of the step."""
    step = min(cap, base * 2 ** max(0, attempt - 1))
    return step / 2 + step / 2 * min(max(jitter, 0.0), 1.0)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header as seconds from ``now`` (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def refusal(address: Address, allow_private: bool) -> str | None:
    """Why the worker will not connect to ``address``, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES or address.is_link_local:
        return "a link-local or cloud metadata address"
    if address.is_multicast or address.is_unspecified:
        return "a multicast or unspecified address"
    if allow_private:
        return None
    if address.is_loopback:
        return "a loopback address"
    if not address.is_global:
        return "a private or reserved address"
    return None


def resolve(host: str, port: int, allow_private: bool) -> list[str]:
    """Every address ``host`` resolves to, all checked; raises ``input_forbidden`` if any is
    refused (a name that also points inside is refused whole)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TransientError(f"webhook host {host}: cannot be resolved ({exc})") from exc
    found: list[str] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]
        address = ipaddress.ip_address(text)
        why = refusal(address, allow_private)
        if why is not None:
            raise InputForbidden(f"webhook host {host} resolves to {address}: {why}")
        if text not in found:
            found.append(text)
    if not found:
        raise TransientError(f"webhook host {host}: no address")
    return found


@dataclass(frozen=True)
class Attempt:
    """One POST of a webhook: when, and what came back (``status`` None: no answer)."""

    at: float  # epoch seconds
    status: int | None
    error: str | None
    retryable: bool
    retry_after: float | None = None  # seconds the receiver asked for (Retry-After)

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Delivery:
    """How sending one webhook ended: delivered, or not (then ``retryable`` says whether a
    later attempt may succeed); ``pending`` once handed to the retry queue, ``dead_lettered``
    once given up (see :mod:`gpu_worker.service.deliveries`)."""

    webhook_id: str
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    log: tuple[Attempt, ...] = ()
    pending: bool = False
    dead_lettered: bool = False


class WebhookSender:
    """Signs and POSTs events to one configured URL, retrying within a total time budget."""

    def __init__(
        self,
        url: str,
        key: bytes,
        *,
        allow_private: bool = False,
        total_timeout: float = 60.0,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        attempt_timeout: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        problem = webhook_url_problem(url)
        if problem:
            raise ValueError(problem)
        parts = urlsplit(url)
        assert parts.hostname is not None  # webhook_url_problem checked it
        self.url = url
        self.scheme = parts.scheme
        self.host: str = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.key = key
        self.allow_private = allow_private
        self.total_timeout = total_timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.attempt_timeout = attempt_timeout
        self.sleep = sleep
        self.jitter = jitter

    def headers(self, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        ts = int(time.time()) if timestamp is None else timestamp
        host = self.host if ":" not in self.host else f"[{self.host}]"
        default_port = 443 if self.scheme == "https" else 80
        return {
            "Host": host if self.port == default_port else f"{host}:{self.port}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(self.key, msg_id, ts, body),
        }

    def send(
        self,
        payload: Mapping[str, Any],
        *,
        subject: str,
        deadline: float | None = None,
    ) -> Delivery:
        """Deliver ``payload`` (its ``type`` decides the id with ``subject``, the job id)."""
        msg_id = webhook_id(subject, str(payload["type"]))
        label = f"{payload['type']} for job {subject}"
        return self.send_body(msg_id, encode_body(payload), label=label, deadline=deadline)

    def send_body(
        self,
        msg_id: str,
        body: bytes,
        *,
        label: str,
        deadline: float | None = None,
        total_timeout: float | None = None,
    ) -> Delivery:
        """POST ``body`` under ``msg_id`` until delivered, refused for good, or out of time
        (``total_timeout``, default the sender's; ``deadline``, a monotonic time)."""
        give_up_at = time.monotonic() + (
            self.total_timeout if total_timeout is None else total_timeout
        )
        if deadline is not None:
            give_up_at = min(give_up_at, deadline)
        log_: list[Attempt] = []
        while True:
            attempt = self.attempt(msg_id, body, give_up_at)
            log_.append(attempt)
            if attempt.delivered:
                log.info("webhook %s %s delivered", label, msg_id)
                return Delivery(msg_id, True, len(log_), attempt.status, log=tuple(log_))
            delay = (
                attempt.retry_after
                if attempt.retry_after is not None
                else retry_delay(
                    len(log_), base=self.base_delay, cap=self.max_delay, jitter=self.jitter()
                )
            )
            if not attempt.retryable or time.monotonic() + delay >= give_up_at:
                log.warning(
                    "webhook %s (%s) not delivered after %d attempt(s): %s",
                    label,
                    msg_id,
                    len(log_),
                    attempt.error,
                )
                return Delivery(
                    msg_id,
                    False,
                    len(log_),
                    attempt.status,
                    attempt.error,
                    retryable=attempt.retryable,
                    retry_after=attempt.retry_after,
                    log=tuple(log_),
                )
            log.info(
                "webhook %s attempt %d failed (%s); again in %.1f s",
                msg_id,
                len(log_),
                attempt.error,
                delay,
            )
            self.sleep(delay)

    def attempt(self, msg_id: str, body: bytes, give_up_at: float | None = None) -> Attempt:
        """One signed POST (a fresh timestamp and signature); never raises."""
        at = time.time()
        if give_up_at is None:
            give_up_at = time.monotonic() + self.attempt_timeout
        try:
            status, retry_after_header = self._post(msg_id, body, give_up_at)
        except TransientError as exc:
            return Attempt(at, None, exc.message, True)
        except GpuWorkerError as exc:
            return Attempt(at, None, exc.message, False)
        if 200 <= status < 300:
            return Attempt(at, status, None, False)
        return Attempt(
            at,
            status,
            f"HTTP {status}",
            status in RETRY_STATUSES,
            parse_retry_after(retry_after_header, time.time()),
        )

    def _post(self, msg_id: str, body: bytes, give_up_at: float) -> tuple[int, str | None]:
        """One POST to a checked address; network faults raise ``TransientError``."""
        addresses = resolve(self.host, self.port, self.allow_private)
        left = max(0.1, min(self.attempt_timeout, give_up_at - time.monotonic()))
        timeout = urllib3.Timeout(connect=min(5.0, left), read=left)
        pool: urllib3.HTTPConnectionPool
        if self.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                addresses[0],
                self.port,
                timeout=timeout,
                retries=False,
                maxsize=1,
                server_hostname=self.host,
                assert_hostname=self.host,
                cert_reqs="CERT_REQUIRED",
            )
        else:
            pool = urllib3.HTTPConnectionPool(
                addresses[0], self.port, timeout=timeout, retries=False, maxsize=1
            )
        try:
            response = pool.urlopen(
                "POST",
                self.target,
                body=body,
                headers=self.headers(msg_id, body),
                redirect=False,
                retries=False,
                preload_content=True,
                assert_same_host=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"webhook POST to {self.host}: {type(exc).__name__}") from exc
        finally:
            pool.close()
        return response.status, response.headers.get("Retry-After")
