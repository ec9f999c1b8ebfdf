"""The Training page in headless Chromium on a real (tiny, 4-step) run: its step and steps, loss
and held-out metric curves with their last values, its latest preview grid and its config; and
it follows the run as the run's files grow (it polls)."""

import json
import os
import shutil

import cv2
import pytest
from selenium.webdriver.common.by import By

from tests.studio.conftest import serving, wait_for


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
