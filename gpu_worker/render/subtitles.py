"""Caption files read strictly: SubRip (SRT) and WebVTT into cues, or ``invalid_job`` naming
the line that is wrong.

Both formats are small and line based, so they are parsed here rather than by a library: the
common Python readers skip a malformed cue silently or cannot say on which line it is, and a
caption that quietly disappears from a video is worse than a clear refusal. WebVTT tags
(``<b>``, ``<c.x>``, ``<v Name>``) are removed and its character references unescaped; inline
timestamps (``Hello <00:01.500>world``) become the cue's word timings; NOTE, STYLE and REGION
blocks are skipped. Cue settings are ignored: the job's caption style places every cue.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from pydantic import ValidationError

from gpu_worker.errors import InputUnreadable, InvalidJob, LimitExceeded
from gpu_worker.job import MAX_CUES, Cue, Word
from gpu_worker.limits import Limits
from gpu_worker.render.files import stat_input

CAPTION_MAX_BYTES = 4 * 1024**2
_SRT_TIME = r"(\d{1,3}):([0-5]\d):([0-5]\d)[,.](\d{3})"
_SRT_TIMING = re.compile(rf"^{_SRT_TIME}\s+-->\s+{_SRT_TIME}(?:\s+.*)?$")
_VTT_TIME = r"(?:(\d{1,3}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_VTT_TIMING = re.compile(rf"^{_VTT_TIME}[ \t]+-->[ \t]+{_VTT_TIME}(?:[ \t]+.*)?$")
_VTT_HEADER = re.compile(r"^WEBVTT(?:[ \t].*)?$")
_TAG = re.compile(r"<[^>]*>")
_TIMESTAMP_TAG = re.compile(rf"<{_VTT_TIME}>")


def _seconds(h: str | None, m: str, s: str, ms: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


class _Reader:
    """Builds cues, with the line number of each for error messages."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.cues: list[Cue] = []

    def fail(self, line: int, why: str) -> InvalidJob:
        return InvalidJob(f"{self.label}: line {line}: {why}")

    def add(
        self,
        line: int,
        start: float,
        end: float,
        text_lines: list[str],
        words: list[Word] | None = None,
    ) -> None:
        text = "\n".join(t.strip() for t in text_lines if t.strip())
        if not text:
            raise self.fail(line + 1, "the cue has no text")
        if end <= start:
            raise self.fail(line, f"the cue ends ({end:.3f} s) before it starts ({start:.3f} s)")
        if len(self.cues) >= MAX_CUES:
            raise LimitExceeded(f"{self.label}: more than {MAX_CUES} cues")
        if len(text) > 1000:
            raise self.fail(line, f"the cue's text is {len(text)} characters; at most 1000")
        try:
            self.cues.append(Cue(start=start, end=end, text=text, words=words))
        except ValidationError as exc:
            why = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            raise self.fail(line, why) from exc


