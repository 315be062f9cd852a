"""Every environment variable gpu-worker reads, in one pydantic-settings model, checked at start.

Both ``gpu-worker render`` and ``gpu-worker serve`` load :class:`Settings` before any work, so
a negative limit, an unknown encoder name or a malformed webhook URL stops the process with
one line, ``error invalid_config: VARIABLE: why``, instead of failing its first job. The render
core reads no environment: the command line and the service pass it what it needs (limits,
encoder and decoder choice, fonts folder). Not here: the standard ``OTEL_*`` variables (read
by OpenTelemetry's SDK, see ``gpu_worker.observability``) and boto3's own (credentials,
``AWS_MAX_ATTEMPTS``, ``AWS_RETRY_MODE``).
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from gpu_worker.errors import InvalidConfig
from gpu_worker.limits import Limits

SQS_MAX_VISIBILITY = 43_200  # seconds: SQS refuses longer visibility timeouts
SQS_MAX_DELAY = 900  # seconds: the longest DelaySeconds of a message
SQS_MAX_RETENTION_HOURS = 336  # 14 days: the longest a message can stay in a queue
WEBHOOK_RETRY_SCHEDULE = (30, 120, 600, 1800, 3600)  # seconds; the last one repeats

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}

# The mapping read instead of os.environ while Settings.from_env(env) runs (tests, tools).
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("gpu_worker_environ", default=None)


def _number(low: float, high: float, whole: bool = False) -> Callable[[Any], float | int | None]:
    def check(raw: Any) -> float | int | None:
        if raw is None:  # an optional setting left unset
            return None
        text = str(raw).strip()
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if value != value or not low <= value <= high:  # NaN is outside every range
            raise ValueError(f"{text} is outside {low:g}..{high:g}")
        if whole:
            if value != int(value):
                raise ValueError(f"{value:g} is not a whole number")
            return int(value)
        return value

    return check


def _flag(raw: Any) -> bool:
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{text!r} is not 1 or 0")


def _choice(*names: str) -> Callable[[Any], str]:
    def check(raw: Any) -> str:
        text = str(raw).strip().lower() or names[0]
        if text not in names:
            raise ValueError(f"{text!r} is not one of {', '.join(names)}")
        return text

    return check


def _buckets(raw: Any) -> frozenset[str] | None:
    if raw is None:
        return None
    names = frozenset(part.strip() for part in str(raw).split(",") if part.strip())
    return names or None


def _optional_text(raw: Any) -> str | None:
    text = str(raw).strip() if raw is not None else ""
    return text or None


def _webhook_url(raw: Any) -> str | None:
    """An http(s) URL without credentials (the signature authenticates), or None."""
    text = _optional_text(raw)
    if text is None:
        return None
    problem = webhook_url_problem(text)
    if problem:
        raise ValueError(problem)
    return text


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot receive webhooks, or None: the one check of a webhook URL's form."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    if parts.username or parts.password:
        return "must not hold credentials; the signature authenticates"
    return None


def _schedule(raw: Any) -> tuple[int, ...]:
    """Whole seconds between webhook retries, comma-separated; the first at most SQS's 900 s
    message delay, the others at most its 12 h visibility timeout."""
    if isinstance(raw, tuple):
        return raw
    parts = [part.strip() for part in str(raw).split(",") if part.strip()]
    if not parts:
        raise ValueError("no delays given")
    delays = []
    for i, part in enumerate(parts):
        high = SQS_MAX_DELAY if i == 0 else SQS_MAX_VISIBILITY
        value = _number(0, high, whole=True)(part)
        assert isinstance(value, int)
        delays.append(value)
    return tuple(delays)


def _var(name: str, default: Any = None) -> Any:
    return Field(default, validation_alias=AliasChoices(name))


def _int(low: int, high: int) -> BeforeValidator:
    return BeforeValidator(_number(low, high, whole=True))


def _float(low: float, high: float) -> BeforeValidator:
    return BeforeValidator(_number(low, high))


Flag = Annotated[bool, BeforeValidator(_flag)]
Text = Annotated[str | None, BeforeValidator(_optional_text)]
Schedule = Annotated[tuple[int, ...], NoDecode, BeforeValidator(_schedule)]
Buckets = Annotated[frozenset[str] | None, BeforeValidator(_buckets)]
WebhookUrl = Annotated[str | None, BeforeValidator(_webhook_url)]
Folder = Annotated[
    Path | None, BeforeValidator(lambda raw: Path(raw) if _optional_text(raw) else None)
]
EncoderName = Annotated[
    Literal["auto", "nvenc", "x264"], BeforeValidator(_choice("auto", "nvenc", "x264"))
]
DecoderName = Annotated[
    Literal["auto", "nvdec", "cpu"], BeforeValidator(_choice("auto", "nvdec", "cpu"))
]


class _Environ(EnvSettingsSource):
    """os.environ, or the mapping given to :meth:`Settings.from_env`."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        given = _ENVIRON.get()
        return parse_env_vars(
            os.environ if given is None else given,
            self.case_sensitive,
            self.env_ignore_empty,
            self.env_parse_none_str,
        )


