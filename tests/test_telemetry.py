"""Tracing, metrics and JSON logs of real (tiny) renders, read back through the SDK's
in-memory exporter and metric reader."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from examples.samples import make_clip, make_music
from gpu_worker.cli import main
from gpu_worker.errors import InputNotFound
from gpu_worker.job import Job, parse_job
from gpu_worker.observability import setup as otel_setup
from gpu_worker.observability import spans as tm
from gpu_worker.observability.logs import JsonFormatter, job_id_var, setup_logging
from gpu_worker.observability.setup import Telemetry, setup_telemetry
from gpu_worker.observability.spans import JobTrace, traced_job
from gpu_worker.render.pipeline import render_job
from gpu_worker.render.stages import StageClock

ENGINE = {"probe", "render_text", "decode", "composite", "encode", "mux_audio"}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("telemetry-media")
    make_clip(folder / "a.mp4", width=64, height=112, seconds=1, hue=0.1)
    make_clip(folder / "b.mp4", width=64, height=112, seconds=1, hue=0.6, audio_hz=None)
    make_music(folder / "music.m4a", seconds=2)
    return folder


def job_data(clips: list[str], job_id: str = "job-42") -> dict[str, Any]:
    return {
        "version": 1,
        "job_id": job_id,
        "output": {"uri": "out.mp4", "width": 64, "height": 112, "fps": 10},
        "clips": [{"uri": uri} for uri in clips],
        "texts": [{"text": "Hello", "font": "Roboto", "size": 18}],
        "audio": {"uri": "music.m4a"},
    }


def make_job(clips: list[str], job_id: str = "job-42") -> Job:
    return parse_job(job_data(clips, job_id))


@pytest.fixture(autouse=True)
def _no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the machine's environment decides what these tests export."""
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_SDK_DISABLED",
        "ECS_CONTAINER_METADATA_URI",
        "ECS_CONTAINER_METADATA_URI_V4",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GPU_WORKER_ENCODER", "x264")


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def metrics() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def tel(spans: InMemorySpanExporter, metrics: InMemoryMetricReader) -> Iterator[Telemetry]:
    telemetry = setup_telemetry(span_exporters=[spans], metric_readers=[metrics])
    yield telemetry
    telemetry.shutdown()


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def render_traced(
    tel: Telemetry, media: Path, tmp_path: Path, clips: list[str], **kwargs: Any
) -> JobTrace:
    job = make_job(clips)
    with traced_job(tel, job.job_id, **kwargs) as jt:
        result = render_job(job, base_dir=media, output=tmp_path / "out.mp4", clock=jt.clock)
        jt.result(result)
    return jt


def attrs_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def times(span: ReadableSpan) -> tuple[int, int]:
    assert span.start_time is not None and span.end_time is not None
    return span.start_time, span.end_time


def root_of(finished: tuple[ReadableSpan, ...]) -> ReadableSpan:
    roots = [s for s in finished if s.name == "render_job"]
    assert len(roots) == 1
    return roots[0]


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


# --------------------------------------------------------------------------- spans


