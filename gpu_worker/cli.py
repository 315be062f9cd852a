"""The ``gpu-worker`` command line: render, preview, validate, schema, fonts, doctor, serve,
webhooks replay, studio.

Settings are read once, at start (:class:`gpu_worker.settings.Settings`); a bad one exits 1
with ``error invalid_config: VARIABLE: why``. Logging is configured here and nowhere else:
JSON lines on stderr (gpu_worker.observability.logs), each with the job_id of the job under
way and, when it is traced, its trace_id. Errors print one plain line
``error <code>: <message>`` and exit 2 for job errors, 1 for internal ones.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from gpu_worker.errors import (
    DecoderUnavailable,
    EncoderUnavailable,
    GpuWorkerError,
    HardwareFault,
    InputForbidden,
    InvalidJob,
    UnsupportedInput,
)

if TYPE_CHECKING:
    from gpu_worker.settings import Settings

log = logging.getLogger("gpu_worker")

EXIT_OK, EXIT_INTERNAL, EXIT_JOB = 0, 1, 2


def _job_and_dir(path: str) -> tuple[Any, Path]:
    from gpu_worker.job import load_job

    job_path = Path(path)
    return load_job(job_path), job_path.resolve().parent


def _load_settings() -> Settings:
    """Every environment variable, checked before any work (``invalid_config`` otherwise)."""
    from gpu_worker.render import fonts
    from gpu_worker.settings import Settings

    settings = Settings.from_env()
    fonts.use_fonts_dir(settings.fonts_dir)
    return settings


def _local_inputs_only(job: Any) -> None:
    """``gpu-worker render`` reads local files: say so for an S3 input, refuse other URLs."""
    for ref in job.inputs():
        if ref.uri.startswith("s3://"):
            raise UnsupportedInput(
                f"{ref.label}: {ref.uri} is in S3; `gpu-worker serve` fetches S3 inputs, "
                "`gpu-worker render` reads local files only"
            )
        if "://" in ref.uri:
            raise InputForbidden(
                f"{ref.label}: {ref.uri}: only s3:// URIs and local paths are read"
            )


def _outputs_for(job: Any, base_dir: Path, override: str | None) -> list[Path]:
    """Where each rendition goes: ``-o`` for a one-output job, or the outputs' local uris."""
    if job.outputs is None and override:
        return [Path(override)]
    if override:
        raise InvalidJob(
            f"-o names one file; this job has {len(job.outputs)} outputs: their uris say where"
        )
    paths = []
    for i, rendition in enumerate(job.renditions):
        label = "output.uri" if job.outputs is None else f"outputs[{i}].uri"
        uri = rendition.uri
        if uri.startswith("s3://") or "://" in uri:
            hint = ": pass -o OUT.mp4" if job.outputs is None else ""
            raise InvalidJob(f"{label} {uri} is not a local path{hint}")
        path = Path(uri)
        paths.append((path if path.is_absolute() else base_dir / path).resolve())
    return paths


