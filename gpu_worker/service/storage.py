"""S3 for the queue worker: ``s3://`` URIs, the bucket allow-list, downloads under names the
worker chooses, and uploads that appear at their final key only when complete.

botocore's errors are mapped to ours here, in :func:`s3_error`: a missing object is
``input_not_found``, a refused one ``input_forbidden``, 5xx, throttling and network faults are
transient. A key is never turned into a local file name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from gpu_worker.errors import (
    GpuWorkerError,
    InputForbidden,
    InputNotFound,
    InternalError,
    LimitExceeded,
    TransientError,
)

log = logging.getLogger(__name__)

SCHEME = "s3://"
CHUNK = 1024 * 1024
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}
_FORBIDDEN = {"AccessDenied", "AllAccessDisabled", "Forbidden", "403", "AccountProblem"}
_THROTTLED = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "RequestTimeoutException",
    "OperationAborted",
}


@dataclass(frozen=True)
class S3Uri:
    """A checked ``s3://bucket/key``: a valid bucket name, a key that cannot climb anywhere."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    @classmethod
    def parse(cls, uri: str, label: str) -> S3Uri:
        """Parse ``uri`` or raise ``input_forbidden`` saying why it is refused."""
        if not uri.startswith(SCHEME):
            raise InputForbidden(f"{label}: {uri!r} is not an s3:// URI; the worker reads S3 only")
        bucket, _, key = uri[len(SCHEME) :].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise InputForbidden(f"{label}: {bucket!r} is not a valid bucket name")
        if not key:
            raise InputForbidden(f"{label}: {uri!r} names no object key")
        if _CONTROL.search(key):
            raise InputForbidden(f"{label}: the key holds control characters")
        if key.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", key):
            raise InputForbidden(f"{label}: the key {key!r} looks like an absolute path")
        segments = re.split(r"[/\\]", key)
        if any(seg in (".", "..") for seg in segments):
            raise InputForbidden(f"{label}: the key {key!r} has a '.' or '..' path segment")
        if len(key.encode()) > 1024:
            raise InputForbidden(f"{label}: the key is longer than S3 allows (1024 bytes)")
        return cls(bucket, key)

    def sibling(self, suffix: str) -> S3Uri:
        """The same key with another suffix: ``v/x.mp4`` → ``v/x.jpg`` (appended if none)."""
        path = PurePosixPath(self.key)
        key = str(path.with_suffix(suffix)) if path.suffix else self.key + suffix
        return S3Uri(self.bucket, key)


def allowed_buckets(configured: frozenset[str] | None, output_bucket: str) -> frozenset[str]:
    """Buckets a job may touch: the configured allow-list, or else only its output's bucket."""
    return configured if configured else frozenset({output_bucket})


def check_allowed(uri: S3Uri, allowed: Iterable[str], label: str) -> None:
    if uri.bucket not in set(allowed):
        raise InputForbidden(f"{label}: bucket {uri.bucket!r} is not on the worker's allow-list")


def _error_code(exc: ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    return str(error.get("Code", "")), int(meta.get("HTTPStatusCode", 0) or 0)


def s3_error(exc: BaseException, what: str) -> GpuWorkerError:
    """One of our errors for a botocore/boto3 failure while doing ``what``."""
    if isinstance(exc, GpuWorkerError):
        return exc
    if isinstance(exc, S3UploadFailedError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, BaseException):
            return s3_error(cause, what)
        return TransientError(f"{what}: {exc}")
    if isinstance(exc, ClientError):
        code, status = _error_code(exc)
        if code in _NOT_FOUND or status == 404:
            return InputNotFound(f"{what}: no such object or bucket ({code or status})")
        if code in _FORBIDDEN or status == 403:
            return InputForbidden(f"{what}: access denied ({code or status})")
        if code in _THROTTLED or status >= 500 or status == 429:
            return TransientError(f"{what}: S3 answered {status} {code}".strip())
        return InternalError(f"{what}: S3 answered {status} {code}".strip())
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | NoRegionError):
        return InternalError(f"{what}: {exc}")
    if isinstance(exc, BotoCoreError | OSError):
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")
    return InternalError(f"{what}: {type(exc).__name__}: {exc}")


class Storage:
    """Reads and writes S3 objects through one boto3 client (thread-safe)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def etag(self, uri: S3Uri, label: str) -> str:
        """The object's ETag (raises ``input_not_found`` when it does not exist)."""
        try:
            head = self.client.head_object(Bucket=uri.bucket, Key=uri.key)
        except Exception as exc:
            raise s3_error(exc, f"{label}: {uri}") from exc
        return str(head.get("ETag", ""))

    def download(self, uri: S3Uri, dest: Path, label: str, max_bytes: int) -> int:
        """Stream the object into ``dest`` (a new file); refuse more than ``max_bytes``."""
        what = f"{label}: {uri}"
        try:
            response = self.client.get_object(Bucket=uri.bucket, Key=uri.key)
        except Exception as exc:
            raise s3_error(exc, what) from exc
        body = response["Body"]
        try:
            declared = int(response.get("ContentLength") or 0)
            if declared > max_bytes:
                raise LimitExceeded(
                    f"{what}: {declared} bytes is over the limit of {max_bytes} bytes"
                )
            written = 0
            with dest.open("xb") as handle:
                while chunk := body.read(CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise LimitExceeded(f"{what}: over the limit of {max_bytes} bytes")
                    handle.write(chunk)
            return written
        except GpuWorkerError:
            raise
        except OSError as exc:  # botocore wraps network faults; an OSError is the local disk
            raise InternalError(f"{what}: cannot write the scratch file ({exc})") from exc
        except Exception as exc:
            raise s3_error(exc, what) from exc
        finally:
            body.close()

    def head(self, uri: S3Uri, label: str) -> dict[str, Any] | None:
        """The object's HEAD answer (``ContentLength``, ``Metadata``...), None when absent."""
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=uri.bucket, Key=uri.key)
        except Exception as exc:
            error = s3_error(exc, f"{label}: {uri}")
            if isinstance(error, InputNotFound):
                return None
            raise error from exc
        return head

    def upload(
        self,
        path: Path,
        uri: S3Uri,
        content_type: str,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Upload ``path`` to ``uri``, straight to its key: S3 makes a PUT or a completed
        multipart upload visible at once and whole, so no reader ever sees a part of it (a
        failed multipart upload is aborted by boto3 and leaves nothing). ``metadata``: S3
        user metadata (``x-amz-meta-*``), written with the object in the same request."""
        extra: dict[str, Any] = {"ContentType": content_type}
        if metadata:
            extra["Metadata"] = metadata
        try:
            self.client.upload_file(str(path), uri.bucket, uri.key, ExtraArgs=extra)
        except Exception as exc:
            raise s3_error(exc, f"upload {uri}") from exc
