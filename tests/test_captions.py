"""Captions read back from the video: each cue's pixels on screen exactly during the cue, in
the safe area, the spoken word coloured at its time, and caption files parsed strictly."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import job_dict, run_cli

from examples.samples import make_clip
from gpu_worker.errors import GpuWorkerError, InvalidJob
from gpu_worker.job import parse_job
from gpu_worker.limits import Limits
from gpu_worker.render.composite import planes_of
from gpu_worker.render.pipeline import Inputs, prepare, render_job
from gpu_worker.render.subtitles import parse_captions, read_captions

ROOT = Path(__file__).resolve().parents[1]

SRT = """1
00:00:00,200 --> 00:00:00,500
Hi there

2
00:00:00,700 --> 00:00:00,900
Bye
"""

VTT = """WEBVTT - a header line

NOTE a comment
that spans lines

intro
00:00.200 --> 00:00.500 align:start line:0
<v Ana>Hi <b>there</b> &amp; you</v>

00:00:00.700 --> 00:00:00.900
Bye <00:00:00.800>now
"""


def grey_clip(folder: Path, seconds: float) -> Path:
    return make_clip(
        folder / "grey.mp4",
        width=96,
        height=160,
        fps=10,
        seconds=seconds,
        solid=(60, 60, 60),
        audio_hz=None,
    )


def captions(**kw: Any) -> dict[str, Any]:
    return {"font": "Roboto", "size": 14, **kw}


def test_cue_pixels_show_exactly_during_their_cues_in_the_safe_area(
    tmp_path: Path, render: Callable[..., Any]
) -> None:
    grey_clip(tmp_path, 1.0)
    (tmp_path / "subs.srt").write_text(SRT)
    clips = [{"uri": "grey.mp4"}]
    _, plain = render(job_dict(clips))
    _, subbed = render(job_dict(clips, captions=captions(uri="subs.srt")))
    changed = [
        int(np.abs(a.astype(int) - b.astype(int)).max() > 40)
        for a, b in zip(plain.frames, subbed.frames, strict=True)
    ]
    # 10 fps: the cues cover frames 2-4 (0.2-0.5 s) and 7-8 (0.7-0.9 s), nothing else.
    assert changed == [0, 0, 1, 1, 1, 0, 0, 1, 1, 0]
    diff = np.abs(subbed.frames[3].astype(int) - plain.frames[3].astype(int)).max(axis=2) > 40
    rows, cols = np.nonzero(diff)
    # The default place: centred, bottom edge at 75 % of the height, within 80 % of the width.
    assert 0.75 * 160 - 14 < rows.max() <= 0.75 * 160 + 2
    assert cols.min() >= 0.1 * 96 - 1 and cols.max() <= 0.9 * 96 + 1
    assert abs((cols.min() + cols.max()) / 2 - 48) < 4
    # The same cues given inline, from a WebVTT file: the same frames change.
    (tmp_path / "subs.vtt").write_text(VTT)
    _, vtt = render(job_dict(clips, captions=captions(uri="subs.vtt")))
    assert [
        int(np.abs(a.astype(int) - b.astype(int)).max() > 40)
        for a, b in zip(plain.frames, vtt.frames, strict=True)
    ] == changed


def text_colour(frame: np.ndarray, left: bool) -> np.ndarray:
    """Mean colour of the caption's bright pixels in its first or second word (split at the
    widest run of empty columns, the space)."""
    mask = frame.max(axis=2) > 150
    cols = np.nonzero(mask.any(axis=0))[0]
    gaps = np.diff(cols)
    split = int(cols[int(np.argmax(gaps))]) + 1
    half = mask.copy()
    if left:
        half[:, split:] = False
    else:
        half[:, :split] = False
    return frame[half].astype(float).mean(axis=0)


def is_red(colour: np.ndarray) -> bool:
    return bool(colour[0] > 150 and colour[1] < 110)


def is_white(colour: np.ndarray) -> bool:
    return bool(colour.min() > 150)


def highlight_job(**kw: Any) -> dict[str, Any]:
    cues = [
        {
            "start": 0,
            "end": 0.8,
            "text": "AA BB",
            "words": [
                {"start": 0, "end": 0.3, "text": "AA"},
                {"start": 0.3, "end": 0.8, "text": "BB"},
            ],
        },
        {"start": 0.8, "end": 1.6, "text": "A BBB"},  # no timings: 0.2 s for A, 0.6 s for BBB
    ]
    spec = captions(cues=cues, style="word_highlight", highlight_color="#FF0000", size=20, **kw)
    return job_dict([{"uri": "black.mp4"}], captions=spec)


def test_the_word_being_said_changes_colour_at_its_time(
    tmp_path: Path, render: Callable[..., Any]
) -> None:
    make_clip(tmp_path / "black.mp4", width=96, height=160, fps=10, seconds=1.6, solid=(0, 0, 0))
    _, out = render(highlight_job())
    f = out.frames
    # Given timings: AA until 0.3 s, then BB.
    assert is_red(text_colour(f[2], left=True)) and is_white(text_colour(f[2], left=False))
    assert is_white(text_colour(f[3], left=True)) and is_red(text_colour(f[3], left=False))
    # Spread by length over 0.8 s: A for 0.2 s (frames 8, 9), then BBB.
    assert is_red(text_colour(f[9], left=True)) and is_white(text_colour(f[9], left=False))
    assert is_white(text_colour(f[10], left=True)) and is_red(text_colour(f[10], left=False))


def test_each_page_is_drawn_once_and_a_highlight_is_a_small_sprite(tmp_path: Path) -> None:
    make_clip(tmp_path / "black.mp4", width=96, height=160, fps=10, seconds=1.6, audio_hz=None)
    comp = prepare(parse_job(highlight_job()), Inputs(tmp_path))
    layer = comp.captions
    assert layer is not None and len(layer.pages) == 2
    arr = np.zeros((240, 96), np.uint8)
    for n in range(comp.frames):
        layer.draw(planes_of(arr, 96, 160), comp.time_of(n))
    assert layer.draws == 2  # one drawing per cue for 16 frames
    drawn = layer._drawn
    assert drawn is not None and len(drawn.words) == 2  # A and BBB, each drawn once
    base = drawn.base.width * drawn.base.height
    assert all(s.width * s.height < base * 0.8 for s in drawn.words.values())


def test_a_long_cue_is_paged_by_max_lines(tmp_path: Path) -> None:
    grey_clip(tmp_path, 2.0)
    words = "one two three four five six seven eight"
    spec = captions(cues=[{"start": 0.0, "end": 2.0, "text": words}], max_lines=1, size=16)
    comp = prepare(parse_job(job_dict([{"uri": "grey.mp4"}], captions=spec)), Inputs(tmp_path))
    assert comp.captions is not None
    pages = comp.captions.pages
    assert len(pages) >= 3 and all(len(p.layout.lines) == 1 for p in pages)
    assert " ".join(p.layout.lines[0] for p in pages) == words
    assert pages[0].start == 0 and pages[-1].end == 2.0
    assert all(a.end == b.start for a, b in itertools.pairwise(pages))
    two = prepare(
        parse_job(job_dict([{"uri": "grey.mp4"}], captions={**spec, "max_lines": 2})),
        Inputs(tmp_path),
    )
    assert two.captions is not None and len(two.captions.pages) < len(pages)


def test_srt_and_webvtt_parse_to_the_same_cues() -> None:
    srt = parse_captions(SRT.encode(), "captions.uri")
    vtt = parse_captions(("\ufeff" + VTT).encode(), "captions.uri")
    assert [(c.start, c.end) for c in srt] == [(0.2, 0.5), (0.7, 0.9)]
    assert [(c.start, c.end) for c in vtt] == [(0.2, 0.5), (0.7, 0.9)]
    assert [c.text for c in vtt] == ["Hi there & you", "Bye now"]
    crlf = parse_captions(SRT.replace("\n", "\r\n").encode(), "x")
    assert [c.text for c in crlf] == ["Hi there", "Bye"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (SRT.replace("00:00:00,700 -->", "00:00:0x,700 -->"), "line 6: .* is not a timing line"),
        (SRT.replace("00:00:00,900", "00:00:00,600"), "line 6: the cue ends .* before it starts"),
        (SRT.replace("2\n00", "two\n00"), "line 5: expected a cue number"),
        (VTT.replace("00:00.500", "00:00,500"), "line 7: .* is not a timing line"),
        (VTT.replace("00:00:00.900", "00:00:00.100"), "line 10: the cue ends"),
        ("Hello, this is a letter\nnot captions\n", "line 1: not an SRT or WebVTT file"),
        ("<html><body>nope</body></html>", "line 1: not an SRT or WebVTT file"),
        ("WEBVTT\n\n", "holds no cues"),
        ("", "empty"),
    ],
)
def test_malformed_caption_files_name_the_line(content: str, message: str) -> None:
    with pytest.raises(InvalidJob, match=message) as err:
        parse_captions(content.encode(), "captions.uri")
    assert err.value.code == "invalid_job" and str(err.value).startswith("captions.uri: ")


def test_a_binary_file_is_not_captions() -> None:
    with pytest.raises(InvalidJob, match="line 2: not UTF-8 text"):
        parse_captions(b"1\n\xff\xfe\x00binary", "captions.uri")


def test_a_bad_caption_file_fails_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "subs.srt").write_text(SRT.replace(" --> 00:00:00,500", ""))
    # The clip does not even exist: the caption file is read first.
    job = parse_job(job_dict([{"uri": "missing.mp4"}], captions=captions(uri="subs.srt")))
    with pytest.raises(InvalidJob, match=r"captions.uri: line 2"):
        render_job(job, base_dir=tmp_path, output=tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"cues": [{"start": 2, "end": 1, "text": "x"}]}, "$.captions.cues[0]"),
        ({"cues": []}, "$.captions.cues"),
        ({"uri": "a.srt", "cues": [{"start": 0, "end": 1, "text": "x"}]}, "$.captions"),
        ({}, "$.captions"),
        ({"uri": "a.srt", "style": "karaoke"}, "$.captions.style"),
        ({"uri": "a.srt", "max_lines": 0}, "$.captions.max_lines"),
        (
            {
                "cues": [
                    {
                        "start": 0,
                        "end": 1,
                        "text": "a b",
                        "words": [{"start": 0, "end": 1, "text": "a"}],
                    }
                ]
            },
            "$.captions.cues[0]",
        ),
        (
            {
                "cues": [
                    {
                        "start": 0,
                        "end": 1,
                        "text": "a",
                        "words": [{"start": 0, "end": 2, "text": "a"}],
                    }
                ]
            },
            "$.captions.cues[0]",
        ),
    ],
)
def test_bad_captions_are_refused_with_their_path(spec: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidJob) as err:
        parse_job(job_dict([{"uri": "a.mp4"}], captions=captions(**spec)))
    assert str(err.value).startswith(path + ":") or f"; {path}:" in str(err.value)


def test_the_caption_file_and_font_are_inputs_to_fetch() -> None:
    spec = captions(uri="s3://b/subs.vtt", font_uri="s3://b/f.ttf")
    spec.pop("font")
    job = parse_job(job_dict([{"uri": "s3://b/a.mp4"}], captions=spec))
    refs = {(r.uri, r.label, r.font) for r in job.inputs()}
    assert ("s3://b/subs.vtt", "captions.uri", False) in refs
    assert ("s3://b/f.ttf", "captions.font_uri", True) in refs


def test_a_caption_too_wide_for_the_frame_is_named(tmp_path: Path) -> None:
    grey_clip(tmp_path, 1.0)
    spec = captions(cues=[{"start": 0, "end": 1, "text": "Wide"}], size=200)
    with pytest.raises(GpuWorkerError) as err:
        prepare(parse_job(job_dict([{"uri": "grey.mp4"}], captions=spec)), Inputs(tmp_path))
    assert err.value.code == "text_overflow" and "captions.cues[0]" in str(err.value)


def test_webvtt_inline_timestamps_are_word_timings() -> None:
    vtt = (
        "WEBVTT\n\n00:00.000 --> 00:02.000\n"
        "<c>Hello</c> big <00:00.500>wor<00:01.000>ld <00:01.500><b>again</b>\n"
    )
    (cue,) = parse_captions(vtt.encode(), "captions.uri")
    assert cue.text == "Hello big world again" and cue.words is not None
    # Hello and big share 0-0.5 s by length; world starts at 0.5 s and lasts to again's 1.5 s.
    assert [(w.text, w.start, w.end) for w in cue.words] == [
        ("Hello", 0.0, 0.3125),
        ("big", 0.3125, 0.5),
        ("world", 0.5, 1.5),
        ("again", 1.5, 2.0),
    ]
    late = vtt.replace("<00:01.500>", "<00:03.000>")
    with pytest.raises(InvalidJob, match=r"line 3: the inline time <00:03.000> is outside"):
        parse_captions(late.encode(), "captions.uri")


def test_validate_reads_a_local_caption_file(tmp_path: Path) -> None:
    (tmp_path / "subs.srt").write_text(SRT.replace("00:00:00,700 -->", "00:00:0x,700 -->"))
    job = job_dict([{"uri": "a.mp4"}], captions=captions(uri="subs.srt", font="Nope"))
    (tmp_path / "job.json").write_text(json.dumps(job))
    proc = run_cli("validate", str(tmp_path / "job.json"))
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [
        "$.captions.uri: invalid_job: captions.uri: line 6: '00:00:0x,700 --> 00:00:00,900' "
        "is not a timing line (HH:MM:SS,mmm --> HH:MM:SS,mmm)",
        "$.captions.font: font_not_found: " + proc.stdout.splitlines()[1].split(": ", 2)[2],
    ]
    assert "Montserrat" in proc.stdout.splitlines()[1]


def test_the_captioned_example_is_valid(tmp_path: Path) -> None:
    proc = run_cli("validate", str(ROOT / "examples" / "captioned-reel.json"))
    assert proc.returncode == 0, proc.stdout
    cues = read_captions(ROOT / "examples" / "captions.vtt", "captions.uri", Limits())
    assert len(cues) == 3 and cues[0].words is not None and cues[2].words is None


def test_captions_font_uri_is_checked_before_any_clip(tmp_path: Path) -> None:
    arabic = ROOT / "tests" / "fonts" / "NotoSansArabic_400Regular.ttf"
    grey_clip(tmp_path, 1.0)
    spec = {"cues": [{"start": 0, "end": 1, "text": "مرحبا"}], "font_uri": str(arabic), "size": 14}
    comp = prepare(parse_job(job_dict([{"uri": "grey.mp4"}], captions=spec)), Inputs(tmp_path))
    assert comp.captions is not None and len(comp.captions.pages) == 1
    (tmp_path / "bad.ttf").write_text("not a font" * 20)
    bad = {**spec, "font_uri": "bad.ttf"}
    with pytest.raises(GpuWorkerError) as err:  # the clip is missing too: the font fails first
        prepare(parse_job(job_dict([{"uri": "none.mp4"}], captions=bad)), Inputs(tmp_path))
    assert err.value.code == "input_unreadable" and "bad.ttf" in str(err.value)
