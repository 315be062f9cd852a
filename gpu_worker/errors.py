"""The whole exception tree of gpu-worker, each error with a stable code.

    GpuWorkerError                 code          permanent?
    ├── JobError                   (a bad job or a bad input: retrying cannot help)
    │   ├── InvalidJob             invalid_job
    │   ├── FontNotFound           font_not_found
    │   ├── GlyphMissing           glyph_missing
    │   ├── TextOverflow           text_overflow
    │   ├── InputNotFound          input_not_found
    │   ├── InputUnreadable        input_unreadable
    │   ├── UnsupportedInput       unsupported_input
    │   ├── InputForbidden         input_forbidden
    │   ├── LimitExceeded          limit_exceeded
    │   ├── EncoderUnavailable     encoder_unavailable
    │   └── DecoderUnavailable     decoder_unavailable
    ├── TransientError             transient      (network, S3/SQS 5xx, throttling: try again later)
    ├── InvalidConfig              invalid_config (a bad environment variable: the worker's fault)
    └── InternalError              internal       (a bug or an environment fault)
        └── HardwareFault          hardware_fault (NVENC/NVDEC failed: render again on the CPU)

Library exceptions (PyAV, botocore, HTTP) are translated into these at one boundary each,
always with ``raise Ours(...) from exc``. Whether a job is retried is decided by the class,
never by matching message strings.
"""

from __future__ import annotations


class GpuWorkerError(Exception):
    """Base of every error the worker reports; ``code`` is stable, ``message`` is one line."""

    code = "internal"
    permanent = False

    def __init__(self, message: str) -> None:
        message = " ".join(str(message).split())
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """The form the command line prints: ``error <code>: <message>``."""
        return f"error {self.code}: {self.message}"


class JobError(GpuWorkerError):
    """The job or one of its inputs is wrong; rendering it again would fail the same way."""

    code = "invalid_job"
    permanent = True


class InvalidJob(JobError):
    """The job does not follow the contract (bad JSON, unknown field, value out of range)."""

    code = "invalid_job"


class FontNotFound(JobError):
    """A text names a font family that is neither bundled nor fetched."""

    code = "font_not_found"


class GlyphMissing(JobError):
    """A text holds characters the chosen font cannot draw."""

    code = "glyph_missing"


class TextOverflow(JobError):
    """A text does not fit inside the frame, even after wrapping."""

    code = "text_overflow"


class InputNotFound(JobError):
    """An input file (clip, music, font) does not exist."""

    code = "input_not_found"


class InputUnreadable(JobError):
    """An input exists but is corrupt, truncated, empty or not media at all."""

    code = "input_unreadable"


class UnsupportedInput(JobError):
    """An input is readable but of a kind the worker refuses (playlist, concat script, codec)."""

    code = "unsupported_input"


class InputForbidden(JobError):
    """An input lies outside what the worker may read (bucket not allowed, path escape)."""

    code = "input_forbidden"


class LimitExceeded(JobError):
    """The job asks for more than the configured limits (length, clips, texts, input size)."""

    code = "limit_exceeded"


class EncoderUnavailable(JobError):
    """The encoder that was forced (GPU_WORKER_ENCODER) cannot be opened on this machine."""

    code = "encoder_unavailable"


class DecoderUnavailable(JobError):
    """NVDEC decoding was forced (GPU_WORKER_DECODER) but cannot be opened on this machine."""

    code = "decoder_unavailable"


class TransientError(GpuWorkerError):
    """A passing fault (network, 5xx, throttling); the same job may succeed later."""

    code = "transient"
    permanent = False


class InvalidConfig(GpuWorkerError):
    """An environment variable is malformed or missing; found at start, before any work."""

    code = "invalid_config"
    permanent = False


class InternalError(GpuWorkerError):
    """A bug or an environment fault in the worker itself."""

    code = "internal"
    permanent = False


class HardwareFault(InternalError):
    """The GPU encoder or decoder failed (at open or mid-stream): the worker's fault, never
    the job's. The job is rendered again on the CPU path (FFmpeg's decoders, libx264), where
    an input that really cannot be decoded is told apart as ``input_unreadable``."""

    code = "hardware_fault"
