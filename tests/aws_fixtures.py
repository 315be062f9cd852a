"""Shared fixtures of the queue-worker tests: a moto server (S3 + SQS over real HTTP), a
webhook receiver that records requests and can fail or be down, an S3 that only fails, and
tiny sample media. Test modules load it with ``pytest_plugins = ["aws_fixtures"]`` and import
its helpers, so it is not assertion-rewritten (PYTEST_DONT_REWRITE): it holds no asserts.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from examples import samples
from gpu_worker.service.worker import Worker
from gpu_worker.settings import Settings

REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0  # what the receiver answered
    at: float = field(default_factory=time.monotonic)  # when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every request and answers as told:
    ``fail(n, status)`` answers the next ``n`` requests with ``status``; ``refuse_for(s)``
    answers 503 to everything for ``s`` seconds from the next request on; ``hold()`` keeps
    each request unanswered until ``release()``; ``stop()`` takes it down (connections
    refused) and ``start()`` brings it back on the same port."""

    port: int = field(default_factory=free_port)
    requests: list[Request] = field(default_factory=list)
    failures: int = 0
    fail_status: int = 503
    fail_headers: dict[str, str] = field(default_factory=dict)
    refusing_until: float = 0.0  # time.monotonic() before which every request gets 503
    refuse_seconds: float = 0.0  # an outage starting with the next request
    held: threading.Event | None = None
    _server: ThreadingHTTPServer | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, times: int, status: int = 503, **headers: str) -> None:
        self.failures, self.fail_status, self.fail_headers = times, status, headers

    def refuse_for(self, seconds: float, status: int = 503) -> None:
        self.fail_status, self.refuse_seconds = status, seconds

    def hold(self) -> None:
        self.held = threading.Event()

    def release(self) -> None:
        if self.held is not None:
            self.held.set()
        self.held = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, dict(self.headers.items()), body)
                held = receiver.held
                with receiver._cond:
                    receiver.requests.append(request)
                    receiver._cond.notify_all()
                    if receiver.refuse_seconds:
                        receiver.refusing_until = request.at + receiver.refuse_seconds
                        receiver.refuse_seconds = 0.0
                    failing = receiver.failures > 0
                    if failing:
                        receiver.failures -= 1
                    failing = failing or time.monotonic() < receiver.refusing_until
                if held is not None:
                    held.wait(30)
                status = receiver.fail_status if failing else 200
                request.status = status
                self.send_response(status)
                for name, value in (receiver.fail_headers if failing else {}).items():
                    self.send_header(name.replace("_", "-"), value)
                reply = b'{"protection":{}}' if self.command == "PUT" else b"ok"
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_POST = do_PUT = do_GET = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.requests)} requests, expected {count}")
                self._cond.wait(left)
            return list(self.requests)

    def posts(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]

    def accepted(self) -> list[Request]:
        """The POSTs answered 2xx: what a backend processed."""
        return [r for r in self.posts() if 200 <= r.status < 300]

    def wait_for_accepted(self, count: int, timeout: float = 10.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while len(self.accepted()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.accepted())} accepted, expected {count}")
            time.sleep(0.05)
        return self.accepted()


class FailingS3(BaseHTTPRequestHandler):
    """Answers every request with the S3 error XML of ``status``/``code`` (set on the server)."""

    def _answer(self) -> None:
        status, code = self.server.answer  # type: ignore[attr-defined]
        self.server.hits += 1  # type: ignore[attr-defined]
        body = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{code}</Message><RequestId>1</RequestId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def failing_s3() -> Iterator[ThreadingHTTPServer]:
    """An "S3" that answers 503 SlowDown to everything (set ``.answer`` to change it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FailingS3)
    server.answer = (503, "SlowDown")  # type: ignore[attr-defined]
    server.hits = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def s3_endpoint(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server for S3 and SQS on a free port of 127.0.0.1, once per session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def client(service: str, endpoint: str, attempts: int = 2) -> Any:
    config = Config(retries={"total_max_attempts": attempts, "mode": "standard"})
    make: Any = boto3.session.Session().client
    return make(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
        config=config,
    )


@dataclass
class Aws:
    """A fresh bucket, a queue with a dead-letter queue (maxReceiveCount 2), and the webhook
    retry queue with its dead-letter queue, on moto."""

    endpoint: str
    s3: Any
    sqs: Any
    bucket: str
    queue_url: str
    dlq_url: str
    webhook_queue_url: str
    webhook_dlq_url: str

    def put(self, key: str, data: bytes | Path) -> str:
        body = data.read_bytes() if isinstance(data, Path) else data
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return f"s3://{self.bucket}/{key}"

    def object_keys(self, bucket: str | None = None) -> list[str]:
        answer = self.s3.list_objects_v2(Bucket=bucket or self.bucket)
        return sorted(item["Key"] for item in answer.get("Contents", []))

    def get(self, key: str) -> bytes:
        data: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return data

    def counts(self, url: str | None = None) -> tuple[int, int]:
        """(visible, in flight) messages of the queue (default: the main one)."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        )

    def waiting(self, url: str) -> int:
        """Messages in the queue, visible, in flight or delayed."""
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return sum(
            int(attrs.get(name, 0))
            for name in (
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            )
        )

    def send(self, body: str) -> str:
        return str(self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)["MessageId"])


