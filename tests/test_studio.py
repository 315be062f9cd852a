"""The studio's server: frames equal to `preview` however they are asked for, the validate
messages, saving, rendering, and what a request without the token or from elsewhere gets."""

from __future__ import annotations

import http.client
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import job_dict, read_output, run_cli
from PIL import Image

from examples.samples import make_clip
from gpu_worker.job import parse_job
from gpu_worker.render.pipeline import preview_frame
from gpu_worker.studio.server import StudioServer
from gpu_worker.studio.session import Studio


def studio_job(folder: Path) -> dict[str, Any]:
    """Two tiny clips crossfading (1.4 s in all), a logo and a text fading in."""
    make_clip(folder / "media" / "a.mp4", width=96, height=160, fps=10, seconds=1.0, hue=0.2)
    logo = Image.new("RGBA", (40, 20), (255, 40, 40, 255))
    logo.paste((255, 255, 255, 128), (10, 5, 30, 15))
    logo.save(folder / "media" / "logo.png")
    make_clip(
        folder / "media" / "b.mp4", width=96, height=160, fps=30, seconds=1.0, hue=0.7,
        audio_hz=None,
    )  # fmt: skip
    return job_dict(
        [
            {"uri": "media/a.mp4"},
            {
                "uri": "media/b.mp4",
                "trim_start": 0.2,
                "transition": {"type": "crossfade", "duration": 0.4},
            },
        ],
        overlays=[{"uri": "media/logo.png", "x": 0.05, "y": 0.05, "anchor": "top-left"}],
        texts=[
            {
                "text": "Été",
                "font": "Montserrat",
                "size": 28,
                "y": 0.3,
                "start": 0.2,
                "animation": {"in": "fade", "duration": 0.5},
            }
        ],
    )


def pixels(bmp_or_image: bytes | Image.Image) -> np.ndarray:
    image = (
        Image.open(io.BytesIO(bmp_or_image)) if isinstance(bmp_or_image, bytes) else bmp_or_image
    )
    return np.asarray(image.convert("RGB"))


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(studio_job(tmp_path), indent=2))
    return path


@pytest.fixture
def server(job_file: Path) -> Iterator[StudioServer]:
    studio = Studio(job_file)
    srv = StudioServer(studio, port=0)
    srv.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        studio.close()


def request(
    srv: StudioServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request to the studio; ``token=""`` sends the right one, None none at all."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    sent = {"Host": f"127.0.0.1:{srv.port}"}
    if token is not None:
        sent["X-Studio-Token"] = token or srv.token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    sent.update(headers or {})
    conn.request(method, path, body=data, headers=sent)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), payload


def test_frames_from_the_caches_are_the_preview_frames(job_file: Path) -> None:
    # Given a studio on a job, asked for frames forwards, backwards, inside the crossfade and
    # again at times already shown
    studio = Studio(job_file)
    text = job_file.read_text()
    job = parse_job(json.loads(text))
    times = [0.0, 0.3, 0.35, 0.7, 0.75, 0.9, 1.2, 0.1, 1.3, 0.7, 1.35]
    try:
        for at in times:
            # Then each frame is, pixel for pixel, the one `gpu-worker preview` gives
            shown = studio.frame(text, at)
            expected = pixels(preview_frame(job, at, base_dir=job_file.parent))
            assert np.array_equal(pixels(shown.image), expected), f"at {at} s"
            assert shown.index == int(at * 10 + 1e-6)
        # And the inputs were probed once, the text drawn once, and decoders were reused
        assert studio.inputs.stats == {"probes": 2, "sprites": 1, "overlays": 1}
        assert studio.readers.opened < len(times)
    finally:
        studio.close()


def test_a_media_file_changed_on_disk_shows_in_the_next_frame(job_file: Path) -> None:
    studio = Studio(job_file)
    text = job_file.read_text()
    try:
        before = pixels(studio.frame(text, 0.3).image)
        time.sleep(0.01)
        make_clip(
            job_file.parent / "media" / "a.mp4", width=96, height=160, fps=10, seconds=1.0,
            hue=0.9,
        )  # fmt: skip
        after = pixels(studio.frame(text, 0.3).image)
        expected = pixels(preview_frame(parse_job(json.loads(text)), 0.3, base_dir=job_file.parent))
        assert not np.array_equal(before, after)
        assert np.array_equal(after, expected)
    finally:
        studio.close()


def test_the_page_and_every_call_need_the_token_and_the_host(server: StudioServer) -> None:
    assert server.server_address[0] == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{server.port}/?token={server.token}"
    status, _, body = request(server, "GET", "/", token=None)
    assert status == 403 and b"token" in body
    assert request(server, "GET", "/api/job", token="wrong")[0] == 403
    assert request(server, "GET", f"/?token={server.token}", token=None)[0] == 200
    # A page of another site, even one resolving to 127.0.0.1, names its own host.
    evil = {"Host": f"evil.example:{server.port}"}
    assert request(server, "GET", "/api/job", headers=evil)[0] == 403
    other = {"Origin": "http://evil.example"}
    assert request(server, "POST", "/api/validate", {"text": "{}"}, headers=other)[0] == 403
    form = {"Content-Type": "text/plain"}
    assert request(server, "POST", "/api/validate", {"text": "{}"}, headers=form)[0] == 415
    # The page's files are the package's own, they name nothing elsewhere, and nothing else
    # is served.
    status, headers, body = request(server, "GET", "/static/studio.js", token=None)
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    for name in ("studio.js", "studio.css", "index.html"):
        assert b"://" not in server.static[name], name
    for path in ("/static/../session.py", "/static/%2e%2e/session.py", "/job.json", "/static/"):
        assert request(server, "GET", path)[0] == 404, path


