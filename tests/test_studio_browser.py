"""The studio page in a real browser (Debian's Chromium through Selenium and the system
chromedriver; nothing is downloaded): it shows the frames `gpu-worker preview` gives where the
timeline is clicked, checks the job as it is typed, moves a text and a bar's end when they are
dragged, saves, and renders and plays the video."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image
from test_studio import studio_job

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

try:
    from selenium import webdriver
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement
except ImportError:  # the test extra brings it
    webdriver = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(
        webdriver is None, reason="selenium is not installed (pip install -e .[test])"
    ),
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="no browser: install Debian's chromium and chromium-driver to run the page test",
    ),
]

# Chromium as the test runs it: no sandbox (CI runs as root), nothing fetched from the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
]

# The shown frame's pixels, read back from the page as RGB (base64).
READ_FRAME = """
const img = document.getElementById("frame");
const canvas = document.createElement("canvas");
canvas.width = img.naturalWidth;
canvas.height = img.naturalHeight;
const ctx = canvas.getContext("2d");
ctx.drawImage(img, 0, 0);
const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
let bin = "";
for (let i = 0; i < rgba.length; i += 4) {
  bin += String.fromCharCode(rgba[i], rgba[i + 1], rgba[i + 2]);
}
return [canvas.width, canvas.height, btoa(bin)];
"""


@pytest.fixture
def studio_url(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``gpu-worker studio JOB.json --port 0`` running, and the URL it printed."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps(studio_job(tmp_path), indent=2))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_worker", "studio", str(job), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        assert first[:1] == ["studio"] and first[1].startswith("http://127.0.0.1:"), first
        yield first[1], job
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the studio stops cleanly
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in [*CHROMIUM_ARGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=str(DRIVER))
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look anything up
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, condition: str, timeout: float = 20.0) -> Any:
    """Poll the page until the JavaScript expression ``condition`` is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {condition};")
        if value:
            return value
        time.sleep(0.03)
    raise AssertionError(f"the page never showed {condition}")


def settle(driver: WebDriver) -> dict[str, Any]:
    """Wait for the page to finish checking and drawing; its state then."""
    wait_for(driver, "window.studio && studio.idle() && studio.state().index !== null")
    state: dict[str, Any] = driver.execute_script("return studio.state();")
    assert state["frameError"] is None, state["frameError"]
    return state


def shown_frame(driver: WebDriver) -> np.ndarray:
    width, height, data = driver.execute_script(READ_FRAME)
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 3)


def previewed(job_text: str, at: float, folder: Path) -> np.ndarray:
    """What ``gpu-worker preview`` writes for this job at ``at`` seconds."""
    job, png = folder / "preview-job.json", folder / "preview.png"
    job.write_text(job_text)
    proc = run_cli("preview", str(job), "--at", repr(at), "-o", str(png))
    assert proc.returncode == 0, proc.stderr
    return np.asarray(Image.open(png).convert("RGB"))


def click_track_at(driver: WebDriver, fraction: float) -> None:
    track = driver.find_element(By.ID, "rulertrack")
    width = track.size["width"]
    ActionChains(driver).move_to_element_with_offset(
        track, round((fraction - 0.5) * width), 0
    ).click().perform()


def drag(driver: WebDriver, element: WebElement, dx: int, dy: int) -> None:
    ActionChains(driver).click_and_hold(element).move_by_offset(dx, dy).release().perform()