def _blocks(lines: list[str], first: int) -> list[tuple[int, list[str]]]:
    """Runs of non-blank lines from ``lines[first:]``, each with its 1-based first line."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start = 0
    for n in range(first, len(lines)):
        if lines[n].strip():
            if not current:
                start = n + 1
            current.append(lines[n])
        elif current:
            blocks.append((start, current))
            current = []
    if current:
        blocks.append((start, current))
    return blocks


def parse_srt(lines: list[str], label: str) -> list[Cue]:
    reader = _Reader(label)
    for start, block in _blocks(lines, 0):
        if not block[0].strip().isdigit():
            raise reader.fail(start, f"expected a cue number, found {block[0][:60]!r}")
        if len(block) < 2:
            raise reader.fail(start + 1, "expected a timing line after the cue number")
        match = _SRT_TIMING.match(block[1].strip())
        if match is None:
            raise reader.fail(
                start + 1,
                f"{block[1][:60]!r} is not a timing line (HH:MM:SS,mmm --> HH:MM:SS,mmm)",
            )
        g = match.groups()
        reader.add(start + 1, _seconds(*g[:4]), _seconds(*g[4:]), block[2:])
    return reader.cues


def _vtt_text(line: str) -> str:
    return html.unescape(_TAG.sub("", line))


def _vtt_words(
    reader: _Reader, line: int, start: float, end: float, payload: list[str]
) -> list[Word] | None:
    """Word timings from a cue's inline timestamps (``Hello <00:01.500>world``): each word
    from the time in force where it begins; words that share a time share it by length."""
    joined = "\n".join(payload)
    if not _TIMESTAMP_TAG.search(joined):
        return None
    segments: list[tuple[float, str]] = []
    at, pos = start, 0
    for match in _TIMESTAMP_TAG.finditer(joined):
        segments.append((at, joined[pos : match.start()]))
        stamp = _seconds(*match.groups())
        if not at <= stamp <= end:
            raise reader.fail(
                line, f"the inline time {match.group(0)} is outside the cue or out of order"
            )
        at, pos = stamp, match.end()
    segments.append((at, joined[pos:]))
    # Tokens as the cue's text splits them, each starting in the segment of its first letter.
    starts: list[float] = []
    tokens: list[str] = []
    glued = False  # whether the previous segment ended inside a word
    for seg_start, raw in segments:
        text = _vtt_text(raw)
        parts = text.split()
        if parts and glued and not text[0].isspace():
            tokens[-1] += parts.pop(0)
        tokens += parts
        starts += [seg_start] * len(parts)
        glued = (bool(text) and not text[-1].isspace()) or (not text and glued)
    words: list[Word] = []
    for i, token in enumerate(tokens):
        group = [j for j in range(len(tokens)) if starts[j] == starts[i]]
        group_end = next(
            (starts[j] for j in range(i + 1, len(tokens)) if starts[j] > starts[i]), end
        )
        total = sum(len(tokens[j]) for j in group)
        before = sum(len(tokens[j]) for j in group if j < i)
        span = group_end - starts[i]
        w_start = starts[i] + span * before / total
        w_end = starts[i] + span * (before + len(token)) / total
        if w_end <= w_start:
            raise reader.fail(line, f"the word {token!r} has no time to be said")
        words.append(Word(start=w_start, end=w_end, text=token))
    return words


def parse_vtt(lines: list[str], label: str) -> list[Cue]:
    reader = _Reader(label)
    header_end = next((n for n, line in enumerate(lines) if not line.strip()), len(lines))
    for start, block in _blocks(lines, header_end):
        head = block[0].strip()
        if head.startswith(("NOTE", "STYLE", "REGION")) and "-->" not in head:
            continue
        timing_at = 0 if "-->" in head else 1  # an optional cue identifier comes first
        if timing_at >= len(block):
            raise reader.fail(start, f"{head[:60]!r} is neither a cue nor a NOTE block")
        line = block[timing_at].strip()
        match = _VTT_TIMING.match(line)
        if match is None:
            raise reader.fail(
                start + timing_at,
                f"{line[:60]!r} is not a timing line ([HH:]MM:SS.mmm --> [HH:]MM:SS.mmm)",
            )
        g = match.groups()
        payload = block[timing_at + 1 :]
        begin, finish = _seconds(*g[:4]), _seconds(*g[4:])
        words = None
        if finish > begin:
            words = _vtt_words(reader, start + timing_at, begin, finish, payload)
        text = [_vtt_text(t) for t in payload]
        reader.add(start + timing_at, begin, finish, text, words)
    return reader.cues


def parse_captions(data: bytes, label: str) -> list[Cue]:
    """The cues of an SRT or WebVTT file's bytes, in time order."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidJob(f"{label}: line {line}: not UTF-8 text") from exc
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    first = next((n for n, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise InvalidJob(f"{label}: the caption file is empty")
    if _VTT_HEADER.match(lines[0]):
        cues = parse_vtt(lines, label)
    elif lines[first].strip().isdigit():
        cues = parse_srt(lines, label)
    else:
        raise InvalidJob(
            f"{label}: line {first + 1}: not an SRT or WebVTT file (WebVTT starts with "
            "'WEBVTT', SRT with a cue number then a timing line)"
        )
    if not cues:
        raise InvalidJob(f"{label}: the caption file holds no cues")
    return sorted(cues, key=lambda c: c.start)


def read_captions(path: Path, label: str, limits: Limits) -> list[Cue]:
    """Read and parse a fetched caption file, after checking its size."""
    size = stat_input(path, label).st_size
    limit = min(CAPTION_MAX_BYTES, limits.max_input_bytes)
    if size > limit:
        raise LimitExceeded(f"{label}: {size} bytes; a caption file may hold {limit}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputUnreadable(f"{label}: cannot be read ({exc.strerror})") from exc
    return parse_captions(data, label)
