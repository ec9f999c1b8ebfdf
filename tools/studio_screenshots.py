"""Screenshots of the studio's four pages for the README, taken by the tests' browser (headless
Chromium through WebDriver) on the README's sample clips.

    python tools/studio_screenshots.py [--out=docs] [--work=runs/studio_screenshots]

Without --faces/--workdir/--video it makes them first in --work: extracts both sample clips
(every 8th frame, 64 px), trains the tiny autoencoder 6 steps on them with previews, and
uses clip B for the Merge page. Writes OUT/studio_{faces,masks,training,merge}.png (atomically).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHROMIUM = os.environ.get("FACEJAX_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FACEJAX_CHROMEDRIVER", "/usr/bin/chromedriver")


def chromium(width: int = 1400, height: int = 900):
    """A headless Chromium as the tests start it (as root it needs --no-sandbox)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def make_inputs(work: str) -> tuple[list[str], str, str]:
    """(extraction folders, workdir, clip) made from the sample clips in `work` (reused when
    already there)."""
    from facejax import samples, train
    from facejax.data import extract
    from facejax.experiments import deepfakes_original
    clips = samples.obtain(None, os.path.join(work, "samples"))
    folders = []
    for name in ("a", "b"):
        out = os.path.join(work, f"faces_{name}")
        extract.extract([clips[name]], out, extract.ExtractOptions(
            size=64, identity=name, every_n=8), verbose=False)
        folders.append(out)
    workdir = os.path.join(work, "run")
    c = deepfakes_original.get_config("tiny")
    c.data.a, c.data.b = folders
    c.num_steps, c.log_every, c.eval_every, c.preview_every = 6, 1, 2, 2
    train.train(c, workdir)
    return folders, workdir, clips["b"]


def _wait(driver, condition, timeout=900):
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def _shoot(driver, path: str) -> None:
    from facejax import files
    files.atomic_write_bytes(path, driver.get_screenshot_as_png())
    print(f"wrote {path}", flush=True)


def shoot_pages(driver, srv, out: str) -> None:
    """The four pages, each once its content has arrived."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    driver.get(srv.url("faces"))
    _wait(driver, lambda d: d.find_element(By.ID, "grid").get_attribute("data-loaded"))
    Select(driver.find_element(By.ID, "sort")).select_by_value("blur")
    _wait(driver, lambda d: d.find_element(By.ID, "grid").get_attribute("data-loaded") == "blur")
    for card in driver.find_elements(By.CSS_SELECTOR, "#grid .face")[:3]:
        card.click()
    _wait(driver, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#grid img')].every(i => i.complete);"))
    _shoot(driver, os.path.join(out, "studio_faces.png"))

    driver.get(srv.url("masks"))
    _wait(driver, lambda d: d.find_element(By.ID, "canvas").get_attribute("data-face"))
    driver.execute_script(  # a face outline and a cut, as a user draws them
        "state.polygons.push({type: 'include', points: [[14,10],[50,10],[54,34],[46,56],"
        "[32,60],[18,56],[10,34]]}, {type: 'exclude', points: [[36,40],[52,38],[50,54]]});"
        "draw();")
    _shoot(driver, os.path.join(out, "studio_masks.png"))

    driver.get(srv.url("training"))
    _wait(driver, lambda d: d.find_element(By.ID, "config").get_attribute("data-loaded"))
    _wait(driver, lambda d: d.execute_script(
        "return document.getElementById('preview').naturalWidth > 0;"))
    _shoot(driver, os.path.join(out, "studio_training.png"))

    driver.get(srv.url("merge"))
    _wait(driver, lambda d: d.find_element(By.ID, "view").get_attribute("data-renders"))
    # The page's own measure of each render (request to image shown): a frame not seen yet
    # (the model runs), then an option changed on it (the paste alone runs again).
    for n, (control, value, what) in enumerate((("frame", 40, "a new frame"),
                                                ("blur", 6, "blur changed"),
                                                ("erode", 4, "erode changed")), start=2):
        driver.execute_script("const e = document.getElementById(arguments[0]);"
                              "e.value = arguments[1]; e.dispatchEvent(new Event('change'));",
                              control, str(value))
        _wait(driver, lambda d: d.find_element(By.ID, "view").get_attribute("data-renders")
              == str(n))
        print(f"merge page, {what}: {driver.find_element(By.ID, 'timing').text}", flush=True)
    time.sleep(0.5)
    _shoot(driver, os.path.join(out, "studio_merge.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs")
    parser.add_argument("--work", default="runs/studio_screenshots")
    parser.add_argument("--faces", help="extraction folders (comma-separated)")
    parser.add_argument("--workdir")
    parser.add_argument("--video")
    args = parser.parse_args()
    if args.faces:
        folders, workdir, clip = args.faces.split(","), args.workdir, args.video
    else:
        folders, workdir, clip = make_inputs(args.work)
    os.makedirs(args.out, exist_ok=True)
    from facejax.studio import server
    srv = server.StudioServer(server.open_studio(folders, workdir, clip)).start()
    driver = chromium()
    try:
        shoot_pages(driver, srv, args.out)
    finally:
        driver.quit()
        srv.stop()


if __name__ == "__main__":
    main()
