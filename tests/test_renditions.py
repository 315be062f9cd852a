"""Renditions: one job writing several formats (``outputs``) from one decode of its inputs,
read back: each file has its size, the same duration, texts placed by their fractions; bad
``outputs`` refused before any work; the CLI and the queue worker write and report each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aws_fixtures import SECRET, Aws, Media, Receiver, job
from helpers import read_output, run_cli

from examples.samples import make_clip
from gpu_worker.client import submit_job, verify_webhook
from gpu_worker.errors import InvalidJob
from gpu_worker.job import parse_job
from gpu_worker.render import clips as clips_module
from gpu_worker.render.pipeline import render_job
from gpu_worker.service.messages import Outcome

pytest_plugins = ["aws_fixtures"]

SIZES = [(96, 160), (96, 96), (160, 96)]  # 9:16, 1:1, 16:9


def renditions_job(sizes: list[tuple[int, int]], fps: list[int] | None = None) -> dict[str, Any]:
    rates = fps or [10] * len(sizes)
    return {
        "version": 1,
        "job_id": "formats",
        "outputs": [
            {"uri": f"out-{w}x{h}-{r}.mp4", "width": w, "height": h, "fps": r}
            for (w, h), r in zip(sizes, rates, strict=True)
        ],
        "clips": [
            {"uri": "a.mp4", "volume": 1.0},
            {"uri": "b.mp4", "transition": {"type": "crossfade", "duration": 0.3}},
        ],
        "texts": [
            {"text": "SALE", "font": "Roboto", "weight": 700, "size": 18, "x": 0.5, "y": 0.8}
        ],
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    make_clip(tmp_path / "a.mp4", width=120, height=120, fps=10, seconds=1.0, solid=(0, 0, 0))
    make_clip(
        tmp_path / "b.mp4",
        width=120,
        height=120,
        fps=10,
        seconds=1.0,
        solid=(0, 0, 0),
        audio_hz=None,
    )
    return tmp_path


@pytest.fixture
def decoders(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The label of every clip decoder opened while the test runs."""
    opened: list[str] = []
    original = clips_module.ClipReader.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        opened.append(self.label)

    monkeypatch.setattr(clips_module.ClipReader, "__init__", counting)
    yield opened


def white_rows(frame: np.ndarray) -> np.ndarray:
    """Rows holding the white text (the clips are black)."""
    return np.flatnonzero((frame.mean(axis=2) > 128).sum(axis=1) > 0)


def test_every_rendition_has_its_size_and_the_same_duration(
    folder: Path, decoders: list[str]
) -> None:
    job = parse_job(renditions_job(SIZES))
    paths = [folder / r.uri for r in job.renditions]
    result = render_job(job, base_dir=folder, outputs=paths)

    assert decoders == ["a.mp4", "b.mp4"]  # each clip decoded once for the three formats
    assert [(r.width, r.height) for r in result.all] == SIZES
    outs = [read_output(p) for p in paths]
    for out, (w, h) in zip(outs, SIZES, strict=True):
        assert {f.shape[:2] for f in out.frames} == {(h, w)}
        assert len(out.frames) == 17
        assert out.duration == pytest.approx(outs[0].duration, abs=0.03)
        assert out.audio.shape[1] == pytest.approx(outs[0].audio.shape[1], abs=1024)
        # The text sits at 80 % of each format's height, centred across its width.
        rows = white_rows(out.frames[5])
        assert rows.size and abs((rows.min() + rows.max()) / 2 - 0.8 * h) < 0.06 * h
        cols = np.flatnonzero((out.frames[5].mean(axis=2) > 128).sum(axis=0) > 0)
        assert abs((cols.min() + cols.max()) / 2 - 0.5 * w) < 0.06 * w