def test_validate_gives_the_messages_of_the_command_line(
    server: StudioServer, job_file: Path
) -> None:
    bad = json.loads(job_file.read_text())
    bad["output"]["width"] = 97
    bad["texts"][0]["size"] = -1
    bad["texts"].append({"text": "नमस्ते", "font": "Roboto", "size": 20})
    for text in (json.dumps(bad), json.dumps({**bad, "texts": bad["texts"][2:]}), "{oops"):
        (job_file.parent / "bad.json").write_text(text)
        cli = run_cli("validate", str(job_file.parent / "bad.json"))
        status, _, body = request(server, "POST", "/api/validate", {"text": text})
        lines = json.loads(body)["problems"]
        assert status == 200 and lines
        assert lines == (cli.stdout.splitlines() or cli.stderr.splitlines()), text
    status, _, body = request(server, "POST", "/api/validate", {"text": job_file.read_text()})
    assert json.loads(body) == {"valid": True, "problems": []}


def test_frame_and_layout_over_http(server: StudioServer, job_file: Path) -> None:
    text = job_file.read_text()
    status, headers, body = request(server, "POST", "/api/frame", {"text": text, "at": 0.5})
    assert status == 200 and headers["Content-Type"] == "image/bmp"
    assert headers["X-Frame-Index"] == "5"
    job = parse_job(json.loads(text))
    assert np.array_equal(pixels(body), pixels(preview_frame(job, 0.5, base_dir=job_file.parent)))
    status, _, body = request(server, "POST", "/api/frame", {"text": text, "at": 9})
    assert status == 422
    assert json.loads(body)["error"].startswith("error invalid_job: --at 9 s is outside the video")
    status, _, body = request(server, "POST", "/api/layout", {"text": text})
    layout = json.loads(body)
    assert (layout["duration"], layout["frames"], layout["fps"]) == (1.4, 14, 10)
    assert [(c["start"], round(c["end"], 3)) for c in layout["clips"]] == [(0.0, 1.0), (0.6, 1.4)]
    assert layout["texts"][0]["start"] == 0.2 and layout["texts"][0]["end"] == 1.4
    # The 40x20 logo's left edge at 0.05 x 96 = 4.8 → 5 px, widened to even pixels 4..46.
    assert layout["overlays"] == [{"index": 0, "start": 0.0, "end": 1.4, "box": [4, 8, 42, 20]}]
    missing = json.loads(text)
    missing["clips"][0]["uri"] = "media/none.mp4"
    status, _, body = request(server, "POST", "/api/layout", {"text": json.dumps(missing)})
    assert status == 422 and json.loads(body)["error"].startswith("error input_not_found")


def test_save_writes_the_job_file_and_refuses_a_stale_base(
    server: StudioServer, job_file: Path
) -> None:
    _, _, body = request(server, "GET", "/api/job")
    loaded = json.loads(body)
    assert loaded["text"] == job_file.read_text() and loaded["name"] == "job.json"
    edited = loaded["text"].replace('"y": 0.3', '"y": 0.6')
    status, _, body = request(server, "POST", "/api/save", {"text": edited, "base": loaded["hash"]})
    assert status == 200 and job_file.read_text() == edited
    # Someone else edits the file: a save from the old base is refused, nothing is written.
    job_file.write_text(edited.replace('"y": 0.6', '"y": 0.7'))
    status, _, body = request(server, "POST", "/api/save", {"text": edited, "base": loaded["hash"]})
    assert status == 409 and json.loads(body)["conflict"] is True
    assert '"y": 0.7' in job_file.read_text()
    status, _, _ = request(server, "POST", "/api/save", {"text": "{not json", "force": True})
    assert status == 422 and '"y": 0.7' in job_file.read_text()
    assert sorted(p.name for p in job_file.parent.iterdir()) == ["job.json", "media"]


def test_render_runs_in_the_background_and_serves_the_video(
    server: StudioServer, job_file: Path
) -> None:
    text = job_file.read_text()
    status, _, body = request(server, "POST", "/api/render", {"text": text})
    assert status == 200 and json.loads(body)["state"] == "running"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        task = json.loads(request(server, "GET", "/api/render")[2])
        if task["state"] != "running":
            break
        time.sleep(0.05)
    assert task["state"] == "done", task
    assert task["done"] == task["total"] == 14
    output = job_file.parent / "out.mp4"  # the job's output.uri, as `gpu-worker render` writes
    assert task["output"] == str(output)
    assert len(read_output(output).frames) == 14
    status, headers, body = request(server, "GET", "/api/video")
    assert status == 200 and body == output.read_bytes()
    status, headers, body = request(server, "GET", "/api/video", headers={"Range": "bytes=10-19"})
    size = output.stat().st_size
    assert status == 206 and headers["Content-Range"] == f"bytes 10-19/{size}"
    assert body == output.read_bytes()[10:20]


def test_studio_command_needs_a_job_file(tmp_path: Path) -> None:
    proc = run_cli("studio", str(tmp_path / "none.json"), "--port", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error invalid_job: no job file at {tmp_path / 'none.json'}"
