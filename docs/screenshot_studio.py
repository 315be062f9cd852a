"""Take the README's screenshot of the studio: the demo reel, a frame, and its rendered video.

    python examples/make_media.py
    python docs/screenshot_studio.py examples/hotel-reel.json docs/studio.png

Needs Debian's chromium and chromium-driver, and Selenium (the test extra).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,860",
]


def main(job: Path, out: Path) -> int:
    studio = subprocess.Popen(
        [sys.executable, "-m", "gpu_worker", "studio", str(job), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert studio.stdout is not None
        url = studio.stdout.readline().split()[1]
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in [*ARGS, f"--user-data-dir={tempfile.mkdtemp()}"]:
            options.add_argument(arg)
        os.environ.setdefault("SE_OFFLINE", "true")
        service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
        driver = webdriver.Chrome(options=options, service=service)
        try:
            driver.get(url)
            time.sleep(3)
            track = driver.find_element(By.ID, "rulertrack")  # the frame at 1.9 s of 13.9 s
            offset = round((1.9 / 13.9 - 0.5) * track.size["width"])
            ActionChains(driver).move_to_element_with_offset(track, offset, 0).click().perform()
            time.sleep(2)
            driver.find_element(By.ID, "render").click()
            deadline = time.monotonic() + 120
            while "rendered" not in driver.find_element(By.ID, "renderinfo").text:
                if time.monotonic() > deadline:
                    raise SystemExit("the render did not finish in 120 s")
                time.sleep(0.5)
            time.sleep(2)
            driver.save_screenshot(str(out))
        finally:
            driver.quit()
    finally:
        studio.terminate()
        studio.wait(10)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
