"""Settings of ``gpu-worker serve``: every environment variable it reads, named once, here.

:meth:`Settings.from_env` reads and checks them all at start, so a misconfigured worker stops
with one clear line instead of failing its first job. The render limits
(``GPU_WORKER_MAX_*``) are read by :class:`gpu_worker.limits.Limits`; boto3 reads its own
variables too (credentials, ``AWS_MAX_ATTEMPTS``, ``AWS_RETRY_MODE``).
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from gpu_worker.errors import InternalError
from gpu_worker.limits import Limits
from gpu_worker.service.webhook import parse_secret

QUEUE_URL = "SQS_QUEUE_URL"
REGION = "AWS_DEFAULT_REGION"
ENDPOINT_URL = "AWS_ENDPOINT_URL"
WEBHOOK_URL = "WEBHOOK_URL"
WEBHOOK_SECRET = "WEBHOOK_SECRET"
ALLOWED_BUCKETS = "GPU_WORKER_ALLOWED_BUCKETS"
WEBHOOK_ALLOW_PRIVATE = "GPU_WORKER_WEBHOOK_ALLOW_PRIVATE"
CONCURRENCY = "GPU_WORKER_CONCURRENCY"
STOP_DEADLINE = "GPU_WORKER_STOP_DEADLINE"
SCRATCH_DIR = "GPU_WORKER_SCRATCH_DIR"
VISIBILITY_TIMEOUT = "GPU_WORKER_VISIBILITY_TIMEOUT"
POLL_WAIT = "GPU_WORKER_POLL_WAIT"
MAX_RECEIVES = "GPU_WORKER_MAX_RECEIVES"
RETRY_DELAY = "GPU_WORKER_RETRY_DELAY"
RETRY_DELAY_MAX = "GPU_WORKER_RETRY_DELAY_MAX"
WEBHOOK_TIMEOUT = "GPU_WORKER_WEBHOOK_TIMEOUT"
ECS_AGENT_URI = "ECS_AGENT_URI"

SQS_MAX_VISIBILITY = 43_200  # seconds: SQS refuses longer visibility timeouts

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _fail(name: str, why: str) -> InternalError:
    return InternalError(f"setting {name}: {why}")


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _required(env: Mapping[str, str], name: str) -> str:
    value = _text(env, name)
    if value is None:
        raise _fail(name, "is not set")
    return value


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _fail(name, f"{raw!r} is not a number") from None
    if not low <= value <= high:
        raise _fail(name, f"{raw} is outside {low:g}..{high:g}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _number(env, name, default, low, high)
    if value != int(value):
        raise _fail(name, f"{value:g} is not a whole number")
    return int(value)


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise _fail(name, f"{raw!r} is not 1 or 0")


def _buckets(raw: str | None) -> frozenset[str] | None:
    if raw is None:
        return None
    names = frozenset(part.strip() for part in raw.split(",") if part.strip())
    return names or None


def _webhook_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(WEBHOOK_URL, f"{raw!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise _fail(WEBHOOK_URL, "must not hold credentials; the signature authenticates")
    return raw


@dataclass(frozen=True)
class Settings:
    """What ``gpu-worker serve`` was configured with (see the README, "Serving")."""

    queue_url: str
    webhook_url: str
    webhook_key: bytes = field(repr=False)
    region: str | None = None
    endpoint_url: str | None = None
    allowed_buckets: frozenset[str] | None = None  # None: only the bucket of the job's output
    webhook_allow_private: bool = False
    concurrency: int = 1
    stop_deadline: float = 100.0
    scratch_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "gpu-worker")
    visibility_timeout: int = 120
    poll_wait: int = 20
    max_receives: int | None = None  # None: the queue's redrive policy maxReceiveCount
    retry_delay: float = 30.0
    retry_delay_max: float = 900.0
    webhook_timeout: float = 60.0
    ecs_agent_uri: str | None = None
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting; a missing or malformed one raises ``InternalError``."""
        env = os.environ if env is None else env
        missing = [
            name for name in (QUEUE_URL, WEBHOOK_URL, WEBHOOK_SECRET) if not _text(env, name)
        ]
        if missing:
            raise _fail(", ".join(missing), "not set")
        try:
            key = parse_secret(_required(env, WEBHOOK_SECRET))
        except ValueError as exc:
            raise _fail(WEBHOOK_SECRET, str(exc)) from None
        scratch = _text(env, SCRATCH_DIR)
        settings = cls(
            queue_url=_required(env, QUEUE_URL),
            webhook_url=_webhook_url(_required(env, WEBHOOK_URL)),
            webhook_key=key,
            region=_text(env, REGION),
            endpoint_url=_text(env, ENDPOINT_URL),
            allowed_buckets=_buckets(_text(env, ALLOWED_BUCKETS)),
            webhook_allow_private=_flag(env, WEBHOOK_ALLOW_PRIVATE),
            concurrency=_integer(env, CONCURRENCY, 1, 1, 64),
            stop_deadline=_number(env, STOP_DEADLINE, 100.0, 0, 3600),
            scratch_dir=Path(scratch) if scratch else Path(tempfile.gettempdir()) / "gpu-worker",
            visibility_timeout=_integer(env, VISIBILITY_TIMEOUT, 120, 2, SQS_MAX_VISIBILITY),
            poll_wait=_integer(env, POLL_WAIT, 20, 0, 20),
            max_receives=(
                _integer(env, MAX_RECEIVES, 1, 1, 1000) if _text(env, MAX_RECEIVES) else None
            ),
            retry_delay=_number(env, RETRY_DELAY, 30.0, 0, SQS_MAX_VISIBILITY),
            retry_delay_max=_number(env, RETRY_DELAY_MAX, 900.0, 0, SQS_MAX_VISIBILITY),
            webhook_timeout=_number(env, WEBHOOK_TIMEOUT, 60.0, 1, 3600),
            ecs_agent_uri=_text(env, ECS_AGENT_URI),
            limits=Limits.from_env(env),
        )
        if not settings.webhook_allow_private:
            host = urlsplit(settings.webhook_url).hostname or ""
            try:
                literal = ipaddress.ip_address(host)
            except ValueError:
                literal = None
            if literal is not None and not literal.is_global:
                raise _fail(
                    WEBHOOK_URL,
                    f"{host} is not a public address (set {WEBHOOK_ALLOW_PRIVATE}=1 "
                    "for local testing only)",
                )
        return settings
