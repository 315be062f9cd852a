"""S3 storage: URI checks and the allow-list, downloads under worker-chosen names, uploads that
appear complete or not at all, and S3 errors mapped to our codes over real HTTP."""

from __future__ import annotations

from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aws_fixtures import Aws, client, free_port, s3_endpoint
from botocore.exceptions import ClientError, EndpointConnectionError

from gpu_worker.errors import (
    GpuWorkerError,
    InputForbidden,
    InputNotFound,
    InternalError,
    LimitExceeded,
    TransientError,
)
from gpu_worker.service.storage import S3Uri, Storage, allowed_buckets, check_allowed, s3_error

pytest_plugins = ["aws_fixtures"]


@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("s3://media/clips/a.mp4", "media", "clips/a.mp4"),
        ("s3://my.bucket-1/a b/ü.mov", "my.bucket-1", "a b/ü.mov"),
        ("s3://media/a..b/c...mp4", "media", "a..b/c...mp4"),  # dots inside names are fine
    ],
)
def test_parse_valid_uris(uri: str, bucket: str, key: str) -> None:
    parsed = S3Uri.parse(uri, "clips[0]")
    assert (parsed.bucket, parsed.key) == (bucket, key)
    assert str(parsed) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "s3://media/../secret.mp4",
        "s3://media/clips/../../etc/passwd",
        "s3://media/clips/..",
        "s3://media/./a.mp4",
        "s3://media/a\\..\\b.mp4",
        "s3://media//etc/passwd",
        "s3://media/C:/x.mp4",
        "s3://media/a\x00.mp4",
        "s3://media/",
        "s3://media",
        "s3://Bad_Bucket/a.mp4",
        "s3://../a.mp4",
        "/etc/passwd",
        "clips/a.mp4",
        "file:///etc/passwd",
        "https://example.com/a.mp4",
        "S3://media/a.mp4",
    ],
)
def test_parse_refuses(uri: str) -> None:
    with pytest.raises(InputForbidden) as info:
        S3Uri.parse(uri, "clips[0]")
    assert info.value.code == "input_forbidden"
    assert "clips[0]" in info.value.message


@pytest.mark.parametrize(
    ("key", "sibling"),
    [("v/x.mp4", "v/x.jpg"), ("v/x", "v/x.jpg"), ("v.d/x.final.mp4", "v.d/x.final.jpg")],
)
def test_sibling(key: str, sibling: str) -> None:
    assert S3Uri("b", key).sibling(".jpg") == S3Uri("b", sibling)


def test_allow_list_defaults_to_the_output_bucket() -> None:
    assert allowed_buckets(None, "out") == {"out"}
    assert allowed_buckets(frozenset({"a", "b"}), "out") == {"a", "b"}
    check_allowed(S3Uri("out", "k"), allowed_buckets(None, "out"), "x")
    with pytest.raises(InputForbidden, match="allow-list"):
        check_allowed(S3Uri("other", "k"), allowed_buckets(None, "out"), "clips[1]")


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, InputNotFound),
        ("404", 404, InputNotFound),
        ("NoSuchBucket", 404, InputNotFound),
        ("AccessDenied", 403, InputForbidden),
        ("403", 403, InputForbidden),
        ("SlowDown", 503, TransientError),
        ("ServiceUnavailable", 503, TransientError),
        ("InternalError", 500, TransientError),
        ("Throttling", 400, TransientError),
        ("RequestTimeout", 400, TransientError),
        ("TooManyRequests", 429, TransientError),
        ("InvalidArgument", 400, InternalError),
    ],
)
def test_client_errors_map_to_our_codes(
    code: str, status: int, expected: type[GpuWorkerError]
) -> None:
    error = s3_error(_client_error(code, status), "clips[0]: s3://b/k")
    assert type(error) is expected
    assert error.message.startswith("clips[0]: s3://b/k")


def test_network_errors_are_transient() -> None:
    error = s3_error(EndpointConnectionError(endpoint_url="http://x"), "x")
    assert isinstance(error, TransientError) and not error.permanent


def test_download_to_the_given_name(aws: Aws, tmp_path: Path) -> None:
    aws.put("deep/../x/clip.mp4", b"data" * 10)  # a key S3 allows; we never use it as a path
    aws.put("clips/a.mp4", b"0123456789")
    storage = Storage(aws.s3)
    dest = tmp_path / "input-000.bin"
    size = storage.download(S3Uri(aws.bucket, "clips/a.mp4"), dest, "clips[0]", 100)
    assert size == 10 and dest.read_bytes() == b"0123456789"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input-000.bin"]
    with pytest.raises(InternalError):  # never overwrites an existing file
        storage.download(S3Uri(aws.bucket, "clips/a.mp4"), dest, "clips[0]", 100)


