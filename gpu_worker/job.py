"""The job contract, version 1: what a render job may say, validated once at the door.

Everything after :func:`load_job` sees only a valid :class:`Job`. Unknown fields are errors,
so a typo in a backend never renders a silently different video.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gpu_worker import template
from gpu_worker.errors import InvalidJob

_COLOR = re.compile(r"^#(?:[0-9A-Fa-f]{6}|[0-9A-Fa-f]{8})$")
METADATA_MAX_BYTES = 4096
MAX_RENDITIONS = 8
JOB_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"  # also what a message's job id must look like


Color = Annotated[str, Field(pattern=_COLOR.pattern, examples=["#FFFFFF", "#00000080"])]
Seconds = Annotated[float, Field(ge=0, le=86_400)]


def parse_color(value: str) -> tuple[int, int, int, int]:
    """``#RRGGBB`` or ``#RRGGBBAA`` as an (r, g, b, a) tuple of 0..255."""
    if not _COLOR.match(value):
        raise ValueError(f"not a #RRGGBB or #RRGGBBAA colour: {value!r}")
    digits = value[1:]
    if len(digits) == 6:
        digits += "FF"
    r, g, b, a = (int(digits[i : i + 2], 16) for i in range(0, 8, 2))
    return r, g, b, a


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quality(StrEnum):
    DRAFT = "draft"
    STANDARD = "standard"
    HIGH = "high"


class Fit(StrEnum):
    COVER = "cover"
    CONTAIN = "contain"
    BLUR = "blur"


class TransitionType(StrEnum):
    CUT = "cut"
    CROSSFADE = "crossfade"
    FADE_BLACK = "fade_black"
    WIPE_LEFT = "wipe_left"
    WIPE_RIGHT = "wipe_right"
    WIPE_UP = "wipe_up"
    WIPE_DOWN = "wipe_down"
    SLIDE_LEFT = "slide_left"
    SLIDE_RIGHT = "slide_right"
    SLIDE_UP = "slide_up"
    SLIDE_DOWN = "slide_down"

    @property
    def overlaps(self) -> bool:
        """Whether the two clips share the transition's time on screen (all but cut and
        fade_black, which shows one clip at a time)."""
        return self not in (TransitionType.CUT, TransitionType.FADE_BLACK)


class Anchor(StrEnum):
    TOP_LEFT = "top-left"
    TOP = "top"
    TOP_RIGHT = "top-right"
    LEFT = "left"
    CENTER = "center"
    RIGHT = "right"
    BOTTOM_LEFT = "bottom-left"
    BOTTOM = "bottom"
    BOTTOM_RIGHT = "bottom-right"

    @property
    def fractions(self) -> tuple[float, float]:
        """Where the anchor sits inside the box, as (x, y) fractions of its size."""
        fx = 0.0 if self.value.endswith("left") else 1.0 if self.value.endswith("right") else 0.5
        fy = (
            0.0 if self.value.startswith("top") else 1.0 if self.value.startswith("bottom") else 0.5
        )
        return fx, fy


class Align(StrEnum):
    LEFT = "left"
    CENTER = "center"
    RIGHT = "right"


class AnimationKind(StrEnum):
    NONE = "none"
    FADE = "fade"
    SLIDE_UP = "slide_up"


class MotionKind(StrEnum):
    ZOOM_IN = "zoom_in"
    ZOOM_OUT = "zoom_out"
    PAN_LEFT = "pan_left"
    PAN_RIGHT = "pan_right"
    PAN_UP = "pan_up"
    PAN_DOWN = "pan_down"


class CaptionStyle(StrEnum):
    LINE = "line"
    WORD_HIGHLIGHT = "word_highlight"


class Easing(StrEnum):
    LINEAR = "linear"
    EASE_IN_OUT = "ease_in_out"


class Output(_Model):
    uri: str = Field(min_length=1, description="s3://bucket/key.mp4, or a local path")
    width: int = Field(1080, ge=16, le=3840, description="even, pixels")
    height: int = Field(1920, ge=16, le=3840, description="even, pixels")
    fps: int = Field(30, ge=1, le=60)
    quality: Quality = Quality.STANDARD
    poster: bool = Field(False, description="also write a JPEG poster beside the video")

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be even (H.264 4:2:0 needs even sizes)")
        return value


class Transition(_Model):
    type: TransitionType = TransitionType.CUT
    duration: float = Field(0.5, gt=0, le=10)


class Motion(_Model):
    """A Ken Burns move over the clip's time on screen."""

    type: MotionKind
    scale: float = Field(
        1.15, ge=1.01, le=4, description="zoom: the window shrinks this many times; pans: enlarge"
    )
    easing: Easing = Easing.LINEAR