@pytest.fixture
def aws(moto_endpoint: str) -> Aws:
    name = uuid.uuid4().hex[:12]
    s3 = client("s3", moto_endpoint)
    sqs = client("sqs", moto_endpoint)
    bucket = f"media-{name}"
    s3.create_bucket(Bucket=bucket)
    dlq_url = sqs.create_queue(QueueName=f"jobs-{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    queue_url = sqs.create_queue(QueueName=f"jobs-{name}", Attributes={"RedrivePolicy": policy})[
        "QueueUrl"
    ]
    webhook_dlq_url = sqs.create_queue(QueueName=f"webhooks-{name}-dlq")["QueueUrl"]
    webhook_queue_url = sqs.create_queue(QueueName=f"webhooks-{name}")["QueueUrl"]
    return Aws(
        moto_endpoint, s3, sqs, bucket, queue_url, dlq_url, webhook_queue_url, webhook_dlq_url
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver().start()
    yield hook
    hook.stop()


@pytest.fixture
def ecs_agent() -> Iterator[Receiver]:
    """A stand-in for the ECS agent's task-protection endpoint."""
    agent = Receiver().start()
    yield agent
    agent.stop()


def worker_env(aws: Aws, webhook_url: str, scratch: Path, **extra: str) -> dict[str, str]:
    """The environment ``gpu-worker serve`` gets in these tests (see the README)."""
    env = {
        **CREDENTIALS,
        "SQS_QUEUE_URL": aws.queue_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": aws.endpoint,
        "WEBHOOK_URL": webhook_url,
        "WEBHOOK_SECRET": SECRET,
        "GPU_WORKER_WEBHOOK_ALLOW_PRIVATE": "1",
        "GPU_WORKER_SCRATCH_DIR": str(scratch),
        "GPU_WORKER_POLL_WAIT": "1",
        "GPU_WORKER_VISIBILITY_TIMEOUT": "30",
        "GPU_WORKER_RETRY_DELAY": "1",
        "GPU_WORKER_WEBHOOK_TIMEOUT": "10",
        "GPU_WORKER_ENCODER": "x264",
        "GPU_WORKER_WEBHOOK_QUEUE_URL": aws.webhook_queue_url,
        "GPU_WORKER_WEBHOOK_DEAD_LETTER_URL": aws.webhook_dlq_url,
        # The production schedule (30 s, 2 min, 10 min, 30 min, 1 h...) shortened to seconds.
        "GPU_WORKER_WEBHOOK_RETRY_SCHEDULE": "1,1,2",
    }
    env.update(extra)
    return env


@dataclass(frozen=True)
class Media:
    clip: Path  # 64x112, 1 s, 10 fps, with a tone
    clip2: Path
    music: Path  # 1 s AAC
    image: Path  # PNG
    long_clip: Path  # 64x112, 8 s, 30 fps: a render of a few seconds when upscaled
    font: Path  # a bundled TTF, to fetch as a font_uri


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    from gpu_worker.render import fonts

    folder = tmp_path_factory.mktemp("media")
    return Media(
        clip=samples.make_clip(folder / "a.mp4", width=64, height=112, fps=10, seconds=1),
        clip2=samples.make_clip(folder / "b.mp4", width=64, height=112, fps=10, seconds=1, hue=0.5),
        music=samples.make_music(folder / "m.m4a", seconds=1),
        image=samples.make_image(folder / "i.png", width=64, height=48),
        long_clip=samples.make_clip(
            folder / "long.mp4", width=64, height=112, fps=30, seconds=8, audio_hz=None
        ),
        font=fonts.resolve("Roboto", 700).path,
    )


def job(aws: Aws, clips: list[str], **extra: Any) -> dict[str, Any]:
    """A small valid job (64x112, 10 fps) rendering ``clips`` to out/<id>.mp4."""
    job_id = extra.pop("job_id", f"job-{uuid.uuid4().hex[:8]}")
    output = {
        "uri": f"s3://{aws.bucket}/out/{job_id}.mp4",
        "width": 64,
        "height": 112,
        "fps": 10,
        "quality": "draft",
    }
    output.update(extra.pop("output", {}))
    return {
        "version": 1,
        "job_id": job_id,
        "output": output,
        "clips": [{"uri": uri} for uri in clips],
        **extra,
    }


# ------------------------------------------------------------------ workers


@pytest.fixture
def make_worker(aws: Aws, receiver: Receiver, tmp_path: Path) -> Iterator[Any]:
    made: list[Worker] = []

    def make(s3: Any = None, hooks: Any = None, **env: str) -> Worker:
        settings = Settings.from_env(worker_env(aws, receiver.url, tmp_path / "scratch", **env))
        worker = Worker(settings, sqs=aws.sqs, s3=s3 or aws.s3, job_hooks=hooks)
        worker.open()
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()


class Serve:
    """`python -m gpu_worker serve` in a subprocess, its log read line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        full = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gpu_worker", "serve"],
            cwd=REPO,
            env=full,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._cond:
                self.lines.append(line.rstrip())
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    log = "\n".join(self.lines[-30:])
                    raise AssertionError(f"no log line with {text!r}:\n{log}")
                self._cond.wait(min(left, 0.2))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[Serve] = []

    def start(env: dict[str, str]) -> Serve:
        started.append(Serve(env))
        return started[-1]

    yield start
    for process in started:
        process.stop()