def test_a_render_is_one_root_span_with_a_child_per_stage(
    tel: Telemetry, spans: InMemorySpanExporter, media: Path, tmp_path: Path
) -> None:
    jt = render_traced(tel, media, tmp_path, ["a.mp4", "b.mp4"])
    finished = spans.get_finished_spans()
    root = root_of(finished)
    children = [s for s in finished if s is not root]

    attrs = attrs_of(root)
    assert attrs[tm.JOB_ID] == "job-42"
    assert attrs[tm.ENCODER] == "libx264"
    assert attrs[tm.WORKER_KIND] == "cpu"
    assert (attrs[tm.WIDTH], attrs[tm.HEIGHT], attrs[tm.FPS]) == (64, 112, 10)
    assert attrs[tm.FRAMES] == 20
    assert attrs[tm.OUTPUT_SECONDS] == pytest.approx(2.0)
    assert attrs[tm.INPUT_BYTES] > 0 and attrs[tm.OUTPUT_BYTES] > 0
    assert attrs[tm.OUTCOME] == "succeeded"
    assert tm.QUEUE_WAIT not in attrs and tm.ERROR_CODE not in attrs
    assert 0 < attrs[tm.RENDER_SECONDS] <= (times(root)[1] - times(root)[0]) / 1e9 + 1e-3
    assert attrs[tm.RENDER_FPS] > 0
    assert root.kind is SpanKind.INTERNAL
    assert root.status.status_code is StatusCode.UNSET
    assert root.parent is None
    assert jt.trace_id == format(root.context.trace_id, "032x")

    assert {s.name for s in children} == ENGINE
    for child in children:
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
        assert times(root)[0] <= times(child)[0] <= times(child)[1] <= times(root)[1]

    # Frame-by-frame stages: one span per clip, marked as summed time.
    for name in ("decode", "composite", "encode"):
        per_clip = [s for s in children if s.name == name]
        assert sorted(attrs_of(s)["clip"] for s in per_clip) == [0, 1]
        assert all(attrs_of(s)[tm.ACCUMULATED] is True for s in per_clip)
    # The soundtrack is mixed and encoded alongside the frames: one summed span.
    (audio,) = [s for s in children if s.name == "mux_audio"]
    assert attrs_of(audio)[tm.ACCUMULATED] is True
    probe = next(s for s in children if s.name == "probe")
    assert attrs_of(probe)["inputs"] == 3
    text = next(s for s in children if s.name == "render_text")
    assert attrs_of(text)["texts"] == 1

    # What each stage cost: its thread's CPU, within the process's CPU over the render.
    cpu = {s.name: 0.0 for s in children}
    for child in children:
        cpu[child.name] += attrs_of(child)[tm.STAGE_CPU]
    assert all(value >= 0 for value in cpu.values()) and cpu["decode"] > 0 < cpu["probe"]
    assert 0 < sum(cpu.values()) <= attrs[tm.RENDER_CPU]

    # Spans are made when each stage ends, in the order the stages happened.
    order = [s.name for s in children]
    assert order[:2] == ["probe", "render_text"]
    assert order.index("decode") > order.index("render_text")


def test_a_failed_render_marks_the_root_span_with_its_error_code(
    tel: Telemetry,
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricReader,
    media: Path,
    tmp_path: Path,
) -> None:
    with pytest.raises(InputNotFound):
        render_traced(tel, media, tmp_path, ["a.mp4", "missing.mp4"], worker_kind="gpu")
    finished = spans.get_finished_spans()
    root = root_of(finished)
    attrs = attrs_of(root)
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description is not None
    assert root.status.description.startswith("input_not_found: ")
    assert attrs[tm.OUTCOME] == "failed"
    assert attrs[tm.ERROR_CODE] == "input_not_found"
    assert attrs[tm.ERROR_TYPE] == "InputNotFound"
    assert attrs[tm.ERROR_PERMANENT] is True
    assert attrs[tm.WORKER_KIND] == "gpu"
    assert tm.FRAMES not in attrs
    assert [e.name for e in root.events] == ["exception"]
    # The probe that failed is still a child span.
    assert [s.name for s in finished if s is not root] == ["probe"]

    jobs = metric_points(metrics)["gpu_worker.jobs"]
    assert [(dict(p.attributes), p.value) for p in jobs] == [
        ({"job.outcome": "failed", "worker.kind": "gpu", "error.code": "input_not_found"}, 1)
    ]


def test_an_unexpected_exception_counts_as_internal(
    tel: Telemetry, spans: InMemorySpanExporter
) -> None:
    with pytest.raises(ZeroDivisionError), traced_job(tel, "j-bug"):
        _ = 1 / 0
    attrs = attrs_of(root_of(spans.get_finished_spans()))
    assert attrs[tm.ERROR_CODE] == "internal"
    assert attrs[tm.ERROR_PERMANENT] is False


def test_an_error_reported_by_the_caller_without_raising(
    tel: Telemetry, spans: InMemorySpanExporter
) -> None:
    with traced_job(tel, "j-handled", worker_kind="cpu") as jt:
        jt.fail(InputNotFound("s3://bucket/clip.mp4: no such key"))
    root = root_of(spans.get_finished_spans())
    assert root.status.status_code is StatusCode.ERROR
    assert attrs_of(root)[tm.ERROR_CODE] == "input_not_found"


