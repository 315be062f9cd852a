"""What a video costs: trace files in, seconds and dollars per video on each way of running
the worker out (a table on stdout, the same as Markdown, and a PNG chart).

    python benchmarks/cost.py --traces benchmarks/results/traces.jsonl \\
        --region us-east-1 --monthly-videos 10000 --markdown cost.md --chart cost.png

A trace file holds JSON lines, one span a line, as ``gpu-worker render --trace-file`` and
``benchmarks/run_reference.py`` write them. Each ``render_job`` span is one video; its length
is the time a task was busy with it. Traces are told apart by their root span (encoder,
outcome) and resource (``host.type``, ``cloud.platform``, ``aws.ecs.launchtype``,
``host.arch``, ``gpu_worker.cpu_count``):

* NVENC on an EC2 instance whose ``host.type`` is g4dn/g5/g6.xlarge: that instance's row;
* an ECS Fargate task: the Fargate row of its architecture;
* anything else: "this machine", shown as measured, with no price.

A platform without a trace says "not measured". Two ways to fill it, both labelled as such
in every output: ``--assume PLATFORM=SECONDS`` (an explicit assumption), and, for Fargate
only, a *proxy*: a trace from a machine of the same architecture with exactly as many vCPUs
as the Fargate task (``--fargate-vcpu``), priced at Fargate's rate; no scaling between CPU
counts is ever done (``--no-proxy`` turns proxies off).

Money assumes one job at a time per task (the worker's design) and full use: a task is paid
for the seconds it renders, plus the always-on minimum, which is paid whether used or not.
Scale-out start-up time, storage, data transfer, S3 and SQS requests are not included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PRICES = HERE / "prices.json"
HOURS_PER_MONTH = 730.0
NVENC = "h264_nvenc"
GPU_INSTANCES = ("g4dn.xlarge", "g5.xlarge", "g6.xlarge")
NOT_MEASURED = "not measured"


# --------------------------------------------------------------------------- pure maths


def videos_per_hour(seconds_per_video: float) -> float:
    """Videos one task renders in an hour, one at a time."""
    if seconds_per_video <= 0:
        raise ValueError("seconds per video must be positive")
    return 3600.0 / seconds_per_video


def fargate_hourly(vcpu: float, memory_gb: float, vcpu_hour: float, gb_hour: float) -> float:
    """Dollars an hour for a Fargate task of ``vcpu`` and ``memory_gb``."""
    return vcpu * vcpu_hour + memory_gb * gb_hour


def cost_per_1000(seconds_per_video: float, hourly: float) -> float:
    """Dollars for 1000 videos on a task paid ``hourly``, kept busy."""
    return 1000.0 * seconds_per_video / 3600.0 * hourly


def monthly_floor(hourly: float, min_tasks: int, hours: float = HOURS_PER_MONTH) -> float:
    """Dollars a month for ``min_tasks`` tasks that run all month, busy or not."""
    return min_tasks * hourly * hours


def monthly_cost(
    videos: float,
    seconds_per_video: float,
    hourly: float,
    min_tasks: int,
    hours: float = HOURS_PER_MONTH,
) -> float:
    """Dollars a month for ``videos``: the always-on floor, which renders what it can, plus
    tasks scaled out (and paid by the second) for the rest."""
    floor = monthly_floor(hourly, min_tasks, hours)
    busy_hours = videos * seconds_per_video / 3600.0
    extra_hours = max(0.0, busy_hours - min_tasks * hours)
    return floor + extra_hours * hourly


def per_minute_cost_per_1000(output_seconds: float, per_minute: float) -> float:
    """Dollars for 1000 videos of ``output_seconds`` on a service billed per output minute."""
    return 1000.0 * output_seconds / 60.0 * per_minute


def per_minute_monthly(
    videos: float,
    output_seconds: float,
    per_minute: float,
    monthly_fee: float = 0.0,
    included_minutes: float = 0.0,
) -> float:
    """Dollars a month on a per-minute service: its plan fee, then minutes beyond the plan."""
    minutes = videos * output_seconds / 60.0
    return monthly_fee + max(0.0, minutes - included_minutes) * per_minute


# --------------------------------------------------------------------------- traces


@dataclass
class JobRun:
    """One ``render_job`` span read back, with its stages summed by name."""

    trace_id: str
    seconds: float
    attributes: dict[str, Any]
    resource: dict[str, Any]
    stages: dict[str, float] = field(default_factory=dict)
    source: str = ""

    @property
    def succeeded(self) -> bool:
        return self.attributes.get("job.outcome") == "succeeded"

    @property
    def encoder(self) -> str:
        return str(self.attributes.get("video.encoder", ""))

    @property
    def output_seconds(self) -> float | None:
        value = self.attributes.get("video.seconds")
        return float(value) if value is not None else None


def read_runs(paths: Iterable[Path]) -> list[JobRun]:
    """Every job (root span) in the trace files, its child spans summed per stage name."""
    spans: list[dict[str, Any]] = []
    for path in paths:
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                span = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{n}: not a JSON line ({exc.msg})") from None
            span["_source"] = str(path)
            spans.append(span)
    roots = {(s["trace_id"], s["span_id"]): s for s in spans if s.get("name") == "render_job"}
    runs = {
        key: JobRun(
            trace_id=s["trace_id"],
            seconds=float(s["seconds"]),
            attributes=dict(s.get("attributes") or {}),
            resource=dict(s.get("resource") or {}),
            source=s["_source"],
        )
        for key, s in roots.items()
    }
    # A split job's segments ran on other workers: their time and stages are the video's too.
    segments = {
        (s["trace_id"], s["span_id"]): runs[(s["trace_id"], s.get("parent_id"))]
        for s in spans
        if s.get("name") == "render_segment" and (s["trace_id"], s.get("parent_id")) in runs
    }
    by_key = {(s["trace_id"], s["span_id"]): s for s in spans}
    for key, run in segments.items():
        run.seconds += float(by_key[key]["seconds"])
    for s in spans:
        parent = (s["trace_id"], s.get("parent_id"))
        run = runs.get(parent) or segments.get(parent)
        if run is not None and s.get("name") != "render_segment":
            run.stages[s["name"]] = run.stages.get(s["name"], 0.0) + float(s["seconds"])
    return list(runs.values())


def machine_of(run: JobRun) -> tuple[str, str]:
    """(measurement key, description) of where ``run`` was rendered."""
    res = run.resource
    host_type = str(res.get("host.type", "") or "")
    arch = str(res.get("host.arch", "") or "unknown arch")
    cpus = res.get("gpu_worker.cpu_count")
    cpu_text = f"{cpus} vCPU" if cpus else "? vCPU"
    if run.encoder == NVENC:
        if host_type in GPU_INSTANCES:
            return host_type, f"{host_type}, NVENC"
        return f"gpu:{host_type or 'unknown'}", f"NVENC on {host_type or 'an unnamed GPU host'}"
    launch = str(res.get("aws.ecs.launchtype", "")).lower()
    if res.get("cloud.platform") == "aws_ecs" and launch == "fargate":
        return f"fargate-{arch}", f"Fargate task, {cpu_text} {arch}"
    where = host_type or "this machine"
    return f"local:{arch}:{cpus}", f"{where}: {cpu_text} {arch}, {run.encoder or 'libx264'}"


@dataclass
class Measurement:
    key: str
    description: str
    seconds: list[float]
    output_seconds: list[float]
    stages: dict[str, float]
    arch: str
    cpus: int | None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def runs(self) -> int:
        return len(self.seconds)


def measurements(runs: Sequence[JobRun]) -> dict[str, Measurement]:
    """Succeeded runs grouped by machine; stage seconds are means per video."""
    groups: dict[str, list[JobRun]] = defaultdict(list)
    described: dict[str, str] = {}
    for run in runs:
        if not run.succeeded:
            continue
        key, description = machine_of(run)
        groups[key].append(run)
        described[key] = description
    found = {}
    for key, group in groups.items():
        stage_totals: dict[str, float] = defaultdict(float)
        for run in group:
            for name, seconds in run.stages.items():
                stage_totals[name] += seconds
        cpus = group[0].resource.get("gpu_worker.cpu_count")
        found[key] = Measurement(
            key=key,
            description=described[key],
            seconds=[r.seconds for r in group],
            output_seconds=[s for r in group if (s := r.output_seconds) is not None],
            stages={name: total / len(group) for name, total in stage_totals.items()},
            arch=str(group[0].resource.get("host.arch", "")),
            cpus=int(cpus) if cpus is not None else None,
        )
    return found


# --------------------------------------------------------------------------- platforms


@dataclass(frozen=True)
class Platform:
    key: str  # also its key in prices.json
    label: str
    kind: str  # cpu | gpu | managed
    arch: str = ""  # amd64 | arm64 for Fargate
    measured_as: str = ""  # measurement key that stands for this platform


PLATFORMS: tuple[Platform, ...] = (
    Platform("fargate-x86", "Fargate x86", "cpu", "amd64", "fargate-amd64"),
    Platform("fargate-x86-spot", "Fargate x86 Spot", "cpu", "amd64", "fargate-amd64"),
    Platform("fargate-arm", "Fargate ARM", "cpu", "arm64", "fargate-arm64"),
    Platform("fargate-arm-spot", "Fargate ARM Spot", "cpu", "arm64", "fargate-arm64"),
    *(
        Platform(f"{t}{spot}", f"{t}{' Spot' if spot else ''} (NVENC)", "gpu", "", t)
        for t in GPU_INSTANCES
        for spot in ("", "-spot")
    ),
    Platform("mediaconvert", "MediaConvert (transcode only)", "managed"),
    Platform("shotstack", "Shotstack (hosted API)", "managed"),
)
BY_KEY = {p.key: p for p in PLATFORMS}


@dataclass
class Row:
    """One line of the table: a platform, the basis of its seconds, and the money."""

    platform: str
    label: str
    basis: str  # measured | proxy | assumed | per-minute | not measured | no price
    basis_text: str
    seconds: float | None = None
    videos_per_hour: float | None = None
    per_1000: float | None = None
    floor: float | None = None
    monthly: float | None = None
    hourly: float | None = None


def _price(prices: dict[str, Any], region: str, key: str) -> dict[str, Any] | None:
    try:
        return dict(prices["regions"][region][key])
    except KeyError:
        return None


def _hourly(
    platform: Platform, price: dict[str, Any], vcpu: float, memory_gb: float
) -> float | None:
    if platform.key.startswith("fargate"):
        if price.get("vcpu_hour") is None or price.get("gb_hour") is None:
            return None
        return fargate_hourly(vcpu, memory_gb, price["vcpu_hour"], price["gb_hour"])
    hour = price.get("hour")
    return float(hour) if hour is not None else None


@dataclass
class Options:
    region: str = "us-east-1"
    monthly_videos: int = 10_000
    always_on: frozenset[str] = frozenset({"cpu", "gpu"})
    min_tasks: int = 1
    fargate_vcpu: float = 2.0
    fargate_memory_gb: float = 4.0
    assume: dict[str, float] = field(default_factory=dict)
    proxy: bool = True
    hours_per_month: float = HOURS_PER_MONTH


def build_rows(
    found: dict[str, Measurement], prices: dict[str, Any], options: Options
) -> list[Row]:
    """The table: every platform, then every machine measured that is no platform."""
    rows: list[Row] = []
    outputs = [s for m in found.values() for s in m.output_seconds]
    output_seconds = statistics.median(outputs) if outputs else None
    hours = options.hours_per_month
    for platform in PLATFORMS:
        price = _price(prices, options.region, platform.key)
        row = Row(platform.key, platform.label, NOT_MEASURED, NOT_MEASURED)
        rows.append(row)
        if platform.kind == "managed":
            _per_minute_row(row, price, output_seconds, options)
            continue
        hourly = (
            None
            if price is None
            else _hourly(platform, price, options.fargate_vcpu, options.fargate_memory_gb)
        )
        if hourly is None:
            row.basis, row.basis_text = "no price", f"no {options.region} price in prices.json"
            continue
        seconds: float | None = None
        if platform.key in options.assume:
            seconds = options.assume[platform.key]
            row.basis, row.basis_text = "assumed", f"assumed: {seconds:g} s/video (--assume)"
        elif platform.measured_as in found:
            m = found[platform.measured_as]
            seconds = m.median
            row.basis = "measured"
            row.basis_text = f"measured: {m.description}, median of {m.runs} run(s)"
        elif options.proxy and platform.arch:
            proxy = _fargate_proxy(found, platform.arch, options.fargate_vcpu)
            if proxy is not None:
                seconds = proxy.median
                row.basis = "proxy"
                row.basis_text = (
                    f"proxy: {proxy.description}, median of {proxy.runs} run(s), not on "
                    f"Fargate; priced as {options.fargate_vcpu:g} vCPU / "
                    f"{options.fargate_memory_gb:g} GB"
                )
        row.hourly = hourly
        if seconds is None:
            continue
        row.seconds = seconds
        row.videos_per_hour = videos_per_hour(seconds)
        min_tasks = options.min_tasks if platform.kind in options.always_on else 0
        row.per_1000 = cost_per_1000(seconds, hourly)
        row.floor = monthly_floor(hourly, min_tasks, hours)
        row.monthly = monthly_cost(options.monthly_videos, seconds, hourly, min_tasks, hours)
    used = {p.measured_as for p in PLATFORMS}
    for key, m in sorted(found.items()):
        if key in used:
            continue
        rows.append(
            Row(
                key,
                m.description.split(":")[0] if key.startswith("local:") else m.description,
                "measured",
                f"measured: {m.description}, median of {m.runs} run(s); not a priced platform",
                seconds=m.median,
                videos_per_hour=videos_per_hour(m.median),
            )
        )
    return rows


def _fargate_proxy(found: dict[str, Measurement], arch: str, vcpu: float) -> Measurement | None:
    for key, m in sorted(found.items()):
        if key.startswith("local:") and m.arch == arch and m.cpus == vcpu:
            return m
    return None


def _per_minute_row(
    row: Row, price: dict[str, Any] | None, output_seconds: float | None, options: Options
) -> None:
    if price is None or price.get("output_minute") is None:
        row.basis, row.basis_text = "no price", f"no {options.region} price in prices.json"
        return
    if output_seconds is None:
        row.basis_text = "not measured: no trace gives the video's length"
        return
    rate = float(price["output_minute"])
    fee = float(price.get("monthly_fee") or 0.0)
    included = float(price.get("included_minutes") or 0.0)
    row.basis = "per-minute"
    row.basis_text = (
        f"billed per output minute (${rate:g}/min) for the measured {output_seconds:.1f} s "
        "video; render time is the service's"
    )
    if fee:
        row.basis_text += f"; plan ${fee:g}/month incl. {included:g} min"
    row.per_1000 = per_minute_cost_per_1000(output_seconds, rate)
    row.floor = fee
    row.monthly = per_minute_monthly(options.monthly_videos, output_seconds, rate, fee, included)


# --------------------------------------------------------------------------- output

HEADERS = (
    "Platform",
    "s/video",
    "videos/h/task",
    "$/1000 videos",
    "always-on $/month",
    "$/month @ {volume}",
    "basis",
)


def _money(value: float | None, row: Row) -> str:
    if value is None:
        return NOT_MEASURED if row.basis == NOT_MEASURED else "—"
    return f"{value:,.2f}"


def _cells(row: Row) -> list[str]:
    seconds = "—" if row.basis in ("per-minute", "no price") else NOT_MEASURED
    vph = seconds
    if row.seconds is not None:
        seconds = f"{row.seconds:.1f}"
        if row.basis in ("assumed", "proxy"):
            seconds += f" ({row.basis})"
        vph = f"{row.videos_per_hour:.0f}" if row.videos_per_hour is not None else "—"
    if row.basis == "per-minute":
        seconds = vph = "managed"
    return [
        row.label,
        seconds,
        vph,
        _money(row.per_1000, row),
        _money(row.floor, row),
        _money(row.monthly, row),
        row.basis_text,
    ]


def priced(rows: Sequence[Row]) -> list[Row]:
    """The rows to show: platforms without a price in the region are only listed by name."""
    return [r for r in rows if r.basis != "no price"]


def unpriced_note(rows: Sequence[Row], options: Options) -> str:
    names = [r.platform for r in rows if r.basis == "no price"]
    if not names:
        return ""
    return f"No {options.region} price in prices.json (left out): {', '.join(names)}."


def text_table(rows: Sequence[Row], options: Options) -> str:
    headers = [h.format(volume=f"{options.monthly_videos:,}") for h in HEADERS]
    body = [_cells(r) for r in priced(rows)]
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(headers[:-1])]
    lines = []
    for cells in [headers, *body]:
        first = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ]
        lines.append("  ".join(first) + "  " + cells[-1])
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(
    rows: Sequence[Row],
    found: dict[str, Measurement],
    prices: dict[str, Any],
    options: Options,
    command: str,
    traces: Sequence[Path],
) -> str:
    headers = [h.format(volume=f"{options.monthly_videos:,}") for h in HEADERS]
    always = ", ".join(sorted(options.always_on)) or "none"
    out = [
        "## What a video costs",
        "",
        f"Region **{options.region}**, {options.monthly_videos:,} videos a month, always-on "
        f"minimum of {options.min_tasks} task(s) for: {always}; Fargate task "
        f"{options.fargate_vcpu:g} vCPU / {options.fargate_memory_gb:g} GB. "
        f"Traces: {', '.join(str(t) for t in traces)}.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(headers) - 2) + ["---"]) + "|",
    ]
    for row in priced(rows):
        out.append("| " + " | ".join(_md_escape(c) for c in _cells(row)) + " |")
    out += [
        "",
        "*measured*: the median `render_job` span of that platform's traces; *proxy*: measured "
        "on another machine with the same architecture and vCPU count, priced at the "
        "platform's rate (Fargate's CPUs may be slower or faster); *assumed*: given with "
        "`--assume`, not measured; *not measured*: no trace, no figure. $/1000 is at full "
        "use, one job at a time per task; the monthly figure is the always-on floor plus "
        "tasks scaled out for what the floor cannot render.",
    ]
    if note := unpriced_note(rows, options):
        out += ["", note]
    if found:
        out += ["", "Where the seconds go (mean per video, child spans summed by stage):", ""]
        names = sorted({n for m in found.values() for n in m.stages})
        out.append("| Machine | runs | video s | " + " | ".join(names) + " |")
        out.append("|---|---:|---:|" + "|".join(["---:"] * len(names)) + "|")
        for m in found.values():
            video = statistics.median(m.output_seconds) if m.output_seconds else 0.0
            stage_cells = [f"{m.stages.get(n, 0.0):.2f}" for n in names]
            out.append(
                f"| {_md_escape(m.description)} | {m.runs} | {video:.1f} | "
                + " | ".join(stage_cells)
                + " |"
            )
    out += [
        "",
        f"Prices ({options.region}) from `benchmarks/prices.json`, written from the published "
        "price lists as known on the date read, not read live: re-check them.",
        "",
    ]
    region = prices.get("regions", {}).get(options.region, {})
    for key, price in region.items():
        figures = ", ".join(
            f"{k} {'not known' if v is None else v}"
            for k, v in price.items()
            if k in ("vcpu_hour", "gb_hour", "hour", "output_minute", "monthly_fee")
        )
        out.append(f"- `{key}`: {figures} — {price.get('source')} (read {price.get('read')})")
    out += ["", f"Produced by `{command}`.", ""]
    return "\n".join(out)


def chart(rows: Sequence[Row], options: Options, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in priced(rows) if r.hourly is not None or r.basis == "per-minute"]
    labels = [r.label for r in shown]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(shown) + 1.6), sharey=True)
    styles = {
        "measured": ("#2b6cb0", ""),
        "per-minute": ("#718096", ""),
        "proxy": ("#90cdf4", "//"),
        "assumed": ("#f6ad55", "xx"),
    }
    panels = (
        ("$ per 1000 videos (full use)", [r.per_1000 for r in shown]),
        (f"$ per month at {options.monthly_videos:,} videos", [r.monthly for r in shown]),
    )
    for ax, (title, values) in zip(axes, panels, strict=True):
        top = max((v for v in values if v is not None), default=1.0) or 1.0
        for y, (row, value) in enumerate(zip(shown, values, strict=True)):
            if value is None:
                text = NOT_MEASURED if row.basis == NOT_MEASURED else "no price"
                ax.text(top * 0.01, y, text, va="center", fontsize=8, color="#a0aec0")
                continue
            color, hatch = styles.get(row.basis, ("#2b6cb0", ""))
            ax.barh(y, value, color=color, hatch=hatch, edgecolor="#2d3748", linewidth=0.4)
            note = f" ${value:,.2f}" + (f" ({row.basis})" if row.basis in styles else "")
            ax.text(value, y, note, va="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, top * 1.45)
    axes[0].invert_yaxis()  # shared: the first platform on top in both panels
    axes[0].set_yticks(range(len(labels)), labels, fontsize=8)
    fig.suptitle(
        f"What a video costs ({options.region}); hatched = proxy or assumed, not measured on "
        "that platform",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- command line


def _assumption(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep or key not in BY_KEY or BY_KEY[key].kind == "managed":
        choices = ", ".join(p.key for p in PLATFORMS if p.kind != "managed")
        raise argparse.ArgumentTypeError(
            f"{text!r}: give PLATFORM=SECONDS, PLATFORM one of {choices}"
        )
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: {value!r} is not a number of seconds"
        ) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be positive")
    return key, seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Seconds and dollars per video, per platform, from render traces."
    )
    parser.add_argument("--traces", nargs="+", type=Path, required=True, metavar="FILE")
    parser.add_argument("--region", default="us-east-1", help="a region in prices.json")
    parser.add_argument("--prices", type=Path, default=PRICES)
    parser.add_argument("--monthly-videos", type=int, default=10_000, metavar="N")
    parser.add_argument(
        "--always-on",
        choices=("cpu", "gpu", "both", "none"),
        default="both",
        help="which fleets keep an always-on minimum (the others scale to zero)",
    )
    parser.add_argument("--min-tasks", type=int, default=1, help="size of the always-on minimum")
    parser.add_argument("--fargate-vcpu", type=float, default=2.0)
    parser.add_argument("--fargate-memory-gb", type=float, default=4.0)
    parser.add_argument(
        "--assume",
        action="append",
        type=_assumption,
        default=[],
        metavar="PLATFORM=SECONDS",
        help="seconds per video for a platform without traces (labelled 'assumed')",
    )
    parser.add_argument(
        "--no-proxy",
        action="store_true",
        help="never stand a same-size machine's measurement in for Fargate",
    )
    parser.add_argument("--markdown", type=Path, metavar="OUT.md")
    parser.add_argument("--chart", type=Path, metavar="OUT.png")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prices = json.loads(args.prices.read_text(encoding="utf-8"))
    if args.region not in prices.get("regions", {}):
        known = ", ".join(prices.get("regions", {}))
        print(f"error: no prices for region {args.region} (known: {known})", file=sys.stderr)
        return 2
    missing = [str(t) for t in args.traces if not t.exists()]
    if missing:
        print(f"error: no trace file {', '.join(missing)}", file=sys.stderr)
        return 2
    always = {"both": {"cpu", "gpu"}, "none": set()}.get(args.always_on, {args.always_on})
    options = Options(
        region=args.region,
        monthly_videos=args.monthly_videos,
        always_on=frozenset(always),
        min_tasks=args.min_tasks,
        fargate_vcpu=args.fargate_vcpu,
        fargate_memory_gb=args.fargate_memory_gb,
        assume=dict(args.assume),
        proxy=not args.no_proxy,
        hours_per_month=float(prices.get("hours_per_month", HOURS_PER_MONTH)),
    )
    runs = read_runs(args.traces)
    found = measurements(runs)
    rows = build_rows(found, prices, options)
    failed = sum(not r.succeeded for r in runs)
    print(text_table(rows, options))
    if note := unpriced_note(rows, options):
        print(note)
    print(
        f"\n{len(runs)} job(s) in {len(args.traces)} trace file(s)"
        + (f", {failed} failed and left out" if failed else "")
        + f"; prices: {args.prices} (not read live; re-check them)."
    )
    command = "python benchmarks/cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(
            markdown(rows, found, prices, options, command, args.traces), encoding="utf-8"
        )
        print(f"markdown: {args.markdown}")
    if args.chart:
        chart(rows, options, args.chart)
        print(f"chart: {args.chart}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