def test_a_rendition_matches_the_same_format_rendered_alone(folder: Path) -> None:
    make_clip(folder / "a.mp4", width=120, height=120, fps=10, seconds=1.0, hue=0.2)
    make_clip(folder / "b.mp4", width=200, height=120, fps=10, seconds=1.0, hue=0.6)
    data = renditions_job(SIZES)
    data["clips"][1]["motion"] = {"type": "zoom_in", "scale": 1.2}
    job = parse_job(data)
    render_job(job, base_dir=folder, outputs=[folder / r.uri for r in job.renditions])
    alone = dict(data, output=data["outputs"][2] | {"uri": "alone.mp4"})
    del alone["outputs"]
    render_job(parse_job(alone), base_dir=folder, output=folder / "alone.mp4")

    together, single = read_output(folder / "out-160x96-10.mp4"), read_output(folder / "alone.mp4")
    for a, b in zip(together.frames, single.frames, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0


def test_renditions_at_different_frame_rates(folder: Path) -> None:
    job = parse_job(renditions_job(SIZES[:2], fps=[10, 20]))
    result = render_job(job, base_dir=folder, outputs=[folder / r.uri for r in job.renditions])
    assert [(r.fps, r.frames) for r in result.all] == [(10, 17), (20, 34)]
    assert result.all[0].duration == pytest.approx(result.all[1].duration, abs=0.051)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.update(output={"uri": "one.mp4"}),
            "$.outputs: give output or outputs, not both",
        ),
        (
            lambda d: d["outputs"][2].update(uri="out-96x160-10.mp4"),
            "$.outputs: outputs[2] and outputs[0] both write out-96x160-10.mp4",
        ),
        (lambda d: d.pop("outputs"), "$: give output (one video) or outputs"),
        (lambda d: d.update(outputs=[]), "$.outputs: List should have at least 1 item"),
    ],
)
def test_bad_outputs_are_invalid_with_their_path(change: Any, message: str) -> None:
    data = renditions_job(SIZES)
    change(data)
    with pytest.raises(InvalidJob) as caught:
        parse_job(data)
    assert message in caught.value.message


def test_validate_and_render_on_the_command_line(folder: Path) -> None:
    data = renditions_job(SIZES[1:])
    data["clips"] = data["clips"][:1]
    (folder / "job.json").write_text(json.dumps(data))
    done = run_cli("render", "--quiet", str(folder / "job.json"))
    assert done.returncode == 0, done.stderr
    written = done.stdout.split()
    assert written == [str((folder / o["uri"]).resolve()) for o in data["outputs"]]
    assert all(Path(p).stat().st_size > 0 for p in written)
    split = run_cli("render", "--quiet", "--segments", "2", str(folder / "job.json"))
    assert split.returncode == 0, split.stderr  # rendered whole: one decode for every output
    assert split.stdout.split() == written

    refused = run_cli("render", str(folder / "job.json"), "-o", str(folder / "x.mp4"))
    assert refused.returncode == 2 and "error invalid_job: -o names one file" in refused.stderr

    data["outputs"][1]["uri"] = data["outputs"][0]["uri"]
    (folder / "bad.json").write_text(json.dumps(data))
    bad = run_cli("validate", str(folder / "bad.json"))
    assert bad.returncode == 2 and "$.outputs: outputs[1] and outputs[0] both write" in bad.stdout


def test_served_renditions_upload_each_and_list_them_in_the_webhook(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any
) -> None:
    worker = make_worker()
    clip = aws.put("in/a.mp4", media.clip)
    spec = job(aws, [clip], job_id="formats-1")
    single = spec.pop("output")
    spec["outputs"] = [
        single | {"poster": True},
        single | {"uri": f"s3://{aws.bucket}/out/square.mp4", "width": 64, "height": 64},
    ]
    submit_job(aws.queue_url, spec, sqs=aws.sqs)
    (ctx,) = worker.poll_once(wait=1)
    assert ctx.outcome is Outcome.COMPLETED and ctx.error is None
    assert {"out/formats-1.mp4", "out/formats-1.jpg", "out/square.mp4"} <= set(aws.object_keys())

    (post,) = receiver.posts()
    event = verify_webhook(post.headers, post.body, SECRET)
    listed = event["outputs"]
    assert [(o["uri"], o["width"], o["height"]) for o in listed] == [
        (f"s3://{aws.bucket}/out/formats-1.mp4", 64, 112),
        (f"s3://{aws.bucket}/out/square.mp4", 64, 64),
    ]
    assert listed[0]["poster_uri"] == f"s3://{aws.bucket}/out/formats-1.jpg"
    assert listed[1]["poster_uri"] is None
    assert listed[0]["duration"] == listed[1]["duration"]
    assert listed[1]["size_bytes"] == len(aws.get("out/square.mp4"))
    assert event["output"] == listed[0]


def test_captions_are_laid_out_for_each_rendition(folder: Path) -> None:
    data = renditions_job(SIZES[1:])
    data["texts"] = []
    data["captions"] = {
        "cues": [{"start": 0.0, "end": 1.6, "text": "HELLO"}],
        "font": "Roboto",
        "size": 18,
        "y": 0.5,
        "anchor": "center",
    }
    job = parse_job(data)
    paths = [folder / r.uri for r in job.renditions]
    render_job(job, base_dir=folder, outputs=paths)
    for path, (w, h) in zip(paths, SIZES[1:], strict=True):
        frame = read_output(path).frames[5]
        rows = white_rows(frame)
        assert rows.size and abs((rows.min() + rows.max()) / 2 - 0.5 * h) < 0.08 * h
        cols = np.flatnonzero((frame.mean(axis=2) > 128).sum(axis=0) > 0)
        assert abs((cols.min() + cols.max()) / 2 - 0.5 * w) < 0.08 * w


