"""End-to-end renders checked as a viewer would: frames, durations, pixels, sound."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from helpers import job_dict, read_output
from PIL import Image

from examples.samples import make_clip, make_image, make_music
from gpu_worker.errors import GpuWorkerError, InternalError
from gpu_worker.job import parse_job
from gpu_worker.render.encoder import add_video_stream
from gpu_worker.render.pipeline import Inputs, prepare, preview_frame, render_job

RED, GREEN, BLUE, BLACK, GREY = (
    (220, 30, 30),
    (30, 200, 30),
    (30, 30, 220),
    (0, 0, 0),
    (128, 128, 128),
)


def solid(path: Path, color: tuple[int, int, int], seconds: float = 1.0, **kw: Any) -> Path:
    kw.setdefault("width", 96)
    kw.setdefault("height", 160)
    kw.setdefault("fps", 10)
    kw.setdefault("audio_hz", None)
    return make_clip(path, solid=color, seconds=seconds, **kw)


def mean_rgb(frame: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    if box is not None:
        x0, y0, x1, y1 = box
        frame = frame[y0:y1, x0:x1]
    return frame.reshape(-1, 3).mean(axis=0)


def close(rgb: np.ndarray, expected: tuple[int, int, int], tol: float = 12) -> bool:
    return bool(np.all(np.abs(rgb - np.array(expected)) <= tol))


def test_frames_duration_and_format(tmp_path: Path, render: Callable[..., Any]) -> None:
    solid(tmp_path / "a.mp4", RED, 1.0)
    solid(tmp_path / "b.mp4", BLUE, 1.5)
    result, out = render(job_dict([{"uri": "a.mp4"}, {"uri": "b.mp4"}]))
    assert len(out.frames) == 25 == result.frames
    assert out.times[:3] == pytest.approx([0.0, 0.1, 0.2])
    assert out.duration == pytest.approx(2.5, abs=0.05)
    assert out.video_codec == "h264" and out.profile == "High" and out.pix_fmt == "yuv420p"
    assert out.frames[0].shape == (160, 96, 3)
    assert close(mean_rgb(out.frames[5]), RED) and close(mean_rgb(out.frames[15]), BLUE)
    # Sources without audio still give a (silent) stereo AAC track as long as the video.
    assert out.audio.shape[0] == 2
    assert out.audio.shape[1] / out.audio_rate == pytest.approx(2.5, abs=0.05)
    assert np.abs(out.audio).max() < 1e-3


def test_height_not_a_multiple_of_four_keeps_its_colours(
    tmp_path: Path, render: Callable[..., Any]
) -> None:
    # 162 lines: 81 rows of chroma, which do not fill whole rows of the frame buffer.
    solid(tmp_path / "a.mp4", RED, 0.5)
    solid(tmp_path / "b.mp4", BLUE, 0.5)
    crossfade = {"type": "crossfade", "duration": 0.2}
    clips = [{"uri": "a.mp4"}, {"uri": "b.mp4", "transition": crossfade}]
    _, out = render(job_dict(clips, output={"height": 162}))
    assert out.frames[0].shape == (162, 96, 3)
    assert close(mean_rgb(out.frames[1]), RED) and close(mean_rgb(out.frames[-1]), BLUE)
    middle = mean_rgb(out.frames[4])  # half-way through the crossfade
    assert 60 < middle[0] < 190 and 60 < middle[2] < 190
    assert close(mean_rgb(out.frames[1], (0, 150, 96, 162)), RED)  # the bottom rows too


def test_output_tagged_bt709_and_faststart(tmp_path: Path, render: Callable[..., Any]) -> None:
    solid(tmp_path / "a.mp4", GREY, 0.5)
    result, out = render(job_dict([{"uri": "a.mp4"}]))
    data = result.output.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "moov must come first (+faststart)"
    assert int(out.colorspace) == 1  # BT.709


def test_crossfade_middle_frame_mixes_both(tmp_path: Path, render: Callable[..., Any]) -> None:
    solid(tmp_path / "a.mp4", RED, 2.0)
    solid(tmp_path / "b.mp4", BLUE, 2.0)
    clips = [
        {"uri": "a.mp4"},
        {"uri": "b.mp4", "transition": {"type": "crossfade", "duration": 1.0}},
    ]
    result, out = render(job_dict(clips))
    assert result.duration == pytest.approx(3.0)  # overlapped by the crossfade
    middle = mean_rgb(out.frames[15])  # t = 1.5 s, half-way through the crossfade
    expected = tuple((np.array(RED) + np.array(BLUE)) / 2)
    assert close(middle, expected, tol=15)  # type: ignore[arg-type]
    assert close(mean_rgb(out.frames[9]), RED, tol=30)
    assert close(mean_rgb(out.frames[25]), BLUE)


def test_fade_through_black(tmp_path: Path, render: Callable[..., Any]) -> None:
    solid(tmp_path / "a.mp4", GREY, 1.0)
    solid(tmp_path / "b.mp4", GREY, 1.0)
    clips = [
        {"uri": "a.mp4"},
        {"uri": "b.mp4", "transition": {"type": "fade_black", "duration": 1.0}},
    ]
    result, out = render(job_dict(clips))
    assert result.duration == pytest.approx(2.0)  # no overlap
    lum = [mean_rgb(f).mean() for f in out.frames]
    assert lum[10] < 12  # the cut itself is black
    assert lum[7] < lum[3] and lum[13] < lum[17]  # darkening before, brightening after
    assert lum[0] == pytest.approx(128, abs=6) and lum[19] == pytest.approx(128, abs=6)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_phone_clip_is_shown_upright(
    tmp_path: Path, render: Callable[..., Any], rotation: int
) -> None:
    # Given a phone clip whose stored pixels are turned, with a display matrix to turn back
    make_clip(
        tmp_path / "phone.mp4",
        width=96,
        height=160,
        fps=10,
        seconds=0.5,
        marker=True,
        rotation=rotation,
        audio_hz=None,
    )
    _, out = render(job_dict([{"uri": "phone.mp4", "fit": "contain"}]))
    frame = out.frames[2]
    # Then the red quarter is top-left, as it was filmed
    assert close(mean_rgb(frame, (5, 5, 40, 70)), (255, 0, 0), tol=30)
    assert close(mean_rgb(frame, (60, 100, 90, 155)), (0, 0, 255), tol=30)
    # And nothing tells a player to turn the upright picture again: the fitted frames, which
    # reach the encoder as they are when nothing is drawn, still carry the source's matrix
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert next(container.decode(video=0)).rotation == 0


def test_fit_modes(tmp_path: Path, render: Callable[..., Any]) -> None:
    # A landscape red source into a portrait frame.
    solid(tmp_path / "wide.mp4", RED, 0.5, width=160, height=90)
    _, cover = render(job_dict([{"uri": "wide.mp4", "fit": "cover"}]))
    assert close(mean_rgb(cover.frames[2], (0, 0, 96, 20)), RED)  # fills to the top edge
    _, contain = render(job_dict([{"uri": "wide.mp4", "fit": "contain"}]))
    assert close(mean_rgb(contain.frames[2], (0, 0, 96, 20)), BLACK, tol=6)  # letterbox
    assert close(mean_rgb(contain.frames[2], (0, 70, 96, 90)), RED)
    _, blur = render(job_dict([{"uri": "wide.mp4", "fit": "blur"}]))
    top = mean_rgb(blur.frames[2], (0, 0, 96, 20))
    assert top[0] > 120 and close(mean_rgb(blur.frames[2], (0, 70, 96, 90)), RED)


def test_frames_placed_by_timestamp_vfr(tmp_path: Path, render: Callable[..., Any]) -> None:
    # Given a variable-frame-rate clip: red at 0 s, green at 0.5 s, blue from 0.6 s to 1 s
    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w") as container:
        stream = add_video_stream(container, "libx264", 96, 160, 10)
        stream.time_base = Fraction(1, 1000)
        for t, color in [(0.0, RED), (0.5, GREEN), (0.6, BLUE), (0.9, BLUE)]:
            rgb = np.empty((160, 96, 3), np.uint8)
            rgb[...] = color
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = round(t * 1000)
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    _, out = render(job_dict([{"uri": "vfr.mkv", "duration": 1.0}]))
    colors = [mean_rgb(f) for f in out.frames]
    assert len(colors) == 10
    assert all(close(c, RED, 25) for c in colors[0:5])
    assert close(colors[5], GREEN, 25)
    assert all(close(c, BLUE, 25) for c in colors[6:10])


def test_60fps_source_keeps_time(tmp_path: Path, render: Callable[..., Any]) -> None:
    # Given a 60 fps clip that turns from red to blue at 0.5 s
    times = [i / 60 for i in range(60)]
    path = tmp_path / "sixty.mp4"
    make_clip(path, width=96, height=160, fps=60, frame_times=times, solid=RED, audio_hz=None)
    blue = tmp_path / "blue60.mp4"
    make_clip(blue, width=96, height=160, fps=60, seconds=0.5, solid=BLUE, audio_hz=None)
    _, out = render(job_dict([{"uri": "sixty.mp4", "duration": 0.5}, {"uri": "blue60.mp4"}]))
    assert len(out.frames) == 10
    assert close(mean_rgb(out.frames[4]), RED) and close(mean_rgb(out.frames[5]), BLUE)


@pytest.mark.parametrize(
    ("kind", "kw"),
    [
        ("odd size", {"width": 97, "height": 161, "pix_fmt": "yuv444p"}),
        ("10-bit", {"pix_fmt": "yuv420p10le"}),
        ("no audio, trimmed", {"audio_hz": None}),
    ],
)
def test_awkward_sources(
    tmp_path: Path, render: Callable[..., Any], kind: str, kw: dict[str, Any]
) -> None:
    kw.setdefault("width", 96)
    kw.setdefault("height", 160)
    make_clip(tmp_path / "src.mp4", fps=25, seconds=1.2, solid=GREEN, **kw)
    _, out = render(job_dict([{"uri": "src.mp4", "trim_start": 0.2, "volume": 1.0}]))
    assert len(out.frames) == 10, kind
    assert close(mean_rgb(out.frames[5]), GREEN, 20), kind


def test_still_image_clip(tmp_path: Path, render: Callable[..., Any]) -> None:
    make_image(tmp_path / "room.jpg", width=300, height=200)
    make_image(tmp_path / "room.png", width=300, height=200)
    result, out = render(
        job_dict([{"uri": "room.jpg", "duration": 1.0}, {"uri": "room.png", "duration": 0.5}])
    )
    assert len(out.frames) == 15 and result.duration == pytest.approx(1.5)


def test_music_trimmed_looped_and_faded(tmp_path: Path, render: Callable[..., Any]) -> None:
    solid(tmp_path / "a.mp4", GREY, 3.0)
    make_music(tmp_path / "m.m4a", seconds=1.2, amplitude=0.5)
    audio = {"uri": "m.m4a", "fade_in": 0.5, "fade_out": 0.5, "loop": True}
    _, out = render(job_dict([{"uri": "a.mp4"}], audio=audio))
    rate = out.audio_rate
    assert out.audio.shape[1] / rate == pytest.approx(3.0, abs=0.05)

    def rms(t0: float, t1: float) -> float:
        return float(np.sqrt(np.mean(out.audio[:, int(t0 * rate) : int(t1 * rate)] ** 2)))

    full = rms(1.0, 1.15)
    assert full == pytest.approx(0.5 / np.sqrt(2), rel=0.15)
    assert rms(0.0, 0.05) < 0.2 * full  # faded in
    assert rms(2.95, 3.0) < 0.2 * full  # faded out
    assert rms(2.0, 2.3) == pytest.approx(full, rel=0.15)  # still playing: looped
    # Not looped: silence after the music ends.
    _, once = render(job_dict([{"uri": "a.mp4"}], audio={"uri": "m.m4a", "loop": False}))
    tail = once.audio[:, int(1.6 * rate) : int(2.5 * rate)]
    assert np.abs(tail).max() < 0.01


def test_clip_audio_mixed_only_when_volume(tmp_path: Path, render: Callable[..., Any]) -> None:
    make_clip(
        tmp_path / "loud.mp4", width=96, height=160, fps=10, seconds=1.0, solid=GREY, audio_hz=440
    )
    _, muted = render(job_dict([{"uri": "loud.mp4"}]))
    assert np.abs(muted.audio).max() < 1e-3  # volume defaults to 0
    _, heard = render(job_dict([{"uri": "loud.mp4", "volume": 1.0}]))
    assert np.sqrt(np.mean(heard.audio[:, 5000:40000] ** 2)) > 0.15


def text_job(tmp_path: Path, text: dict[str, Any], seconds: float = 1.0) -> dict[str, Any]:
    solid(tmp_path / "black.mp4", BLACK, seconds)
    base = {"text": "HELLO", "font": "Roboto", "size": 30, "color": "#FFFFFF"}
    base.update(text)
    return job_dict([{"uri": "black.mp4"}], texts=[base], output={"width": 160, "height": 96})


def test_text_pixels_where_placed_and_nowhere_else(
    tmp_path: Path, render: Callable[..., Any]
) -> None:
    job = text_job(tmp_path, {"x": 0.0, "y": 0.0, "anchor": "top-left", "size": 24})
    _, out = render(job)
    frame = out.frames[5].astype(int).sum(axis=2)
    ys, xs = np.nonzero(frame > 200)
    assert len(xs) > 50
    assert xs.max() < 90 and ys.max() < 30  # only in the top-left corner
    assert frame[40:, :].max() < 60 and frame[:, 100:].max() < 60


def test_text_fades_in(tmp_path: Path, render: Callable[..., Any]) -> None:
    job = text_job(tmp_path, {"start": 0.2, "animation": {"in": "fade", "duration": 0.4}})
    _, out = render(job)
    peak = [int(f.max()) for f in out.frames]
    assert peak[0] < 40 and peak[1] < 40  # before start
    assert 60 < peak[4] < 200  # half-way through the fade
    assert peak[7] > 230


def test_slide_up_moves_text(tmp_path: Path, render: Callable[..., Any]) -> None:
    job = text_job(tmp_path, {"animation": {"in": "slide_up", "duration": 0.8}})
    _, out = render(job)

    def centre_row(frame: np.ndarray) -> float:
        ys, _ = np.nonzero(frame.sum(axis=2) > 150)
        return float(ys.mean())

    assert centre_row(out.frames[2]) > centre_row(out.frames[9]) + 1


def test_text_end_hides_it(tmp_path: Path, render: Callable[..., Any]) -> None:
    _, out = render(text_job(tmp_path, {"start": 0.0, "end": 0.5}))
    assert out.frames[2].max() > 200 and out.frames[7].max() < 40


def test_preview_equals_rendered_frame(tmp_path: Path, render: Callable[..., Any]) -> None:
    make_clip(tmp_path / "a.mp4", width=96, height=160, fps=10, seconds=1.0, hue=0.2, audio_hz=None)
    make_clip(tmp_path / "b.mp4", width=96, height=160, fps=30, seconds=1.0, hue=0.7, audio_hz=None)
    data = job_dict(
        [
            {"uri": "a.mp4"},
            {
                "uri": "b.mp4",
                "trim_start": 0.2,
                "transition": {"type": "crossfade", "duration": 0.4},
            },
        ],
        texts=[
            {
                "text": "Été",
                "font": "Montserrat",
                "size": 28,
                "y": 0.3,
                "animation": {"in": "fade", "duration": 0.5},
            }
        ],
    )
    _, out = render(data)
    job = parse_job(data)
    for at, index in [(0.35, 3), (0.8, 8), (1.2, 12)]:
        image = np.asarray(preview_frame(job, at, base_dir=tmp_path), dtype=np.int16)
        diff = np.abs(image - out.frames[index].astype(np.int16)).mean()
        assert diff < 4, f"preview at {at} s differs from frame {index} by {diff:.1f}"


def test_poster_written_beside_video(tmp_path: Path, render: Callable[..., Any]) -> None:
    job = text_job(tmp_path, {"start": 0.3, "animation": {"in": "fade", "duration": 0.3}})
    job["output"]["poster"] = True
    result, _ = render(job)
    assert result.poster == result.output.with_suffix(".jpg")
    poster = np.asarray(Image.open(result.poster))
    assert poster.shape == (96, 160, 3) and poster.max() > 200  # shows the text, fully


def test_failed_render_leaves_nothing(tmp_path: Path) -> None:
    solid(tmp_path / "a.mp4", GREY, 1.0)
    job = parse_job(job_dict([{"uri": "a.mp4"}], output={"poster": True}))
    out = tmp_path / "final" / "video.mp4"

    def crash(done: int, total: int) -> None:
        if done == 5:
            raise InternalError("worker stopped")

    with pytest.raises(InternalError):
        render_job(job, base_dir=tmp_path, output=out, progress=crash)
    assert list(out.parent.iterdir()) == []
    # A later successful render writes both files.
    render_job(job, base_dir=tmp_path, output=out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["video.jpg", "video.mp4"]
    assert len(read_output(out).frames) == 10


def test_texts_rasterised_once_per_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gpu_worker.render.pipeline as render_module

    calls: list[int] = []
    real = render_module.render_text

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(render_module, "render_text", counting)
    job = parse_job(text_job(tmp_path, {"animation": {"in": "slide_up", "out": "fade"}}, 2.0))
    render_job(job, base_dir=tmp_path, output=tmp_path / "o.mp4")
    assert len(calls) == 1


def test_font_uri_renders_and_bad_font_fails(tmp_path: Path, render: Callable[..., Any]) -> None:
    import shutil

    from gpu_worker.errors import InputUnreadable

    solid(tmp_path / "black.mp4", BLACK, 0.5)
    shutil.copy(
        Path(__file__).parent / "fonts" / "NotoSansArabic_400Regular.ttf", tmp_path / "ar.ttf"
    )
    text = {"text": "مرحبا", "font_uri": "ar.ttf", "size": 30}
    _, out = render(job_dict([{"uri": "black.mp4"}], texts=[text]))
    assert out.frames[2].max() > 200
    (tmp_path / "bad.ttf").write_bytes(b"\0" * 100)
    with pytest.raises(InputUnreadable):
        render(job_dict([{"uri": "black.mp4"}], texts=[{**text, "font_uri": "bad.ttf"}]))


@pytest.mark.parametrize("brightness", [0.999, 0.75, 0.5, 0.01])
def test_darken_fades_towards_black_without_wrapping(brightness: float) -> None:
    from gpu_worker.render.composite import darken

    luma = np.array([[16, 128, 235, 255]], np.uint8)
    chroma = np.array([[0, 128, 240, 255]], np.uint8)
    got_y = darken(luma, brightness, 16).astype(float)
    got_c = darken(chroma, brightness, 128).astype(float)
    assert np.abs(got_y - (16 + (luma - 16.0) * brightness)).max() <= 1.5
    assert np.abs(got_c - (128 + (chroma - 128.0) * brightness)).max() <= 1.5


def test_inputs_probed_together_fail_in_job_order(tmp_path: Path) -> None:
    """Inputs are probed several at a time; the error is still the first bad one's."""
    solid(tmp_path / "a.mp4", RED, 1.0)
    (tmp_path / "junk.mp4").write_bytes(bytes(range(256)) * 40)
    clips = [{"uri": "a.mp4"}, {"uri": "junk.mp4"}, {"uri": "gone.mp4"}, {"uri": "https://x/y"}]
    for _ in range(3):
        with pytest.raises(GpuWorkerError) as failed:
            prepare(parse_job(job_dict(clips)), Inputs(tmp_path))
        assert failed.value.code == "input_unreadable"
        assert failed.value.message.startswith("junk.mp4")
    with pytest.raises(GpuWorkerError) as failed:
        prepare(parse_job(job_dict(clips[2:])), Inputs(tmp_path))
    assert failed.value.code == "input_not_found"
    with pytest.raises(GpuWorkerError) as failed:
        prepare(parse_job(job_dict(clips[3:] + clips[:1])), Inputs(tmp_path))
    assert failed.value.code == "unsupported_input"