def test_download_errors(aws: Aws, tmp_path: Path) -> None:
    storage = Storage(aws.s3)
    aws.put("big.mp4", b"x" * 1000)
    with pytest.raises(InputNotFound):
        storage.download(S3Uri(aws.bucket, "missing.mp4"), tmp_path / "a", "clips[0]", 100)
    with pytest.raises(InputNotFound):
        storage.download(S3Uri("no-such-bucket-here", "a.mp4"), tmp_path / "b", "clips[0]", 100)
    with pytest.raises(LimitExceeded, match="over the limit"):
        storage.download(S3Uri(aws.bucket, "big.mp4"), tmp_path / "c", "clips[0]", 999)
    with pytest.raises(InputNotFound):
        storage.etag(S3Uri(aws.bucket, "missing.ttf"), "texts[0].font_uri")


def test_upload_writes_the_final_key_once_and_leaves_no_part(aws: Aws, tmp_path: Path) -> None:
    video = tmp_path / "out.mp4"
    video.write_bytes(b"v" * 5000)
    storage = Storage(aws.s3)
    calls: list[str] = []
    aws.s3.meta.events.register(
        "before-call.s3", lambda model, **kw: calls.append(model.name), unique_id="spy"
    )
    target = S3Uri(aws.bucket, "out/video.mp4")
    try:
        storage.upload(video, target, "video/mp4")
        storage.upload(video, target, "video/mp4")  # again: overwritten in place
    finally:
        aws.s3.meta.events.unregister("before-call.s3", unique_id="spy")
    assert calls == ["PutObject", "PutObject"]  # no temporary key, copy or delete
    assert aws.object_keys() == ["out/video.mp4"]
    head = aws.s3.head_object(Bucket=aws.bucket, Key="out/video.mp4")
    assert head["ContentType"] == "video/mp4" and head["ContentLength"] == 5000


def test_upload_to_a_missing_bucket_leaves_nothing(aws: Aws, tmp_path: Path) -> None:
    video = tmp_path / "out.mp4"
    video.write_bytes(b"v")
    with pytest.raises(InputNotFound):
        Storage(aws.s3).upload(video, S3Uri("no-such-bucket-here", "v.mp4"), "video/mp4")


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (503, "SlowDown", TransientError),
        (500, "InternalError", TransientError),
        (403, "AccessDenied", InputForbidden),
    ],
)
def test_s3_answering_errors(
    failing_s3: ThreadingHTTPServer,
    tmp_path: Path,
    status: int,
    code: str,
    expected: type[GpuWorkerError],
) -> None:
    failing_s3.answer = (status, code)  # type: ignore[attr-defined]
    storage = Storage(client("s3", s3_endpoint(failing_s3), attempts=1))
    with pytest.raises(expected):
        storage.download(S3Uri("media", "a.mp4"), tmp_path / "a", "clips[0]", 100)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"v")
    with pytest.raises(expected):
        storage.upload(video, S3Uri("media", "v.mp4"), "video/mp4")
    assert failing_s3.hits >= 2  # type: ignore[attr-defined]


def test_s3_unreachable_is_transient(tmp_path: Path) -> None:
    storage = Storage(client("s3", f"http://127.0.0.1:{free_port()}", attempts=1))
    with pytest.raises(TransientError):
        storage.download(S3Uri("media", "a.mp4"), tmp_path / "a", "clips[0]", 100)


@pytest.mark.parametrize(
    ("status", "code"),
    [(403, "AccessDenied"), (503, "SlowDown")],  # a missing key to a role that cannot list
)
def test_an_output_check_that_s3_refuses_means_render(
    failing_s3: ThreadingHTTPServer, status: int, code: str
) -> None:
    from helpers import job_dict

    from gpu_worker.job import parse_job
    from gpu_worker.service.outputs import find_rendered

    failing_s3.answer = (status, code)  # type: ignore[attr-defined]
    storage = Storage(client("s3", s3_endpoint(failing_s3), attempts=1))
    job = parse_job(job_dict([{"uri": "s3://media/a.mp4"}], output={"uri": "s3://media/o.mp4"}))
    assert find_rendered(storage, job, S3Uri("media", "o.mp4")) is None
    assert failing_s3.hits == 1  # type: ignore[attr-defined]