class _Progress:
    """A progress bar (frames, fps, ETA) on a terminal, a log line every 10 % elsewhere."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.last_decile = -1
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if sys.stderr.isatty():
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="frame", desc="render", leave=False)
            self.bar.update(done - self.bar.n)
            return
        decile = done * 10 // total
        if decile != self.last_decile:
            self.last_decile = decile
            elapsed = time.perf_counter() - self.started
            fps = done / elapsed if elapsed > 0 else 0.0
            eta = (total - done) / fps if fps > 0 else 0.0
            log.info("frames %d/%d  %.1f fps  ETA %.0f s", done, total, fps, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_render(args: argparse.Namespace) -> int:
    from gpu_worker.observability.local import job_telemetry
    from gpu_worker.render.encoder import SOFTWARE, choose_encoder
    from gpu_worker.render.pipeline import render_job

    if args.program:
        # What start-up imported lives until exit: no garbage collection walks it again
        # (measured: 0.07 CPU seconds less for a short render, at start and at exit).
        gc.freeze()
    settings: Settings = args.settings

    job, base_dir = _job_and_dir(args.job)
    _local_inputs_only(job)
    paths = _outputs_for(job, base_dir, args.output)
    where = {"output": paths[0]} if job.outputs is None else {"outputs": paths}
    progress = _Progress(args.quiet)
    started = time.perf_counter()
    try:
        with job_telemetry(job.job_id, trace_file=args.trace_file) as jt:
            encoder = choose_encoder(settings.encoder)
            jt.worker_kind = encoder.kind
            common: dict[str, Any] = {
                "base_dir": base_dir,
                **where,
                "progress": progress,
                "clock": jt.clock,
                "limits": settings.limits,
            }
            # A job with several outputs renders whole: its renditions share one decode.
            split = args.segments > 1 and job.outputs is None
            render = _split_render(args, settings) if split else render_job
            try:
                result = render(job, encoder=encoder, decoder=settings.decoder, **common)
            except HardwareFault as fault:  # the GPU's fault: the CPU path renders it again
                log.warning("%s; rendering again on the CPU", fault.message)
                jt.set(**{"encoder.fallback": True})
                software = choose_encoder(SOFTWARE)
                result = render(job, encoder=software, decoder="cpu", **common)
            jt.result(result)
    finally:
        progress.close()
    seconds = time.perf_counter() - started
    for done in result.all:
        print(f"{done.output}")
    if not args.quiet:
        took = f"rendered in {seconds:.2f} s ({result.duration / seconds:.2f}x real time)"
        for done in result.all:
            print(
                f"duration {done.duration:.2f} s, {done.frames} frames "
                f"{done.width}x{done.height}@{done.fps}, encoder {done.encoder}"
                + ("" if result.renditions else f", {took}")
            )
            if done.poster:
                print(f"poster {done.poster}")
        if result.renditions:
            print(took)
        if args.trace_file:
            print(f"trace {args.trace_file} (trace id {jt.trace_id})")
    return EXIT_OK


def _split_render(args: argparse.Namespace, settings: Settings) -> Any:
    """``render_job``'s stand-in for ``--segments N``: N processes, then the join."""
    from gpu_worker.render.segments import render_split

    def render(job: Any, *, encoder: Any, progress: Any, **common: Any) -> Any:
        setting = "nvenc" if encoder.hardware else "x264"  # the processes choose it again
        return render_split(
            job, args.segments, encoder=setting, fonts_dir=settings.fonts_dir, **common
        )

    return render


def cmd_preview(args: argparse.Namespace) -> int:
    from gpu_worker.render.pipeline import preview_frame

    job, base_dir = _job_and_dir(args.job)
    _local_inputs_only(job)
    settings: Settings = args.settings
    image = preview_frame(
        job, args.at, base_dir=base_dir, limits=settings.limits, decoder=settings.decoder
    )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    print(out)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from gpu_worker.job import decode_job_text
    from gpu_worker.render.checks import job_problems

    try:
        data = decode_job_text(Path(args.job).read_bytes())
    except FileNotFoundError:
        raise InvalidJob(f"no job file at {args.job}") from None
    settings: Settings = args.settings
    _, found = job_problems(data, Path(args.job).resolve().parent, settings.limits)
    for line in found:
        print(line)
    if found:
        return EXIT_JOB
    print(f"{args.job}: valid")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from gpu_worker.job import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_fonts(args: argparse.Namespace) -> int:
    from gpu_worker.render import fonts

    faces = fonts.catalog()
    for face in faces:
        style = "italic" if face.italic else "normal"
        print(f"{face.family:<20} {face.weight:>3} {style:<6} {face.path.name}")
    print(f"{len(faces)} faces in {len(fonts.families())} families ({fonts.fonts_dir()})")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from gpu_worker.doctor import run_doctor

    return run_doctor(args.settings, quick=args.quick, serving=args.serving)


