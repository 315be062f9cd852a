"""One settings model: every variable read in one place, checked at start, documented exactly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aws_fixtures import SECRET
from helpers import job_dict

from examples.samples import make_clip
from gpu_worker import cli
from gpu_worker.errors import InvalidConfig
from gpu_worker.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def base_env(**extra: str) -> dict[str, str]:
    env = {
        "SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/jobs",
        "WEBHOOK_URL": "https://api.example.com/hooks/video",
        "WEBHOOK_SECRET": SECRET,
    }
    env.update(extra)
    return env


def test_defaults() -> None:
    settings = Settings.from_env(base_env()).require_serving()
    assert settings.concurrency == 1 and settings.stop_deadline == 100.0
    assert settings.allowed_buckets is None and not settings.webhook_allow_private
    assert settings.max_receives is None and settings.ecs_agent_uri is None
    assert (settings.encoder, settings.decoder, settings.fonts_dir) == ("auto", "auto", None)
    assert settings.limits.max_clips == 100 and settings.limits.max_input_side == 4096
    # webhooks: 30 s, 2 min, 10 min, 30 min, 1 h, then hourly, for a day
    assert settings.webhook_retry_schedule == (30, 120, 600, 1800, 3600)
    assert settings.webhook_retry_hours == 24.0 and settings.webhook_queue_url is None
    assert len(settings.webhook_key) == 32
    assert "whsec" not in repr(settings) and "0123456789abcdef" not in repr(settings)


def test_every_variable_is_read(tmp_path: Path) -> None:
    settings = Settings.from_env(
        base_env(
            GPU_WORKER_ALLOWED_BUCKETS=" media, uploads ,,",
            GPU_WORKER_CONCURRENCY="3",
            GPU_WORKER_STOP_DEADLINE="45.5",
            GPU_WORKER_SCRATCH_DIR=str(tmp_path),
            GPU_WORKER_WEBHOOK_ALLOW_PRIVATE="1",
            WEBHOOK_URL="http://127.0.0.1:9/hook",
            GPU_WORKER_MAX_RECEIVES="4",
            GPU_WORKER_MAX_CLIPS="7",
            GPU_WORKER_MAX_INPUT_BYTES="1000",
            GPU_WORKER_ENCODER="X264",
            GPU_WORKER_DECODER="cpu",
            GPU_WORKER_FONTS_DIR=str(tmp_path / "fonts"),
            AWS_DEFAULT_REGION="eu-west-1",
            ECS_AGENT_URI="http://169.254.170.2/api/x",
            GPU_WORKER_WEBHOOK_QUEUE_URL="https://sqs.eu-west-1.amazonaws.com/1/hooks",
            GPU_WORKER_WEBHOOK_DEAD_LETTER_URL="https://sqs.eu-west-1.amazonaws.com/1/hooks-dlq",
            GPU_WORKER_WEBHOOK_RETRY_SCHEDULE=" 5, 60,7200 ",
            GPU_WORKER_WEBHOOK_RETRY_HOURS="48",
        )
    ).require_serving()
    assert settings.allowed_buckets == {"media", "uploads"}
    assert (settings.concurrency, settings.stop_deadline) == (3, 45.5)
    assert settings.scratch_dir == tmp_path and settings.max_receives == 4
    assert settings.limits.max_clips == 7 and settings.limits.max_input_bytes == 1000
    assert (settings.encoder, settings.decoder) == ("x264", "cpu")
    assert settings.fonts_dir == tmp_path / "fonts" and settings.region == "eu-west-1"
    assert settings.webhook_queue_url == "https://sqs.eu-west-1.amazonaws.com/1/hooks"
    assert settings.webhook_dead_letter_url == "https://sqs.eu-west-1.amazonaws.com/1/hooks-dlq"
    assert (settings.webhook_retry_schedule, settings.webhook_retry_hours) == ((5, 60, 7200), 48)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"WEBHOOK_SECRET": "hunter2"}, "WEBHOOK_SECRET: "),
        ({"WEBHOOK_URL": "ftp://example.com/x"}, "WEBHOOK_URL: 'ftp://example.com/x' is not an"),
        ({"WEBHOOK_URL": "https://user:pw@example.com/x"}, "WEBHOOK_URL: must not hold cred"),
        ({"WEBHOOK_URL": "http://127.0.0.1/hook"}, "WEBHOOK_URL: 127.0.0.1 is not a public"),
        ({"WEBHOOK_URL": "http://169.254.169.254/latest"}, "not a public address"),
        ({"GPU_WORKER_CONCURRENCY": "0"}, "GPU_WORKER_CONCURRENCY: 0 is outside 1..64"),
        ({"GPU_WORKER_CONCURRENCY": "two"}, "GPU_WORKER_CONCURRENCY: 'two' is not a number"),
        ({"GPU_WORKER_CONCURRENCY": "1.5"}, "GPU_WORKER_CONCURRENCY: 1.5 is not a whole number"),
        ({"GPU_WORKER_STOP_DEADLINE": "-1"}, "GPU_WORKER_STOP_DEADLINE: -1 is outside"),
        ({"GPU_WORKER_WEBHOOK_ALLOW_PRIVATE": "maybe"}, "'maybe' is not 1 or 0"),
        ({"GPU_WORKER_MAX_CLIPS": "-5"}, "GPU_WORKER_MAX_CLIPS: -5 is outside"),
        ({"GPU_WORKER_MAX_CLIPS": "many"}, "GPU_WORKER_MAX_CLIPS: 'many' is not a number"),
        ({"GPU_WORKER_MAX_OUTPUT_SECONDS": "nan"}, "GPU_WORKER_MAX_OUTPUT_SECONDS: nan is out"),
        ({"GPU_WORKER_MAX_INPUT_SIDE": "0"}, "GPU_WORKER_MAX_INPUT_SIDE: 0 is outside"),
        ({"GPU_WORKER_ENCODER": "h265"}, "GPU_WORKER_ENCODER: 'h265' is not one of auto, nvenc"),
        ({"GPU_WORKER_DECODER": "gpu"}, "GPU_WORKER_DECODER: 'gpu' is not one of auto, nvdec"),
        ({"GPU_WORKER_WEBHOOK_RETRY_SCHEDULE": "901,60"}, "901 is outside 0..900"),
        ({"GPU_WORKER_WEBHOOK_RETRY_SCHEDULE": "30,50000"}, "50000 is outside 0..43200"),
        ({"GPU_WORKER_WEBHOOK_RETRY_SCHEDULE": " , "}, "SCHEDULE: no delays given"),
        ({"GPU_WORKER_WEBHOOK_RETRY_SCHEDULE": "30,1.5"}, "1.5 is not a whole number"),
        ({"GPU_WORKER_WEBHOOK_RETRY_HOURS": "400"}, "GPU_WORKER_WEBHOOK_RETRY_HOURS: 400 is out"),
        (
            {"GPU_WORKER_WEBHOOK_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/hooks"},
            "GPU_WORKER_WEBHOOK_DEAD_LETTER_URL: set both (durable webhook delivery) or neither",
        ),
    ],
)
def test_malformed_settings_are_refused_naming_the_variable(
    change: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidConfig) as info:
        Settings.from_env(base_env(**change)).require_serving()
    assert message in str(info.value)
    assert info.value.one_line().startswith("error invalid_config: ")


def test_serving_needs_the_queue_and_the_webhook() -> None:
    settings = Settings.from_env({})  # enough for `render`
    with pytest.raises(InvalidConfig, match="SQS_QUEUE_URL, WEBHOOK_URL, WEBHOOK_SECRET: not set"):
        settings.require_serving()


@pytest.mark.parametrize("command", ["render", "serve", "preview"])
def test_a_bad_setting_stops_every_command_at_start(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a valid job and a worker otherwise configured
    make_clip(tmp_path / "a.mp4", width=64, height=64, fps=10, seconds=0.5)
    (tmp_path / "job.json").write_text(
        json.dumps(job_dict([{"uri": "a.mp4"}], output={"uri": "out.mp4"}))
    )
    for name, value in base_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GPU_WORKER_MAX_CLIPS", "-5")
    args = {
        "render": ["render", str(tmp_path / "job.json")],
        "preview": [
            "preview",
            str(tmp_path / "job.json"),
            "--at",
            "0",
            "-o",
            str(tmp_path / "f.png"),
        ],
        "serve": ["serve"],  # would otherwise poll a queue that does not exist
    }[command]
    # When the command starts, Then it exits 1 with one line before any work
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error invalid_config: GPU_WORKER_MAX_CLIPS: -5 is outside 1..100000"
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "f.png").exists()


def test_serve_without_queue_settings_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("SQS_QUEUE_URL", "WEBHOOK_URL", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["serve"]) == 1
    expected = "error invalid_config: SQS_QUEUE_URL, WEBHOOK_URL, WEBHOOK_SECRET: not set"
    assert expected in capsys.readouterr().err


def test_the_readme_lists_exactly_the_variables_of_the_model() -> None:
    documented: set[str] = set()
    for line in README.read_text(encoding="utf-8").splitlines():
        cells = line.split("|")
        if len(cells) > 2:
            documented.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[1]))
    # OTEL_* belong to the OpenTelemetry SDK, which reads them itself
    documented = {name for name in documented if not name.startswith("OTEL_")}
    assert documented == set(Settings.variables())