def test_one_file_used_many_times_is_probed_once(tmp_path: Path) -> None:
    from gpu_worker.render.stages import StageClock

    solid(tmp_path / "a.mp4", RED, 1.0)
    solid(tmp_path / "b.mp4", BLUE, 1.0)
    clips = [{"uri": "a.mp4", "duration": 0.3}, {"uri": "b.mp4", "duration": 0.3}] * 5
    clock = StageClock()
    records: list[Any] = []
    clock.listeners.append(records.append)
    result = render_job(
        parse_job(job_dict(clips)), base_dir=tmp_path, output=tmp_path / "o.mp4", clock=clock
    )
    (probe,) = [r for r in records if r.name == "probe"]
    assert probe.attributes["inputs"] == 2
    asked: list[str] = []

    class Counting(Inputs):
        def probe(self, uri: str, label: str, limits: Any) -> Any:
            asked.append(uri)
            return super().probe(uri, label, limits)

    prepare(parse_job(job_dict(clips)), Counting(tmp_path))
    assert sorted(asked) == ["a.mp4", "b.mp4"]
    assert result.input_bytes == sum((tmp_path / n).stat().st_size for n in ("a.mp4", "b.mp4"))
    out = read_output(tmp_path / "o.mp4")
    assert close(mean_rgb(out.frames[1]), RED) and close(mean_rgb(out.frames[4]), BLUE)
    assert close(mean_rgb(out.frames[28]), BLUE) and len(out.frames) == 30