def cmd_serve(args: argparse.Namespace) -> int:
    from gpu_worker.observability.setup import setup_telemetry
    from gpu_worker.observability.spans import delivery_hooks, serve_hooks
    from gpu_worker.service.worker import serve

    settings: Settings = args.settings.require_serving()
    telemetry = setup_telemetry()
    try:
        return serve(
            settings,
            job_hooks=serve_hooks(telemetry),
            delivery_hooks=delivery_hooks(telemetry),
        )
    except (EncoderUnavailable, DecoderUnavailable) as exc:
        # serve() opens a forced codec before taking any message: this machine's fault, exit 1
        print(exc.one_line(), file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        telemetry.shutdown()


def cmd_webhooks_replay(args: argparse.Namespace) -> int:
    from gpu_worker.errors import InvalidConfig
    from gpu_worker.service.aws import aws_client
    from gpu_worker.service.deliveries import describe, replay
    from gpu_worker.service.webhook import WebhookSender

    settings: Settings = args.settings
    missing = [
        settings.variable(name)
        for name in ("webhook_dead_letter_url", "webhook_url", "webhook_secret")
        if getattr(settings, name) is None
    ]
    if missing:
        raise InvalidConfig(f"{', '.join(missing)}: not set")
    assert settings.webhook_url is not None and settings.webhook_dead_letter_url is not None
    sender = WebhookSender(
        settings.webhook_url,
        settings.webhook_key,
        allow_private=settings.webhook_allow_private,
        total_timeout=settings.webhook_timeout,
    )
    done = replay(
        aws_client("sqs", settings),
        settings.webhook_dead_letter_url,
        sender,
        limit=args.limit,
        dry_run=args.dry_run,
    )
    for item in done:
        print(describe(item))
    delivered = sum(1 for item in done if item.delivered)
    print(f"{delivered} delivered, {len(done) - delivered} left in the webhook dead-letter queue")
    return EXIT_OK if args.dry_run or delivered == len(done) else EXIT_INTERNAL


def cmd_studio(args: argparse.Namespace) -> int:
    from gpu_worker.studio.server import serve_studio
    from gpu_worker.studio.session import Studio

    settings: Settings = args.settings
    studio = Studio(
        Path(args.job),
        limits=settings.limits,
        decoder=settings.decoder,
        encoder=settings.encoder,
    )
    return serve_studio(studio, args.port, announce=lambda line: print(line, flush=True))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpu-worker", description="Render video jobs: JSON in, H.264/AAC MP4 out."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("render", help="render a job file to an MP4")
    p.add_argument("job", help="job JSON file")
    p.add_argument(
        "-o",
        "--output",
        help="output MP4 (default: the job's output.uri; a job with outputs: theirs)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the output paths")
    p.add_argument(
        "--segments",
        type=int,
        default=1,
        metavar="N",
        help="split the frames over N processes on keyframe boundaries, then join (default 1)",
    )
    p.add_argument(
        "--trace-file",
        metavar="FILE",
        help="write the job's OpenTelemetry spans to FILE as JSON lines (one span a line)",
    )
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("preview", help="render the single frame shown at a time, as PNG")
    p.add_argument("job")
    p.add_argument("--at", type=float, required=True, help="seconds into the video")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("validate", help="check a job file; list every problem (exit 2)")
    p.add_argument("job")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the job contract's JSON Schema")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("fonts", help="list the bundled font catalog")
    p.set_defaults(func=cmd_fonts)

    p = sub.add_parser("doctor", help="versions, encoders, NVENC probe, fonts")
    p.add_argument("--quick", action="store_true", help="fast health check (exit 0 = healthy)")
    p.add_argument(
        "--serving",
        action="store_true",
        help="health of the running `gpu-worker serve` (its health file; exit 0 = healthy)",
    )
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("serve", help="take jobs from SQS (configured by environment)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("webhooks", help="the webhook dead-letter queue")
    webhooks = p.add_subparsers(dest="webhooks_command", required=True)
    p = webhooks.add_parser(
        "replay",
        help="re-send every webhook in GPU_WORKER_WEBHOOK_DEAD_LETTER_URL now (same id, "
        "fresh signature); delete what is delivered, leave the rest (exit 1)",
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N webhooks")
    p.add_argument("--dry-run", action="store_true", help="list them; send nothing")
    p.set_defaults(func=cmd_webhooks_replay)

    p = sub.add_parser(
        "studio", help="a local page to edit, scrub and render a job (on 127.0.0.1 only)"
    )
    p.add_argument("job", help="job JSON file (read, and written back when you save)")
    p.add_argument("--port", type=int, default=8787, help="port on 127.0.0.1 (0: any free one)")
    p.set_defaults(func=cmd_studio)
    return parser


def run() -> NoReturn:
    """The installed ``gpu-worker`` command (and ``python -m gpu_worker``)."""
    raise SystemExit(main(program=True))


def main(argv: Sequence[str] | None = None, *, program: bool = False) -> int:
    """Run the command line ``argv``; ``program``: this process is the command (not a
    caller such as a test), so it may tune the interpreter for one render and exit."""
    from gpu_worker.observability.logs import setup_logging

    args = build_parser().parse_args(argv)
    args.program = program
    setup_logging(verbose=args.verbose)
    if getattr(args, "quiet", False):
        logging.getLogger().setLevel(logging.WARNING)
    try:
        if args.command != "schema":
            args.settings = _load_settings()
        code: int = args.func(args)
        return code
    except GpuWorkerError as exc:
        print(exc.one_line(), file=sys.stderr)
        return EXIT_JOB if exc.permanent else EXIT_INTERNAL
    except KeyboardInterrupt:
        print("error interrupted: stopped by the user", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence prints one line
        log.debug("internal error", exc_info=True)
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error internal: {type(exc).__name__}: {message}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