def test_the_page_scrubs_edits_saves_and_renders(
    studio_url: tuple[str, Path], browser: WebDriver, tmp_path: Path
) -> None:
    url, job_file = studio_url
    browser.get(url)
    settle(browser)
    assert browser.find_element(By.ID, "name").text == "job.json"
    assert json.loads(browser.find_element(By.ID, "editor").get_attribute("value") or "") == (
        json.loads(job_file.read_text())
    )
    bars = browser.find_elements(By.CSS_SELECTOR, ".bar")
    assert sorted(b.get_attribute("data-kind") for b in bars) == [
        "clip", "clip", "overlay", "text", "transition",
    ]  # fmt: skip

    # Clicking the timeline shows the frame `gpu-worker preview` gives at that time.
    seen = set()
    for fraction in (0.12, 0.55, 0.93):
        click_track_at(browser, fraction)
        state = settle(browser)
        assert abs(state["at"] - fraction * 1.4) <= 0.1 + 1e-6, state
        expected = previewed(state["text"], state["at"], tmp_path)
        assert np.array_equal(shown_frame(browser), expected), f"at {state['at']} s"
        seen.add(state["index"])
    assert len(seen) == 3

    # Dragging the text on the frame moves it: the JSON's x and y follow the pointer.
    box = browser.find_element(By.CSS_SELECTOR, '.box[data-kind="text"][data-index="0"]')
    view = browser.find_element(By.ID, "viewport").size
    drag(browser, box, 20, 40)
    state = settle(browser)
    text = json.loads(state["text"])["texts"][0]
    assert text["x"] == pytest.approx(0.5 + 20 / view["width"], abs=0.01)
    assert text["y"] == pytest.approx(0.3 + 40 / view["height"], abs=0.01)
    assert np.array_equal(shown_frame(browser), previewed(state["text"], state["at"], tmp_path))

    # Dragging the left end of the text's bar moves its start.
    handle = browser.find_element(By.CSS_SELECTOR, '.bar.text[data-index="0"] .handle.l')
    track = browser.find_element(By.ID, "rulertrack").size["width"]
    drag(browser, handle, 60, 0)
    state = settle(browser)
    start = json.loads(state["text"])["texts"][0]["start"]
    assert start == pytest.approx(0.2 + 60 / track * 1.4, abs=0.03)

    # Dragging the right ends of the crossfade's and the first clip's bars: their lengths.
    drag(browser, browser.find_element(By.CSS_SELECTOR, ".bar.transition .handle.r"), 40, 0)
    state = settle(browser)
    crossfade = json.loads(state["text"])["clips"][1]["transition"]["duration"]
    assert crossfade == pytest.approx(0.4 + 40 / track * 1.4, abs=0.03)
    handle = browser.find_element(By.CSS_SELECTOR, '.bar.clip[data-index="0"] .handle.r')
    drag(browser, handle, -50, 0)
    state = settle(browser)
    assert json.loads(state["text"])["clips"][0]["duration"] == pytest.approx(
        1.0 - 50 / track * 1.4, abs=0.03
    )

    # Saving writes the edited job to the file.
    browser.find_element(By.ID, "save").click()
    wait_for(browser, "document.getElementById('status').textContent.startsWith('saved')")
    assert json.loads(job_file.read_text()) == json.loads(state["text"])

    # A problem typed in shows as `gpu-worker validate` words it; fixing it clears it.
    good = state["text"]
    bad = good.replace('"size": 28', '"size": -5').replace('"fps": 10', '"fps": "10"')
    (tmp_path / "bad.json").write_text(bad)
    expected_lines = run_cli("validate", str(tmp_path / "bad.json")).stdout.splitlines()
    assert len(expected_lines) == 2
    set_editor = (
        "const e = document.getElementById('editor'); e.value = arguments[0];"
        "e.dispatchEvent(new Event('input'));"
    )
    browser.execute_script(set_editor, bad)
    wait_for(browser, "studio.idle() && !studio.state().valid")
    lines = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#problems li")]
    assert lines == expected_lines
    browser.execute_script(set_editor, good)
    settle(browser)
    assert [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#problems li")] == ["valid"]

    # Render: the progress fills, and the page plays the finished video (the first clip's
    # seconds, then the second's 0.8 s after its trim, overlapping by the crossfade).
    edited = json.loads(good)["clips"]
    frames = round((edited[0]["duration"] + 0.8 - edited[1]["transition"]["duration"]) * 10)
    browser.find_element(By.ID, "render").click()
    wait_for(browser, "document.getElementById('renderpanel').dataset.state === 'done'", 60)
    progress = browser.find_element(By.ID, "progress")
    assert progress.get_attribute("value") == progress.get_attribute("max") == str(frames)
    duration = wait_for(
        browser,
        "document.getElementById('video').readyState >= 1"
        " && document.getElementById('video').duration",
    )
    assert duration == pytest.approx(frames / 10, abs=0.05)
    assert (job_file.parent / "out.mp4").stat().st_size > 0
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