def test_served_renditions_are_not_rendered_again_unless_one_is_missing(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any
) -> None:
    stages: list[Any] = []

    @contextmanager
    def hooks(ctx: Any) -> Iterator[None]:
        ctx.clock.listeners.append(stages.append)
        yield

    worker = make_worker(hooks=hooks)
    spec = job(aws, [aws.put("in/a.mp4", media.clip)], job_id="formats-again")
    single = spec.pop("output")
    spec["outputs"] = [
        single | {"poster": True},
        single | {"uri": f"s3://{aws.bucket}/out/square-again.mp4", "width": 64, "height": 64},
    ]
    for _ in range(2):
        submit_job(aws.queue_url, spec, sqs=aws.sqs)
        (ctx,) = worker.poll_once(wait=1)
        assert ctx.outcome is Outcome.COMPLETED and ctx.error is None
    aws.s3.delete_object(Bucket=aws.bucket, Key="out/square-again.mp4")
    submit_job(aws.queue_url, spec, sqs=aws.sqs)
    (ctx,) = worker.poll_once(wait=1)
    assert ctx.outcome is Outcome.COMPLETED and ctx.error is None

    found = [s.attributes["found"] for s in stages if s.name == "output_check"]
    assert found == [False, True, False]  # the second finds both; the third misses one
    assert len([s for s in stages if s.name == "upload"]) == 4  # two renders of two
    first, second, third = (verify_webhook(p.headers, p.body, SECRET) for p in receiver.posts())
    assert second["outputs"] == first["outputs"] and second["output"] == first["outputs"][0]
    assert [o["uri"] for o in third["outputs"]] == [o["uri"] for o in first["outputs"]]


def test_a_long_job_with_outputs_is_rendered_whole_not_split(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any
) -> None:
    stages: list[Any] = []

    @contextmanager
    def hooks(ctx: Any) -> Iterator[None]:
        ctx.clock.listeners.append(stages.append)
        yield

    worker = make_worker(hooks=hooks, GPU_WORKER_SEGMENT_SECONDS="2")  # 8 s: would split
    spec = job(aws, [aws.put("in/long.mp4", media.long_clip)], job_id="formats-long")
    single = spec.pop("output")
    spec["outputs"] = [
        single,
        single | {"uri": f"s3://{aws.bucket}/out/long-square.mp4", "width": 64, "height": 64},
    ]
    submit_job(aws.queue_url, spec, sqs=aws.sqs)
    (ctx,) = worker.poll_once(wait=1)
    assert ctx.outcome is Outcome.COMPLETED and ctx.error is None
    assert not [s for s in stages if s.name == "fan_out"]
    assert [k for k in aws.object_keys() if k.startswith("out/")] == [
        "out/formats-long.mp4",
        "out/long-square.mp4",
    ]
    assert aws.counts() == (0, 0)  # no segment message was sent
    (post,) = receiver.posts()
    event = verify_webhook(post.headers, post.body, SECRET)
    assert [o["duration"] for o in event["outputs"]] == [pytest.approx(8.0, abs=0.05)] * 2


def test_renditions_finish_together_when_the_sound_lags_behind(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sound is encoded for every rendition in one thread, a little ahead of the video at
    most. When it lags behind (a loaded machine), the renditions wait for its end together:
    none waits for it while another's queue, full, holds it up."""
    import threading
    import time

    from gpu_worker.render import pipeline, sound_encoder

    monkeypatch.setattr(sound_encoder, "AHEAD", 2)
    mixer_of = pipeline.soundtrack_of

    def slow(comp: Any) -> Any:
        mixer = mixer_of(comp)
        frames = mixer.frames

        def lagging() -> Iterator[Any]:
            for frame in frames():
                time.sleep(0.01)  # 1024 samples every 10 ms: far behind tiny frames
                yield frame

        mixer.frames = lagging
        return mixer

    monkeypatch.setattr(pipeline, "soundtrack_of", slow)
    job = parse_job(renditions_job(SIZES[:2]))
    outputs = [folder / o.uri for o in job.renditions]
    done: list[Any] = []
    worker = threading.Thread(
        target=lambda: done.append(render_job(job, base_dir=folder, outputs=outputs)),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=60)
    assert done, "the render did not finish"
    for path in outputs:
        out = read_output(path)
        assert out.audio.shape[1] / out.audio_rate == pytest.approx(out.duration, abs=0.05)