class Clip(_Model):
    uri: str = Field(min_length=1)
    trim_start: Seconds = 0.0
    duration: float | None = Field(None, gt=0, le=86_400, description="default: to the end")
    fit: Fit = Fit.COVER
    volume: float = Field(0.0, ge=0, le=4, description="source audio gain; 0 mutes")
    transition: Transition = Field(
        default_factory=lambda: Transition(), description="into this clip"
    )
    motion: Motion | None = Field(None, description="a Ken Burns zoom or pan")


class Stroke(_Model):
    width: float = Field(gt=0, le=100)
    color: Color = "#000000"


class Shadow(_Model):
    dx: float = Field(0, ge=-500, le=500)
    dy: float = Field(4, ge=-500, le=500)
    blur: float = Field(8, ge=0, le=200)
    color: Color = "#000000AA"


class Background(_Model):
    color: Color = "#000000AA"
    padding: float = Field(24, ge=0, le=1000)
    radius: float = Field(0, ge=0, le=1000)


class Animation(_Model):
    in_: AnimationKind = Field(AnimationKind.NONE, alias="in")
    out: AnimationKind = AnimationKind.NONE
    duration: float = Field(0.5, gt=0, le=60)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Text(_Model):
    text: str = Field(min_length=1, max_length=5000)
    font: str | None = Field(None, min_length=1, description="family name from the catalog")
    font_uri: str | None = Field(None, min_length=1, description="a TTF/OTF file to use instead")
    weight: int = Field(400, ge=100, le=900)
    italic: bool = False
    size: float = Field(gt=0, le=2000, description="pixels")
    color: Color = "#FFFFFF"
    opacity: float = Field(1.0, ge=0, le=1)
    x: float = Field(0.5, ge=0, le=1)
    y: float = Field(0.5, ge=0, le=1)
    anchor: Anchor = Anchor.CENTER
    max_width: float = Field(0.9, gt=0, le=1)
    align: Align = Align.CENTER
    line_spacing: float = Field(1.15, gt=0, le=10)
    letter_spacing: float = Field(0, ge=-100, le=1000)
    stroke: Stroke | None = None
    shadow: Shadow | None = None
    background: Background | None = None
    start: Seconds = 0.0
    end: float | None = Field(None, gt=0, le=86_400, description="default: end of the video")
    animation: Animation = Field(default_factory=lambda: Animation())

    @model_validator(mode="after")
    def _check(self) -> Text:
        if self.font is None and self.font_uri is None:
            raise ValueError("give a font (family name) or a font_uri")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        if not self.text.strip():
            raise ValueError("text is blank")
        return self


class Overlay(_Model):
    """An image (PNG, WebP, JPEG or SVG) drawn over the clips and under the texts."""

    uri: str = Field(min_length=1)
    x: float = Field(0.5, ge=0, le=1)
    y: float = Field(0.5, ge=0, le=1)
    anchor: Anchor = Anchor.CENTER
    width: float | None = Field(None, gt=0, le=1, description="fraction of the frame's width")
    height: float | None = Field(None, gt=0, le=1, description="fraction of the frame's height")
    opacity: float = Field(1.0, ge=0, le=1)
    start: Seconds = 0.0
    end: float | None = Field(None, gt=0, le=86_400, description="default: end of the video")
    animation: Animation = Field(default_factory=lambda: Animation())

    @model_validator(mode="after")
    def _check(self) -> Overlay:
        if self.width is not None and self.height is not None:
            raise ValueError("give width or height, not both: the other follows the image")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


class Duck(_Model):
    """Lower the music while a clip with sound (``volume`` above 0) plays."""

    db: float = Field(-12.0, ge=-60, lt=0, description="how far the music goes down, dB")
    attack: float = Field(0.3, ge=0, le=10, description="seconds to go down")
    release: float = Field(0.5, ge=0, le=10, description="seconds to come back up")


MAX_CUES = 5000


class Word(_Model):
    """One spoken word of a cue and when it is said, on the output timeline."""

    start: Seconds
    end: float = Field(gt=0, le=86_400)
    text: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _check(self) -> Word:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


