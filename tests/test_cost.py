"""benchmarks/cost.py: the cost maths, how traces map to platforms, and its outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import load_benchmark

ROOT = Path(__file__).resolve().parent.parent


cost = load_benchmark("cost")
PRICES = json.loads((ROOT / "benchmarks" / "prices.json").read_text())


# --------------------------------------------------------------------------- maths


@pytest.mark.parametrize(("seconds", "per_hour"), [(3600, 1), (36, 100), (12.5, 288), (0.5, 7200)])
def test_videos_per_hour(seconds: float, per_hour: float) -> None:
    assert cost.videos_per_hour(seconds) == pytest.approx(per_hour)


def test_videos_per_hour_needs_positive_seconds() -> None:
    with pytest.raises(ValueError):
        cost.videos_per_hour(0)


@pytest.mark.parametrize(
    ("seconds", "hourly", "dollars"),
    [
        (3.6, 1.0, 1.0),  # 1000 videos x 3.6 s = 1 hour
        (36, 0.526, 5.26),
        (12.7, 1.006, 1000 * 12.7 / 3600 * 1.006),
        (10, 0.0, 0.0),
    ],
)
def test_cost_per_1000(seconds: float, hourly: float, dollars: float) -> None:
    assert cost.cost_per_1000(seconds, hourly) == pytest.approx(dollars)


@pytest.mark.parametrize(
    ("vcpu", "gb", "vcpu_hour", "gb_hour", "hourly"),
    [
        (2, 4, 0.04048, 0.004445, 0.09874),
        (4, 8, 0.03238, 0.00356, 0.15800),
        (0.25, 0.5, 0.04048, 0.004445, 0.0123425),
    ],
)
def test_fargate_hourly(
    vcpu: float, gb: float, vcpu_hour: float, gb_hour: float, hourly: float
) -> None:
    assert cost.fargate_hourly(vcpu, gb, vcpu_hour, gb_hour) == pytest.approx(hourly)


@pytest.mark.parametrize(
    ("videos", "seconds", "hourly", "min_tasks", "monthly"),
    [
        # The floor renders 730 h x 100 videos/h = 73,000 videos: below that, floor only.
        (10_000, 36, 1.0, 1, 730.0),
        (73_000, 36, 1.0, 1, 730.0),
        # Above it, tasks scaled out are paid by the hour used: 27,000 videos = 270 h.
        (100_000, 36, 1.0, 1, 730.0 + 270.0),
        # Scale to zero: pay only the hours used.
        (10_000, 36, 1.0, 0, 100.0),
        (0, 36, 1.0, 0, 0.0),
        # Two always-on tasks.
        (0, 36, 0.5, 2, 730.0),
    ],
)
def test_monthly_cost_is_floor_plus_scale_out(
    videos: int, seconds: float, hourly: float, min_tasks: int, monthly: float
) -> None:
    assert cost.monthly_cost(videos, seconds, hourly, min_tasks) == pytest.approx(monthly)
    assert cost.monthly_floor(hourly, min_tasks) == pytest.approx(730 * hourly * min_tasks)


@pytest.mark.parametrize(
    ("videos", "seconds", "rate", "fee", "included", "monthly", "per_1000"),
    [
        (1000, 60, 0.015, 0, 0, 15.0, 15.0),
        (1000, 15, 0.15, 30, 200, 37.5, 37.5),  # 250 min: 200 in the plan, 50 x $0.15 more
        (100, 15, 0.15, 30, 200, 30.0, 37.5),  # 25 min: the plan fee alone
    ],
)
def test_per_minute_services(
    videos: int,
    seconds: float,
    rate: float,
    fee: float,
    included: float,
    monthly: float,
    per_1000: float,
) -> None:
    assert cost.per_minute_monthly(videos, seconds, rate, fee, included) == pytest.approx(monthly)
    assert cost.per_minute_cost_per_1000(seconds, rate) == pytest.approx(per_1000)


# --------------------------------------------------------------------------- traces


def span(
    trace: str,
    span_id: str,
    name: str,
    seconds: float,
    parent: str | None = None,
    attributes: dict[str, Any] | None = None,
    resource: dict[str, Any] | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "trace_id": trace,
        "span_id": span_id,
        "parent_id": parent,
        "seconds": seconds,
        "attributes": attributes or {},
    }
    if resource is not None:
        entry["resource"] = resource
    return entry


def job_spans(
    n: int,
    seconds: float,
    *,
    encoder: str = "libx264",
    outcome: str = "succeeded",
    resource: dict[str, Any],
) -> list[dict[str, Any]]:
    trace = f"{n:032x}"
    root = f"{n:016x}"
    attrs = {"job.outcome": outcome, "video.encoder": encoder, "video.seconds": 15.0}
    return [
        span(trace, f"{n + 1000:016x}", "probe", 0.1, root),
        span(trace, f"{n + 2000:016x}", "encode", seconds / 2, root, {"clip": 0}),
        span(trace, f"{n + 3000:016x}", "encode", seconds / 4, root, {"clip": 1}),
        span(trace, root, "render_job", seconds, None, attrs, resource),
    ]


LOCAL = {"host.arch": "amd64", "gpu_worker.cpu_count": 2, "service.name": "gpu-worker"}
G5 = {"host.arch": "amd64", "gpu_worker.cpu_count": 4, "host.type": "g5.xlarge"}
FARGATE_ARM = {
    "host.arch": "arm64",
    "gpu_worker.cpu_count": 2,
    "cloud.platform": "aws_ecs",
    "aws.ecs.launchtype": "fargate",
}


def write_trace(path: Path, spans: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(s) + "\n" for s in spans))
    return path


@pytest.fixture
def mixed_trace(tmp_path: Path) -> Path:
    spans = [
        *job_spans(1, 12.0, resource=LOCAL),
        *job_spans(2, 14.0, resource=LOCAL),
        *job_spans(3, 13.0, resource=LOCAL),
        *job_spans(4, 99.0, resource=LOCAL, outcome="failed"),
        *job_spans(5, 4.0, encoder="h264_nvenc", resource=G5),
        *job_spans(6, 20.0, resource=FARGATE_ARM),
    ]
    return write_trace(tmp_path / "mixed.jsonl", spans)


def rows_by_platform(rows: list[Any]) -> dict[str, Any]:
    return {r.platform: r for r in rows}


def test_traces_map_to_platforms_and_failed_jobs_are_left_out(mixed_trace: Path) -> None:
    runs = cost.read_runs([mixed_trace])
    assert len(runs) == 6
    found = cost.measurements(runs)
    assert set(found) == {"local:amd64:2", "g5.xlarge", "fargate-arm64"}
    local = found["local:amd64:2"]
    assert local.seconds == [12.0, 14.0, 13.0] and local.median == 13.0
    assert local.stages["encode"] == pytest.approx(13.0 * 0.75)
    assert local.stages["probe"] == pytest.approx(0.1)
    assert found["g5.xlarge"].median == 4.0


def test_rows_measured_proxy_and_not_measured(mixed_trace: Path) -> None:
    found = cost.measurements(cost.read_runs([mixed_trace]))
    rows = rows_by_platform(cost.build_rows(found, PRICES, cost.Options()))
    g5 = rows["g5.xlarge"]
    assert g5.basis == "measured" and g5.seconds == 4.0
    assert g5.per_1000 == pytest.approx(1000 * 4 / 3600 * 1.006)
    assert g5.floor == pytest.approx(730 * 1.006)
    assert rows["fargate-arm"].basis == "measured" and rows["fargate-arm"].seconds == 20.0
    # This machine (2 vCPU amd64) stands in for a 2 vCPU x86 Fargate task, labelled.
    x86 = rows["fargate-x86"]
    assert x86.basis == "proxy" and x86.seconds == 13.0
    assert x86.basis_text.startswith("proxy: ") and "not on Fargate" in x86.basis_text
    assert x86.per_1000 == pytest.approx(1000 * 13 / 3600 * (2 * 0.04048 + 4 * 0.004445))
    for key in ("g4dn.xlarge", "g6.xlarge"):
        assert rows[key].basis == "not measured" and rows[key].per_1000 is None
    assert rows["g5.xlarge-spot"].basis == "no price"
    media = rows["mediaconvert"]
    assert media.basis == "per-minute"
    assert media.per_1000 == pytest.approx(1000 * 15 / 60 * 0.015)
    assert rows["local:amd64:2"].per_1000 is None


def test_no_proxy_when_vcpu_counts_differ_or_when_refused(mixed_trace: Path) -> None:
    found = cost.measurements(cost.read_runs([mixed_trace]))
    for options in (cost.Options(fargate_vcpu=4, fargate_memory_gb=8), cost.Options(proxy=False)):
        rows = rows_by_platform(cost.build_rows(found, PRICES, options))
        assert rows["fargate-x86"].basis == "not measured"
        assert rows["fargate-x86"].seconds is None


def test_always_on_choice_sets_the_floor(mixed_trace: Path) -> None:
    found = cost.measurements(cost.read_runs([mixed_trace]))
    options = cost.Options(always_on=frozenset({"cpu"}), monthly_videos=1000)
    rows = rows_by_platform(cost.build_rows(found, PRICES, options))
    assert rows["g5.xlarge"].floor == 0.0
    assert rows["g5.xlarge"].monthly == pytest.approx(1000 * 4 / 3600 * 1.006)
    assert rows["fargate-arm"].floor > 0


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cost.main(args)
    return code, capsys.readouterr().out


def test_not_measured_unless_assumed_and_then_labelled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_trace(tmp_path / "local.jsonl", job_spans(1, 12.0, resource=LOCAL))
    md, png = tmp_path / "cost.md", tmp_path / "cost.png"
    code, out = run_cli(
        ["--traces", str(trace), "--markdown", str(md), "--chart", str(png)], capsys
    )
    assert code == 0
    g4dn = next(line for line in out.splitlines() if line.startswith("g4dn.xlarge (NVENC)"))
    assert "not measured" in g4dn and "$" not in g4dn
    assert "| g6.xlarge (NVENC) | not measured |" in md.read_text()

    code, out = run_cli(
        ["--traces", str(trace), "--assume", "g4dn.xlarge=6", "--markdown", str(md)], capsys
    )
    g4dn = next(line for line in out.splitlines() if line.startswith("g4dn.xlarge (NVENC)"))
    assert "6.0 (assumed)" in g4dn and "assumed: 6 s/video (--assume)" in g4dn
    text = md.read_text()
    assert "| g4dn.xlarge (NVENC) | 6.0 (assumed) | 600 | 0.88 |" in text
    assert "not read live" in text


@pytest.mark.parametrize("bad", ["g5.xlarge", "nowhere=3", "g5.xlarge=-1", "mediaconvert=3"])
def test_bad_assumptions_are_refused(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_trace(tmp_path / "t.jsonl", job_spans(1, 12.0, resource=LOCAL))
    with pytest.raises(SystemExit) as exc:
        cost.main(["--traces", str(trace), "--assume", bad])
    assert exc.value.code == 2


def test_unknown_region(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "t.jsonl", job_spans(1, 12.0, resource=LOCAL))
    assert cost.main(["--traces", str(trace), "--region", "mars-1"]) == 2
    assert "no prices for region mars-1" in capsys.readouterr().err


def test_every_price_has_its_source_and_date() -> None:
    assert "not read live" in PRICES["about"].lower() or "NOT read live" in PRICES["about"]
    for region, entries in PRICES["regions"].items():
        for key, price in entries.items():
            assert price["source"].startswith("https://"), (region, key)
            assert price["read"], (region, key)
            assert "note" in price, (region, key)
    us = PRICES["regions"]["us-east-1"]
    for key in ("fargate-x86", "fargate-arm", "fargate-x86-spot", "fargate-arm-spot"):
        assert us[key]["vcpu_hour"] > 0 and us[key]["gb_hour"] > 0
    for key in ("g4dn.xlarge", "g5.xlarge", "g6.xlarge"):
        assert us[key]["hour"] > 0
    assert us["mediaconvert"]["output_minute"] > 0
    assert us["shotstack"]["output_minute"] > 0


def test_markdown_and_chart_from_a_real_render_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from examples.samples import make_clip
    from gpu_worker.job import parse_job
    from gpu_worker.observability.jsonlines import JsonLinesSpanExporter
    from gpu_worker.observability.setup import setup_telemetry
    from gpu_worker.observability.spans import traced_job
    from gpu_worker.render.pipeline import render_job

    monkeypatch.setenv("GPU_WORKER_ENCODER", "x264")
    make_clip(tmp_path / "a.mp4", width=64, height=112, seconds=1)
    job = parse_job(
        {
            "version": 1,
            "job_id": "bench",
            "output": {"uri": "o.mp4", "width": 64, "height": 112, "fps": 10},
            "clips": [{"uri": "a.mp4"}],
        }
    )
    trace = tmp_path / "traces.jsonl"
    telemetry = setup_telemetry(span_exporters=[JsonLinesSpanExporter(trace)])
    for _ in range(2):
        with traced_job(telemetry, job.job_id) as jt:
            jt.result(render_job(job, base_dir=tmp_path, output=tmp_path / "o.mp4", clock=jt.clock))
    telemetry.shutdown()

    md, png = tmp_path / "out" / "cost.md", tmp_path / "out" / "cost.png"
    code, out = run_cli(
        [
            "--traces",
            str(trace),
            "--monthly-videos",
            "5000",
            "--markdown",
            str(md),
            "--chart",
            str(png),
        ],
        capsys,
    )
    assert code == 0
    assert "2 job(s) in 1 trace file(s)" in out
    text = md.read_text()
    assert text.startswith("## What a video costs")
    assert "$/month @ 5,000" in text
    assert "| this machine |" in text
    assert "Where the seconds go" in text and "| Machine | runs | video s |" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    found = cost.measurements(cost.read_runs([trace]))
    (local,) = found.values()
    assert local.runs == 2 and local.output_seconds == [1.0, 1.0]
    assert {"probe", "decode", "composite", "encode", "mux_audio"} <= set(local.stages)
