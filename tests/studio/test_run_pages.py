"""The pages of a run in headless Chromium, on a real (tiny, 4-step) run: the Training page shows
its step, curves, held-out metrics, preview and config and follows the run as its files grow;
on the Merge page, with a GRID clip, a frame is shown swapped, changes when erode changes, and
after "Save settings" `facejax convert --settings=FILE` writes that frame as the page showed it
(within H.264's error). One file, so the run is trained once per test worker."""

import base64
import json
import os
import shutil

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


def _tags(driver, box: str) -> dict:
    """{tag: its chart's heading} of the charts in #box."""
    return {c.get_attribute("data-tag"): c.find_element(By.TAG_NAME, "h4").text
            for c in driver.find_elements(By.CSS_SELECTOR, f"#{box} .chart")}


@pytest.mark.slow  # trains the tiny autoencoder 4 steps first (compiling it: minutes on 2 cores)
def test_the_training_page_shows_the_run_and_follows_it(browser, studio_run, faces_dir,
                                                         tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(studio_run, workdir)
    history = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [h["step"] for h in history] == [0, 2, 4]
    with serving([faces_dir], workdir) as srv:
        browser.get(srv.url("training"))
        wait_for(browser, lambda d: d.find_element(By.ID, "config").get_attribute(
            "data-loaded") == "1", timeout=120, message="the run did not load")
        assert browser.find_element(By.ID, "step").text == "4"
        assert browser.find_element(By.ID, "steps").text == "4"
        config = json.loads(browser.find_element(By.ID, "config").text)
        assert config == json.load(open(os.path.join(workdir, "config.json")))
        scalars = _tags(browser, "scalars")
        assert {"loss", "loss_a", "loss_b", "steps_per_s"} <= set(scalars)
        metrics = _tags(browser, "metrics")
        for key in ("val_l1_a", "val_l1_b"):
            assert metrics[key] == f"{key}: {history[-1][key]:#.4g}"
        preview = cv2.imread(os.path.join(workdir, "previews", "latest.png"))
        wait_for(browser, lambda d: d.execute_script(
            "const i = document.getElementById('preview');"
            "return i.complete && i.naturalWidth;") == preview.shape[1],
            message="the preview grid did not load")
        # The run goes on: a new held-out record and a new preview appear without a reload.
        with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({"step": 6, "val_l1_a": 0.125, "val_l1_b": 0.25}) + "\n")
        wider = cv2.copyMakeBorder(preview, 0, 0, 0, 8, cv2.BORDER_CONSTANT)
        cv2.imwrite(os.path.join(workdir, "previews", "latest.png"), wider)
        os.utime(os.path.join(workdir, "previews", "latest.png"))
        wait_for(browser, lambda d: d.find_element(By.ID, "step").text == "6", timeout=30)
        assert _tags(browser, "metrics")["val_l1_a"] == "val_l1_a: 0.1250"
        wait_for(browser, lambda d: d.execute_script(
            "return document.getElementById('preview').naturalWidth;") == preview.shape[1] + 8,
            timeout=30, message="the new preview was not shown")


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


@pytest.mark.slow  # a clip walked, the swap and XSeg models compiled
def test_the_merge_page_offers_xseg_masks_with_an_xseg_run(studio_run, xseg_run, faces_dir,
                                                          tmp_path):
    """With --xseg_model the Merge page lists xseg and xseg_x_learned, renders the frame
    FramePreview renders with that run's masks, and saves the run in the settings; without it
    those masks are not offered and asking for one is refused; a run that segments nothing and
    --xseg_model without --video are one-line errors."""
    from facejax.errors import UserError
    from facejax.studio import server
    settings = str(tmp_path / "settings.json")
    view = server.open_studio([faces_dir], studio_run, CLIP, settings,
                              xseg_model=xseg_run).preview
    assert view.info()["masks"][-2:] == ["xseg", "xseg_x_learned"]
    shown = view.render(FRAME, {"mask": "xseg", "erode": 0})
    # The page's values and --xseg_model make conversion's options (the frame is then
    # conversion's: test_frame_preview).
    want = view.preview().render(FRAME, convert.ConvertOptions(mask="xseg",
                                                               xseg_model=xseg_run))
    np.testing.assert_array_equal(shown, want)
    assert (view.render(FRAME, {"mask": "hull"}) != shown).any()
    view.save({"mask": "xseg"})
    assert convert.load_settings(settings).xseg_model == os.path.abspath(xseg_run)
    plain = server.open_studio([faces_dir], studio_run, CLIP, settings).preview
    assert "xseg" not in plain.info()["masks"]
    with pytest.raises(UserError, match=r"^--mask=xseg needs --xseg_model=RUN"):
        plain.render(FRAME, {"mask": "xseg"})
    with pytest.raises(UserError, match=rf"^--xseg_model={studio_run}: its task autoencoder "
                                        "predicts no face mask"):
        server.open_studio([faces_dir], studio_run, CLIP, xseg_model=studio_run)
    with pytest.raises(UserError, match=r"^--xseg_model: its masks are the merge page's"):
        server.open_studio([faces_dir], studio_run, xseg_model=xseg_run)