class Cue(_Model):
    """A caption shown from ``start`` to ``end`` (seconds of the output)."""

    start: Seconds
    end: float = Field(gt=0, le=86_400)
    text: str = Field(min_length=1, max_length=1000)
    words: list[Word] | None = Field(
        None,
        description="word timings for word_highlight: one per word of text, in order; "
        "default: the cue's time spread over its words by length",
    )

    @model_validator(mode="after")
    def _check(self) -> Cue:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        if not self.text.strip():
            raise ValueError("text is blank")
        if self.words is not None:
            tokens = self.text.split()
            said = [w.text for w in self.words]
            if said != tokens:
                raise ValueError(f"words {said} must be the words of text, in order: {tokens}")
            for i, word in enumerate(self.words):
                if word.start < self.start - 1e-6 or word.end > self.end + 1e-6:
                    raise ValueError(f"words[{i}] ({word.start}-{word.end}) is outside the cue")
                if i and word.start < self.words[i - 1].start:
                    raise ValueError(f"words[{i}] starts before words[{i - 1}]")
        return self


class Captions(_Model):
    """Subtitles burnt into the video: from an SRT/WebVTT file or given cue by cue, drawn
    over the overlays and texts."""

    uri: str | None = Field(None, min_length=1, description="an SRT or WebVTT file")
    cues: list[Cue] | None = Field(None, min_length=1, max_length=MAX_CUES)
    style: CaptionStyle = Field(
        CaptionStyle.LINE, description="line, or word_highlight: the word being said coloured"
    )
    highlight_color: Color = "#FFD400"
    font: str | None = Field(None, min_length=1, description="family name from the catalog")
    font_uri: str | None = Field(None, min_length=1, description="a TTF/OTF file to use instead")
    weight: int = Field(700, ge=100, le=900)
    italic: bool = False
    size: float = Field(gt=0, le=2000, description="pixels")
    color: Color = "#FFFFFF"
    x: float = Field(0.5, ge=0, le=1)
    y: float = Field(0.75, ge=0, le=1, description="default: above the apps' bottom bar")
    anchor: Anchor = Anchor.BOTTOM
    max_width: float = Field(0.8, gt=0, le=1, description="clear of the apps' side buttons")
    align: Align = Align.CENTER
    line_spacing: float = Field(1.15, gt=0, le=10)
    max_lines: int = Field(2, ge=1, le=10, description="a longer cue is shown page by page")
    stroke: Stroke | None = None
    shadow: Shadow | None = None
    background: Background | None = None

    @model_validator(mode="after")
    def _check(self) -> Captions:
        if (self.uri is None) == (self.cues is None):
            raise ValueError("give uri (an SRT or WebVTT file) or cues, not both")
        if self.font is None and self.font_uri is None:
            raise ValueError("give a font (family name) or a font_uri")
        return self


class Audio(_Model):
    """The music (``uri``) and what is done to the whole soundtrack (``loudness``)."""

    uri: str | None = Field(None, min_length=1, description="the music; omit for none")
    volume: float = Field(1.0, ge=0, le=4)
    fade_in: Seconds = 0.0
    fade_out: Seconds = 0.0
    loop: bool = True
    loudness: float | None = Field(
        None,
        ge=-40,
        le=-5,
        description="normalise the final mix to this integrated loudness (LUFS, BS.1770), "
        "true peak at or below -1 dBTP",
    )
    duck: Duck | None = Field(None, description="lower the music while a clip speaks")

    @model_validator(mode="after")
    def _check(self) -> Audio:
        if self.duck is not None and self.uri is None:
            raise ValueError("duck lowers the music: give the music's uri")
        return self


class InputRef(NamedTuple):
    """One file a job reads: its URI, where the job names it, and whether it is a font."""

    uri: str
    label: str
    font: bool = False


