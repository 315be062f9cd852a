"""Job templates: {{name}} placeholders filled from merge as plain text, every missing name
reported with where it is, in parse_job, `gpu-worker validate` and submit_job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aws_fixtures import Aws, Media, Receiver, job
from helpers import job_dict, read_output, run_cli

from gpu_worker.client import submit_job
from gpu_worker.errors import InvalidJob
from gpu_worker.job import parse_job
from gpu_worker.render.pipeline import render_job
from gpu_worker.service.messages import Outcome

pytest_plugins = ["aws_fixtures"]


def template(**extra: Any) -> dict[str, Any]:
    return job_dict(
        [{"uri": "{{clip}}"}],
        texts=[
            {"text": "Welcome to {{ hotel }}", "font": "Roboto", "size": 20},
            {"text": "From {{price}} € a night at {{hotel}}", "font": "Roboto", "size": 12},
        ],
        metadata={"hotel_id": "{{id}}", "{{key}}": "keys are not filled"},
        **extra,
    )


VALUES = {"clip": "clips/a.mp4", "hotel": "Le Bristol", "price": 420, "id": "h-7"}


def test_placeholders_are_filled_everywhere_but_keys() -> None:
    job = parse_job(template(merge=VALUES))
    assert job.clips[0].uri == "clips/a.mp4"
    assert [t.text for t in job.texts] == [
        "Welcome to Le Bristol",
        "From 420 € a night at Le Bristol",
    ]
    assert job.metadata == {"hotel_id": "h-7", "{{key}}": "keys are not filled"}
    assert job.merge["hotel"] == "Le Bristol"


@pytest.mark.parametrize(
    "value",
    [
        'Chez "l\'ami" \\ \\n',
        '", "size": 900, "x": "',  # would break out of the string if pasted into the JSON
        "{x} {{ }} %s ${HOME} $(ls)",
        "12.5",
    ],
)
def test_values_are_inserted_as_text_never_evaluated(value: str) -> None:
    job = parse_job(template(merge={**VALUES, "hotel": value}))
    assert job.texts[0].text == f"Welcome to {value}"
    assert job.texts[0].size == 20


def test_numbers_are_written_as_text() -> None:
    job = parse_job(template(merge={**VALUES, "price": 99.5}))
    assert job.texts[1].text == "From 99.5 € a night at Le Bristol"


def test_every_missing_name_is_listed_with_its_place() -> None:
    with pytest.raises(InvalidJob) as err:
        parse_job(template(merge={"clip": "a.mp4"}))
    message = str(err.value)
    assert err.value.code == "invalid_job"
    assert "$.texts[0].text: no merge value for {{hotel}}" in message
    assert "$.texts[1].text: no merge value for {{price}}, {{hotel}}" in message
    assert "$.metadata.hotel_id: no merge value for {{id}}" in message
    with pytest.raises(InvalidJob, match=r"\$.clips\[0\].uri: no merge value for \{\{clip\}\}"):
        parse_job(template())  # no merge at all


@pytest.mark.parametrize(
    ("merge", "message"),
    [
        ({**VALUES, "hotel": "{{price}}"}, r"\$.merge.hotel: a value cannot itself hold"),
        ({**VALUES, "hotel": True}, r"\$.merge.hotel: must be a string or a number"),
        ({**VALUES, "hotel": ["a"]}, r"\$.merge.hotel: must be a string or a number"),
        ({**VALUES, "no spaces": "x"}, r"\$.merge.no spaces: not a name"),
        ("hotel=x", r"\$.merge: must be an object"),
    ],
)
def test_a_bad_merge_is_refused(merge: Any, message: str) -> None:
    with pytest.raises(InvalidJob, match=message):
        parse_job(template(merge=merge))


def test_validate_reports_missing_names(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps(template(merge={"clip": "a.mp4"})))
    proc = run_cli("validate", str(tmp_path / "t.json"))
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [
        "$.texts[0].text: no merge value for {{hotel}}",
        "$.texts[1].text: no merge value for {{price}}, {{hotel}}",
        "$.metadata.hotel_id: no merge value for {{id}}",
    ]
    (tmp_path / "ok.json").write_text(json.dumps(template(merge=VALUES)))
    proc = run_cli("validate", str(tmp_path / "ok.json"))
    assert proc.returncode == 0, proc.stdout


def test_submit_job_fills_from_merge(aws: Aws) -> None:
    spec = template()
    spec["clips"][0]["uri"] = f"s3://{aws.bucket}/{{{{clip}}}}"
    spec["output"]["uri"] = f"s3://{aws.bucket}/out/{{{{id}}}}.mp4"
    with pytest.raises(InvalidJob, match=r"\{\{price\}\}"):
        submit_job(aws.queue_url, spec, sqs=aws.sqs, merge={"clip": "a.mp4", "hotel": "X"})
    assert aws.counts() == (0, 0)
    submit_job(aws.queue_url, spec, sqs=aws.sqs, merge=VALUES)
    (message,) = aws.sqs.receive_message(QueueUrl=aws.queue_url, WaitTimeSeconds=1)["Messages"]
    job = parse_job(json.loads(message["Body"]))  # the worker fills it the same way
    assert job.output.uri == f"s3://{aws.bucket}/out/h-7.mp4"
    assert job.texts[1].text == "From 420 € a night at Le Bristol"
    # A parsed job sent again with more values keeps its filled text.
    submit_job(aws.queue_url, job, sqs=aws.sqs, merge={"extra": "unused"})
    (again,) = aws.sqs.receive_message(QueueUrl=aws.queue_url, WaitTimeSeconds=1)["Messages"]
    assert parse_job(json.loads(again["Body"])).texts == job.texts


def test_the_schema_describes_merge_and_captions() -> None:
    schema = json.loads(run_cli("schema").stdout)
    assert "merge" in schema["properties"] and "captions" in schema["properties"]
    assert "{{name}}" in schema["properties"]["merge"]["description"]


def test_the_template_example_is_valid_and_filled() -> None:
    root = Path(__file__).resolve().parents[1]
    data = json.loads((root / "examples" / "hotel-template.json").read_text(encoding="utf-8"))
    job = parse_job(data)
    assert job.job_id == "hotel-des-iles" and job.texts[1].text == "From 129 € a night"
    assert job.captions is not None and job.captions.cues is not None
    assert job.captions.cues[0].text == "Welcome to Hôtel des Îles in Porquerolles"


def test_a_served_template_with_captions_from_s3(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any, tmp_path: Path
) -> None:
    worker = make_worker()
    aws.put("in/fr.vtt", b"WEBVTT\n\n00:00.500 --> 00:01.000\nLe Bristol\n")
    spec = job(
        aws,
        [aws.put("in/a.mp4", media.clip)],
        job_id="{{id}}",
        captions={"uri": f"s3://{aws.bucket}/in/{{{{lang}}}}.vtt", "font": "Roboto", "size": 12},
    )
    submit_job(aws.queue_url, spec, sqs=aws.sqs, merge={"id": "h-9", "lang": "fr"})
    (ctx,) = worker.poll_once(wait=1)
    assert ctx.outcome is Outcome.COMPLETED and ctx.error is None, ctx.error
    (tmp_path / "o.mp4").write_bytes(aws.get("out/h-9.mp4"))
    served = read_output(tmp_path / "o.mp4").frames
    # The same job rendered here without captions: only the cue's frames (0.5-1.0 s) differ.
    plain = parse_job({**spec, "job_id": "plain", "captions": None, "merge": {"id": "x"}})
    render_job(
        plain,
        base_dir=tmp_path,
        output=tmp_path / "p.mp4",
        fetched={spec["clips"][0]["uri"]: media.clip},
    )
    frames = read_output(tmp_path / "p.mp4").frames
    changed = [
        int(np.abs(a.astype(int) - b.astype(int)).max() > 40)
        for a, b in zip(frames, served, strict=True)
    ]
    assert changed == [0] * 5 + [1] * 5


def test_a_served_job_with_a_bad_caption_file_fails_naming_the_line(
    aws: Aws, media: Media, receiver: Receiver, make_worker: Any
) -> None:
    worker = make_worker()
    bad = b"1\n00:00:00,000 --> 00:00:01,000\nok\n\n2\n00:00:01 --> 00:00:02,000\nno\n"
    spec = job(
        aws,
        [aws.put("in/a.mp4", media.clip)],
        captions={"uri": aws.put("in/s.srt", bad), "font": "Roboto", "size": 12},
    )
    aws.send(json.dumps(spec))
    (ctx,) = worker.poll_once(wait=1)
    assert ctx.outcome is Outcome.FAILED and ctx.error is not None
    assert ctx.error.code == "invalid_job" and "captions.uri: line 6" in ctx.error.message
    assert aws.counts() == (0, 0)
