"""How fast the studio shows a frame while scrubbing, against `preview` run afresh each time.

    python benchmarks/studio_scrub.py [JOB.json] [--frames 40] [--no-browser]

On the demo reel by default (examples/hotel-reel.json, 1080x1920 at 30 fps; its media are
made first when missing). In one invocation, at the same times:

* baseline: ``preview_frame`` called afresh for each time, as ``gpu-worker preview`` does
  (probe every input, draw every text, open and seek the decoders), without writing the PNG;
* studio, forward: ``Studio.frame`` for times moving forward in small steps, as dragging the
  playhead asks them (the first request, which fills the caches, is reported alone);
* studio, jumps: the same times in a shuffled order (every decoder seeks);
* page (with Chromium and chromedriver installed): clicks on the timeline of the real page,
  timed by the page from the click's request to the frame decoded on screen.

Prints a Markdown table: median, 95th percentile and worst milliseconds, and each median's
ratio to the baseline's.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gpu_worker.job import load_job  # noqa: E402
from gpu_worker.render.pipeline import preview_frame  # noqa: E402
from gpu_worker.studio.server import StudioServer  # noqa: E402
from gpu_worker.studio.session import Studio  # noqa: E402

DEMO = ROOT / "examples" / "hotel-reel.json"


def summary(name: str, ms: list[float], baseline: float | None) -> str:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    median = statistics.median(ordered)
    ratio = f"{median / baseline:.3f}" if baseline else "1"
    return f"| {name} | {len(ms)} | {median:.0f} | {p95:.0f} | {ordered[-1]:.0f} | {ratio} |"


def times_for(duration: float, count: int) -> list[float]:
    """``count`` times moving forward through the video in even steps, as a drag gives."""
    step = duration / (count + 1)
    return [round(step * (i + 1), 3) for i in range(count)]


def page_timings(job_path: Path, count: int) -> list[float] | None:
    """Milliseconds the real page takes from a click on its timeline to the frame on screen."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
    except ImportError:
        return None
    if not (chromium and driver_path):
        return None
    studio = Studio(job_path)
    server = StudioServer(studio, port=0)
    server.start()
    profile = tempfile.TemporaryDirectory()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
        "--disable-background-networking --disable-component-update --disable-sync "
        f"--disable-dev-shm-usage --window-size=1400,900 --user-data-dir={profile.name}"
    ).split():
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    timings = []
    try:
        driver.get(server.url)

        def settled() -> int:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                done = driver.execute_script(
                    "return window.studio && studio.idle() && studio.state().index;"
                )
                if done is not None and done is not False:
                    return int(done)
                time.sleep(0.005)
            raise RuntimeError("the page did not settle")

        settled()
        track = driver.find_element(By.ID, "rulertrack")
        width = track.size["width"]
        for i in range(count):
            fraction = (i + 1) / (count + 1)
            ActionChains(driver, duration=0).move_to_element_with_offset(
                track, round((fraction - 0.5) * width), 0
            ).click().perform()
            settled()
            ms = driver.execute_script("return Number(document.getElementById('frame').dataset.ms)")
            timings.append(float(ms))
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
        studio.close()
        profile.cleanup()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("job", nargs="?", type=Path, default=DEMO)
    parser.add_argument("--frames", type=int, default=40, help="times asked in each scenario")
    parser.add_argument("--no-browser", action="store_true", help="skip the page's timings")
    args = parser.parse_args()
    if args.job == DEMO:
        subprocess.run([sys.executable, str(ROOT / "examples" / "make_media.py")], check=True)
    job = load_job(args.job)
    base = args.job.resolve().parent
    text = args.job.read_text()

    studio = Studio(args.job)
    started = time.perf_counter()
    duration = studio.layout(text)["duration"]
    forward = times_for(duration, args.frames)
    shuffled = forward[:]
    random.Random(7).shuffle(shuffled)

    baseline = []
    for at in forward[: max(5, args.frames // 4)]:  # afresh each time: slow, fewer suffice
        t0 = time.perf_counter()
        preview_frame(job, at, base_dir=base)
        baseline.append((time.perf_counter() - t0) * 1000)

    studio = Studio(args.job)  # empty caches
    t0 = time.perf_counter()
    studio.frame(text, 0.0)
    first = (time.perf_counter() - t0) * 1000
    scrub = []
    for at in forward:
        t0 = time.perf_counter()
        studio.frame(text, at)
        scrub.append((time.perf_counter() - t0) * 1000)
    studio.frames = type(studio.frames)(studio.frames.size)  # no frame served from memory
    jumps = []
    for at in shuffled:
        t0 = time.perf_counter()
        studio.frame(text, at)
        jumps.append((time.perf_counter() - t0) * 1000)
    studio.close()

    page = None if args.no_browser else page_timings(args.job, args.frames)
    comp_w, comp_h = job.output.width, job.output.height
    median = statistics.median(baseline)
    took = time.perf_counter() - started
    print(
        f"{args.job.name}: {comp_w}x{comp_h}, {duration:.2f} s of video; measured in {took:.0f} s"
    )
    print()
    print("| scenario | frames | median ms | p95 ms | worst ms | ÷ baseline |")
    print("|---|---:|---:|---:|---:|---:|")
    print(summary("baseline: preview afresh", baseline, None))
    print(f"| studio, first frame (fills the caches) | 1 | {first:.0f} | | | |")
    print(summary("studio, forward scrub", scrub, median))
    print(summary("studio, jumps (shuffled)", jumps, median))
    if page is not None:
        print(summary("page: click to frame on screen", page, median))
    else:
        print("| page | | | | | (no Chromium/chromedriver/selenium) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