def test_the_backends_traceparent_and_the_queue_wait_are_honoured(
    tel: Telemetry,
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricReader,
    media: Path,
    tmp_path: Path,
) -> None:
    jt = render_traced(
        tel, media, tmp_path, ["a.mp4"], traceparent=TRACEPARENT, queue_wait=3.5, worker_kind="cpu"
    )
    finished = spans.get_finished_spans()
    root = root_of(finished)
    assert format(root.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert root.parent is not None and root.parent.is_remote
    assert format(root.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert root.kind is SpanKind.CONSUMER
    assert attrs_of(root)[tm.QUEUE_WAIT] == 3.5
    assert all(s.context.trace_id == root.context.trace_id for s in finished)
    assert jt.traceparent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    waits = metric_points(metrics)["gpu_worker.queue.wait"]
    assert [(p.count, p.sum) for p in waits] == [(1, 3.5)]


def test_a_malformed_traceparent_starts_a_new_trace(
    tel: Telemetry, spans: InMemorySpanExporter
) -> None:
    with traced_job(tel, "j", traceparent="not-a-traceparent"):
        pass
    root = root_of(spans.get_finished_spans())
    assert root.parent is None


def test_queue_worker_stages_become_children_and_stay_out_of_render_seconds(
    tel: Telemetry, spans: InMemorySpanExporter, media: Path, tmp_path: Path
) -> None:
    job = make_job(["a.mp4"])
    with traced_job(tel, job.job_id, worker_kind="cpu") as jt:
        for uri in ("s3://in/a.mp4", "s3://in/music.m4a"):
            with jt.clock.stage("fetch_inputs", uri=uri) as attrs:
                time.sleep(0.05)
                attrs["bytes"] = 1234
        result = render_job(job, base_dir=media, output=tmp_path / "out.mp4", clock=jt.clock)
        jt.result(result)
        with jt.clock.stage("upload", bytes=result.size_bytes):
            pass
        with jt.clock.stage("webhook", status=200):
            pass
    finished = spans.get_finished_spans()
    root = root_of(finished)
    names = [s.name for s in finished if s is not root]
    assert names[:2] == ["fetch_inputs", "fetch_inputs"]
    assert names[-2:] == ["upload", "webhook"]
    fetches = [s for s in finished if s.name == "fetch_inputs"]
    assert [attrs_of(s)["bytes"] for s in fetches] == [1234, 1234]
    assert attrs_of(fetches[1])["uri"] == "s3://in/music.m4a"
    job_seconds = (times(root)[1] - times(root)[0]) / 1e9
    render_seconds = attrs_of(root)[tm.RENDER_SECONDS]
    assert render_seconds <= job_seconds - 0.1


def test_job_metrics(
    tel: Telemetry, metrics: InMemoryMetricReader, media: Path, tmp_path: Path
) -> None:
    render_traced(tel, media, tmp_path, ["a.mp4"], worker_kind="cpu")
    render_traced(tel, media, tmp_path, ["a.mp4", "b.mp4"], worker_kind="cpu")
    points = metric_points(metrics)
    assert [(dict(p.attributes), p.value) for p in points["gpu_worker.jobs"]] == [
        ({"job.outcome": "succeeded", "worker.kind": "cpu"}, 2)
    ]
    (render,) = points["gpu_worker.render.duration"]
    assert render.count == 2 and render.sum > 0
    (fps,) = points["gpu_worker.render.fps"]
    assert fps.count == 2 and fps.min > 0
    (in_flight,) = points["gpu_worker.jobs.in_flight"]
    assert in_flight.value == 0
    assert "gpu_worker.queue.wait" not in points


def test_in_flight_counts_a_job_while_it_runs(
    tel: Telemetry, metrics: InMemoryMetricReader
) -> None:
    with traced_job(tel, "j", worker_kind="gpu"):
        (point,) = metric_points(metrics)["gpu_worker.jobs.in_flight"]
        assert point.value == 1
    (point,) = metric_points(metrics)["gpu_worker.jobs.in_flight"]
    assert point.value == 0


def test_the_listener_is_removed_after_the_job(tel: Telemetry) -> None:
    clock = StageClock()
    with traced_job(tel, "j", clock=clock) as jt:
        assert jt.clock is clock and clock.listeners == [jt.on_stage]
    assert clock.listeners == []


# --------------------------------------------------------------------------- configuration


def test_nothing_is_exported_when_nothing_is_configured() -> None:
    assert otel_setup.span_exporters_from_env() == []
    assert otel_setup.metric_readers_from_env() == []
    telemetry = setup_telemetry()
    assert telemetry.exporting is False
    telemetry.shutdown()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTEL_TRACES_EXPORTER": "console"}, ["ConsoleSpanExporter"]),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["OTLPSpanExporter"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["OTLPSpanExporter", "ConsoleSpanExporter"]),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"},
            [],
        ),
    ],
)
def test_exporters_follow_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: list[str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert [type(e).__name__ for e in otel_setup.span_exporters_from_env()] == expected


def test_otlp_endpoint_is_read_by_the_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    (exporter,) = otel_setup.span_exporters_from_env()
    assert exporter._endpoint == "http://collector:4318/v1/traces"  # type: ignore[attr-defined]
    (reader,) = otel_setup.metric_readers_from_env()
    assert type(reader).__name__ == "PeriodicExportingMetricReader"
    reader.shutdown()


def test_resource_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    attrs = otel_setup.build_resource().attributes
    assert attrs["service.name"] == "gpu-worker"
    assert attrs["host.arch"] in ("amd64", "arm64")
    assert "cloud.platform" not in attrs
    monkeypatch.setenv("OTEL_SERVICE_NAME", "render-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "host.type=g5.xlarge,deployment.environment=t")
    attrs = otel_setup.build_resource().attributes
    assert attrs["service.name"] == "render-eu"
    assert attrs["host.type"] == "g5.xlarge"
    assert attrs["deployment.environment"] == "t"


def test_ecs_detection_neither_hangs_nor_fails_off_ecs(monkeypatch: pytest.MonkeyPatch) -> None:
    # A metadata endpoint nobody answers (port 9 on localhost refuses at once).
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", "http://127.0.0.1:9/v4")
    started = time.monotonic()
    attrs = otel_setup.build_resource().attributes
    assert time.monotonic() - started < 5
    assert attrs["service.name"] == "gpu-worker"


# --------------------------------------------------------------------------- CLI and logs


@pytest.mark.usefixtures("_restore_logging")
def test_render_trace_file_holds_the_jobs_spans_as_json_lines(
    media: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_file = media / "cli-job.json"
    job_file.write_text(json.dumps(job_data(["a.mp4", "b.mp4"], "cli-job")))
    trace_file = tmp_path / "trace.jsonl"
    out = tmp_path / "cli.mp4"
    assert main(["render", str(job_file), "-o", str(out), "--trace-file", str(trace_file)]) == 0
    assert out.exists()
    lines = [json.loads(line) for line in trace_file.read_text().splitlines()]
    (root,) = [s for s in lines if s["name"] == "render_job"]
    assert lines[-1] is root  # the root ends last
    assert root["parent_id"] is None and root["status"] == "unset"
    assert root["attributes"]["job.id"] == "cli-job"
    assert root["attributes"]["video.frames"] == 20
    assert root["resource"]["service.name"] == "gpu-worker"
    assert root["seconds"] == pytest.approx(
        (root["end_unix_nano"] - root["start_unix_nano"]) / 1e9, abs=1e-5
    )
    children = [s for s in lines if s is not root]
    assert {s["name"] for s in children} == ENGINE
    assert all(s["parent_id"] == root["span_id"] for s in children)
    assert all(s["trace_id"] == root["trace_id"] for s in children)
    assert all("resource" not in s for s in children)
    captured = capsys.readouterr()
    assert root["trace_id"] in captured.out
    # Logs are JSON lines carrying the job and its trace.
    logs = [json.loads(line) for line in captured.err.splitlines()]
    assert logs and all(entry["job_id"] == "cli-job" for entry in logs)
    assert all(entry["trace_id"] == root["trace_id"] for entry in logs)


@pytest.mark.usefixtures("_restore_logging")
def test_a_failed_render_writes_its_trace_and_one_error_line(
    media: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_file = media / "cli-bad.json"
    job_file.write_text(json.dumps(job_data(["nothing-here.mp4"], "cli-bad")))
    trace_file = tmp_path / "trace.jsonl"
    out = tmp_path / "bad.mp4"
    assert main(["render", str(job_file), "-o", str(out), "--trace-file", str(trace_file)]) == 2
    assert not out.exists()
    lines = [json.loads(line) for line in trace_file.read_text().splitlines()]
    root = lines[-1]
    assert root["name"] == "render_job" and root["status"] == "error"
    assert root["attributes"]["error.code"] == "input_not_found"
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("error input_not_found: ")


def test_json_log_lines_carry_job_and_trace_ids(tel: Telemetry) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gpu_worker.test_telemetry")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("before")
        with traced_job(tel, "job-logs") as jt:
            logger.info("frames %d/%d", 5, 10, extra={"fps": 12.5})
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed")
        logger.info("after")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    before, during, failed, after = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "job_id" not in before and "trace_id" not in before
    assert during["message"] == "frames 5/10" and during["level"] == "INFO"
    assert during["job_id"] == "job-logs" and during["trace_id"] == jt.trace_id
    assert during["fps"] == 12.5
    assert "ValueError: boom" in failed["exception"]
    assert "job_id" not in after
    assert job_id_var.get() is None


@pytest.mark.usefixtures("_restore_logging")
def test_setup_logging_replaces_handlers() -> None:
    stream = io.StringIO()
    setup_logging(verbose=True, stream=stream)
    logging.getLogger("gpu_worker").debug("hello")
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == "hello"