class Settings(BaseSettings):
    """What gpu-worker was configured with; each field's alias is its environment variable.

    The README's settings tables list exactly these variables (a test keeps them equal).
    """

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    # The queue worker (required by `serve` only: see require_serving()).
    queue_url: Text = _var("SQS_QUEUE_URL")
    webhook_url: WebhookUrl = _var("WEBHOOK_URL")
    webhook_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("WEBHOOK_SECRET"), repr=False
    )
    region: Text = _var("AWS_DEFAULT_REGION")
    endpoint_url: Text = _var("AWS_ENDPOINT_URL")
    allowed_buckets: Buckets = _var("GPU_WORKER_ALLOWED_BUCKETS")  # None: the output's bucket
    webhook_allow_private: Flag = _var("GPU_WORKER_WEBHOOK_ALLOW_PRIVATE", False)
    concurrency: Annotated[int, _int(1, 64)] = _var("GPU_WORKER_CONCURRENCY", 1)
    stop_deadline: Annotated[float, _float(0, 3600)] = _var("GPU_WORKER_STOP_DEADLINE", 100.0)
    scratch: Folder = _var("GPU_WORKER_SCRATCH_DIR")
    visibility_timeout: Annotated[int, _int(2, SQS_MAX_VISIBILITY)] = _var(
        "GPU_WORKER_VISIBILITY_TIMEOUT", 120
    )
    poll_wait: Annotated[int, _int(0, 20)] = _var("GPU_WORKER_POLL_WAIT", 20)
    max_receives: Annotated[int | None, _int(1, 1000)] = _var("GPU_WORKER_MAX_RECEIVES")
    retry_delay: Annotated[float, _float(0, SQS_MAX_VISIBILITY)] = _var(
        "GPU_WORKER_RETRY_DELAY", 30.0
    )
    retry_delay_max: Annotated[float, _float(0, SQS_MAX_VISIBILITY)] = _var(
        "GPU_WORKER_RETRY_DELAY_MAX", 900.0
    )
    segment_seconds: Annotated[float, _float(0, 86_400)] = _var("GPU_WORKER_SEGMENT_SECONDS", 12.0)
    webhook_timeout: Annotated[float, _float(1, 3600)] = _var("GPU_WORKER_WEBHOOK_TIMEOUT", 60.0)
    webhook_queue_url: Text = _var("GPU_WORKER_WEBHOOK_QUEUE_URL")
    webhook_dead_letter_url: Text = _var("GPU_WORKER_WEBHOOK_DEAD_LETTER_URL")
    webhook_retry_schedule: Schedule = _var(
        "GPU_WORKER_WEBHOOK_RETRY_SCHEDULE", WEBHOOK_RETRY_SCHEDULE
    )
    webhook_retry_hours: Annotated[float, _float(0, SQS_MAX_RETENTION_HOURS)] = _var(
        "GPU_WORKER_WEBHOOK_RETRY_HOURS", 24.0
    )
    ecs_agent_uri: Text = _var("ECS_AGENT_URI")
    health: Folder = _var("GPU_WORKER_HEALTH_FILE")

    # The render (both commands).
    encoder: EncoderName = _var("GPU_WORKER_ENCODER", "auto")
    decoder: DecoderName = _var("GPU_WORKER_DECODER", "auto")
    fonts_dir: Folder = _var("GPU_WORKER_FONTS_DIR")
    max_output_seconds: Annotated[float, _float(0.1, 86_400)] = _var(
        "GPU_WORKER_MAX_OUTPUT_SECONDS", Limits.max_output_seconds
    )
    max_clips: Annotated[int, _int(1, 100_000)] = _var("GPU_WORKER_MAX_CLIPS", Limits.max_clips)
    max_texts: Annotated[int, _int(0, 100_000)] = _var("GPU_WORKER_MAX_TEXTS", Limits.max_texts)
    max_overlays: Annotated[int, _int(0, 10_000)] = _var(
        "GPU_WORKER_MAX_OVERLAYS", Limits.max_overlays
    )
    max_input_side: Annotated[int, _int(16, 65_536)] = _var(
        "GPU_WORKER_MAX_INPUT_SIDE", Limits.max_input_side
    )
    max_input_bytes: Annotated[int, _int(1, 2**50)] = _var(
        "GPU_WORKER_MAX_INPUT_BYTES", Limits.max_input_bytes
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _Environ(settings_cls, case_sensitive=True))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable (``env`` instead of ``os.environ`` when given);
        anything malformed raises :class:`InvalidConfig` naming the variable."""
        token = _ENVIRON.set(env)
        try:
            settings = cls()
        except ValidationError as exc:
            raise InvalidConfig(_one_line(exc)) from None
        finally:
            _ENVIRON.reset(token)
        settings._check_webhook_address()
        return settings

    @classmethod
    def variables(cls) -> list[str]:
        """Every environment variable read, in declaration order."""
        return [cls.variable(field) for field in cls.model_fields]

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable a field is read from."""
        alias = cls.model_fields[field].validation_alias
        assert isinstance(alias, AliasChoices)
        return str(alias.choices[0])

    def require_serving(self) -> Settings:
        """The variables ``serve`` cannot run without are set; else ``InvalidConfig``."""
        missing = [
            self.variable(name)
            for name in ("queue_url", "webhook_url", "webhook_secret")
            if getattr(self, name) is None
        ]
        if missing:
            raise InvalidConfig(f"{', '.join(missing)}: not set")
        if (self.webhook_queue_url is None) != (self.webhook_dead_letter_url is None):
            raise InvalidConfig(
                "GPU_WORKER_WEBHOOK_QUEUE_URL, GPU_WORKER_WEBHOOK_DEAD_LETTER_URL: "
                "set both (durable webhook delivery) or neither"
            )
        self.webhook_key  # noqa: B018 - parses and checks the secret now
        return self

    @property
    def webhook_key(self) -> bytes:
        """The webhook signing key decoded from ``WEBHOOK_SECRET``."""
        from gpu_worker.service.webhook import parse_secret

        if self.webhook_secret is None:
            raise InvalidConfig("WEBHOOK_SECRET: not set")
        try:
            return parse_secret(self.webhook_secret.get_secret_value())
        except ValueError as exc:
            raise InvalidConfig(f"WEBHOOK_SECRET: {exc}") from None

    @property
    def scratch_dir(self) -> Path:
        return self.scratch or Path(tempfile.gettempdir()) / "gpu-worker"

    @property
    def health_file(self) -> Path:
        """Where ``serve`` writes its health and ``doctor --serving`` reads it."""
        return self.health or self.scratch_dir / "health.json"

    @property
    def limits(self) -> Limits:
        return Limits(
            max_output_seconds=self.max_output_seconds,
            max_clips=self.max_clips,
            max_texts=self.max_texts,
            max_overlays=self.max_overlays,
            max_input_side=self.max_input_side,
            max_input_bytes=self.max_input_bytes,
        )

    def _check_webhook_address(self) -> None:
        if self.webhook_allow_private or self.webhook_url is None:
            return
        host = urlsplit(self.webhook_url).hostname or ""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return
        if not literal.is_global:
            raise InvalidConfig(
                f"WEBHOOK_URL: {host} is not a public address (set "
                "GPU_WORKER_WEBHOOK_ALLOW_PRIVATE=1 for local testing only)"
            )


def _one_line(exc: ValidationError) -> str:
    """``VARIABLE: why`` for each problem, on one line."""
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = Settings.variable(field) if field in Settings.model_fields else field
        why = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{name}: {why}")
    return "; ".join(parts)