class Job(_Model):
    """A render job: clips in order, image overlays, texts and captions on the output
    timeline, an optional music track."""

    version: Literal[1]
    job_id: str = Field(pattern=JOB_ID_PATTERN)
    output: Output | None = Field(None, description="the video to write; or give outputs")
    outputs: list[Output] | None = Field(
        None,
        min_length=1,
        max_length=MAX_RENDITIONS,
        description="several renditions (sizes, frame rates) of the same video from one job; "
        "instead of output",
    )
    clips: list[Clip] = Field(min_length=1)
    overlays: list[Overlay] = Field(
        default_factory=list, description="images over the clips, under the texts, in order"
    )
    texts: list[Text] = Field(default_factory=list)
    audio: Audio | None = None
    captions: Captions | None = Field(None, description="subtitles over everything else")
    merge: dict[str, str | int | float] = Field(
        default_factory=dict,
        description="values of the {{name}} placeholders found in any string of the job, "
        "filled in as text before the job is validated",
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="≤ 4 KiB, passed through")

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, ensure_ascii=False).encode())
        if size > METADATA_MAX_BYTES:
            raise ValueError(f"is {size} bytes as JSON; at most {METADATA_MAX_BYTES}")
        return value

    @field_validator("outputs")
    @classmethod
    def _distinct(cls, value: list[Output] | None, info: ValidationInfo) -> list[Output] | None:
        if value is None:
            return value
        if info.data.get("output") is not None:
            raise ValueError("give output or outputs, not both")
        seen: dict[str, int] = {}
        for i, rendition in enumerate(value):
            names = [rendition.uri]
            if rendition.poster:
                names.append(f"{rendition.uri.rpartition('.')[0] or rendition.uri}.jpg")
            for name in names:
                if name in seen and seen[name] != i:
                    raise ValueError(f"outputs[{i}] and outputs[{seen[name]}] both write {name}")
                seen[name] = i
        return value

    @property
    def renditions(self) -> list[Output]:
        """Every video the job writes: ``outputs``, or the one ``output``."""
        if self.outputs is not None:
            return list(self.outputs)
        assert self.output is not None  # the validator makes sure of one or the other
        return [self.output]

    def for_output(self, output: Output) -> Job:
        """This job writing only ``output`` (one rendition of a job with several)."""
        return self.model_copy(update={"output": output, "outputs": None})

    def inputs(self) -> list[InputRef]:
        """Every file the job reads, in job order, each URI once (its first mention)."""
        named = [InputRef(clip.uri, f"clips[{i}]") for i, clip in enumerate(self.clips)]
        if self.audio is not None and self.audio.uri is not None:
            named.append(InputRef(self.audio.uri, "audio"))
        named += [InputRef(o.uri, f"overlays[{i}]") for i, o in enumerate(self.overlays)]
        named += [
            InputRef(text.font_uri, f"texts[{i}].font_uri", font=True)
            for i, text in enumerate(self.texts)
            if text.font_uri is not None
        ]
        if self.captions is not None:
            if self.captions.uri is not None:
                named.append(InputRef(self.captions.uri, "captions.uri"))
            if self.captions.font_uri is not None:
                named.append(InputRef(self.captions.font_uri, "captions.font_uri", font=True))
        seen: dict[str, InputRef] = {}
        for ref in named:
            seen.setdefault(ref.uri, ref)
        return list(seen.values())

    @model_validator(mode="after")
    def _first_clip_has_no_transition(self) -> Job:
        if self.output is None and self.outputs is None:
            raise ValueError("give output (one video) or outputs (several renditions)")
        first = self.clips[0].transition
        if first.type.overlaps:
            raise ValueError(f"clips[0] cannot {first.type.value}: there is no clip before it")
        return self


def json_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's ``loc`` as a JSON path: ``('texts', 0, 'size')`` → ``$.texts[0].size``."""
    path = "$"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def problems(error: ValidationError) -> list[str]:
    """Every problem of a failed validation, one line each, with its JSON path."""
    lines = []
    for item in error.errors(include_url=False):
        loc = tuple(p for p in item["loc"] if p not in ("function-after[_check()]",))
        msg = item["msg"].removeprefix("Value error, ")
        lines.append(f"{json_path(loc)}: {msg}")
    return lines


def validate(data: Any) -> Job:
    """Validate already-decoded JSON strictly, as JSON: ``"yes"`` is not a boolean and
    ``"3"`` not a number. Raises pydantic's ValidationError listing every problem."""
    return Job.model_validate_json(json.dumps(data), strict=True)


def fill_template(data: Any) -> Any:
    """``data`` with its ``{{name}}`` placeholders filled from its ``merge``; ``InvalidJob``
    listing every missing name (with the JSON path of each string that names it)."""
    filled, errors = template.fill(data)
    if errors:
        raise InvalidJob("; ".join(errors))
    if filled.missing:
        raise InvalidJob("; ".join(filled.problems()))
    return filled.data


def parse_job(data: Any) -> Job:
    """Fill the placeholders, then validate already-decoded JSON; every problem goes into one
    InvalidJob message."""
    data = fill_template(data)
    try:
        return validate(data)
    except ValidationError as exc:
        found = problems(exc)
        raise InvalidJob("; ".join(found)) from exc


def decode_job_text(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidJob(f"the job is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InvalidJob("the job is not valid JSON: it is nested too deeply") from None


def load_job(path: Path) -> Job:
    """Read and validate a job file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise InvalidJob(f"no job file at {path}") from exc
    return parse_job(decode_job_text(raw))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the contract, as committed in job.schema.json."""
    schema = Job.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "gpu-worker render job, version 1"
    return schema
