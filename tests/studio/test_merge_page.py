"""The Merge page in headless Chromium on a real (tiny) run and a GRID clip: a frame is shown
swapped, changes when erode changes, and after "Save settings" `facejax convert
--settings=FILE` writes that frame as the page showed it (within H.264's error)."""

import base64
import os

import cv2
import numpy as np
import pytest
from selenium.webdriver.common.by import By

from facejax import convert
from facejax.faces import video
from tests.helpers import GRID, run_tool
from tests.studio.conftest import serving, wait_for

CLIP = os.path.join(GRID, "GRID_brbk7n.mpg")
FRAME = 30


def _shown(driver) -> np.ndarray:
    """The page's frame as RGB pixels, read back from the browser."""
    data = driver.execute_script(
        "const i = document.getElementById('view'), c = document.createElement('canvas');"
        "c.width = i.naturalWidth; c.height = i.naturalHeight;"
        "c.getContext('2d').drawImage(i, 0, 0); return c.toDataURL('image/png');")
    png = np.frombuffer(base64.b64decode(data.split(",", 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _set(driver, element_id: str, value) -> int:
    """Sets a control as a user would leave it (its change event); returns the render count
    the page reaches next."""
    renders = int(driver.find_element(By.ID, "view").get_attribute("data-renders") or 0)
    driver.execute_script(
        "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event('change'));", element_id, str(value))
    return renders + 1


def _wait_render(driver, count: int, timeout=600):
    wait_for(driver, lambda d: int(d.find_element(By.ID, "view").get_attribute("data-renders")
                                   or 0) >= count and d.execute_script(
        "const i = document.getElementById('view'); return i.complete && i.naturalWidth > 0;"),
        timeout=timeout, message=f"render {count} did not arrive: "
        + driver.find_element(By.ID, "status").text)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


@pytest.mark.slow  # the run's 4 training steps, a clip walked, the model compiled, a conversion
def test_the_merge_page_frame_follows_erode_and_matches_convert(browser, studio_run, faces_dir,
                                                                 tmp_path):
    settings = str(tmp_path / "settings.json")
    with serving([faces_dir], studio_run, CLIP, settings) as srv:
        browser.get(srv.url("merge"))
        _wait_render(browser, 1)
        assert browser.find_element(By.ID, "frame").get_attribute("max") == "74"
        _wait_render(browser, _set(browser, "frame", FRAME))
        assert f"index={FRAME}" in browser.find_element(By.ID, "view").get_attribute(
            "data-query")
        plain = _shown(browser)
        _wait_render(browser, _set(browser, "erode", 12))
        eroded = _shown(browser)
        assert plain.shape == eroded.shape == (288, 360, 3)
        changed = np.abs(plain.astype(int) - eroded.astype(int)).max(-1) > 8
        assert changed.sum() > 100, "erode changed nothing in the frame"
        browser.find_element(By.ID, "save").click()
        wait_for(browser, lambda d: "--settings=" + settings in d.find_element(
            By.ID, "status").text)
    saved = convert.load_settings(settings)
    assert saved.erode == 12 and saved.direction == "b2a"
    out = str(tmp_path / "out.mp4")
    proc = run_tool("tools/convert.py", f"--model={studio_run}", f"--input={CLIP}",
                    f"--output={out}", f"--settings={settings}", timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = video.FrameSource(out).read(FRAME)
    assert written.shape == eroded.shape
    # The written frame is the page's, up to H.264's loss, and tells the two settings apart
    # where they differ.
    assert _psnr(written, eroded) > 30
    near = np.abs(written.astype(int) - eroded.astype(int))[changed].mean()
    far = np.abs(written.astype(int) - plain.astype(int))[changed].mean()
    assert near < far / 2, (near, far)
