"""The studio's test fixtures: a private copy of a real GRID extraction per test (the tests
delete, blur and label faces), a studio served on a free port, and a headless Chromium driven
through WebDriver (Debian's chromium and chromium-driver; .ci/run installs them)."""

import contextlib
import os
import shutil

import pytest

from facejax.data import extract
from tests.helpers import GRID

# Speaker A's input key in the grid_faces extraction: its name and a hash of the clip's full
# path, so it depends on where ../shared lies and is computed as extraction computes it.
KEY = extract.input_key(os.path.join(GRID, "GRID_bbaf2n.mpg"))

CHROMIUM = os.environ.get("FACEJAX_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FACEJAX_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture
def faces_dir(grid_faces, tmp_path):
    """A copy of the GRID speaker A's extraction (75 faces at 64 px), the test's to change."""
    out = str(tmp_path / "faces_a")
    shutil.copytree(grid_faces["a"], out)
    return out


@contextlib.contextmanager
def serving(faces, workdir=None, video=None, settings=None):
    """A studio on `faces` (a list of folders) served on a free local port, stopped after."""
    from facejax.studio import server
    studio = server.open_studio(faces, workdir, video, settings)
    srv = server.StudioServer(studio).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (as root it needs --no-sandbox) with a fixed window size, so
    coordinates on the page are the same on every machine."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.path.exists(path), (
            f"{path} missing: apt-get install -y chromium chromium-driver (as .ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, timeout=60, message=""):
    """Waits until `condition(driver)` is truthy; returns its value. An element the page
    replaced while the condition read it (the grid re-rendering) counts as not yet."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, message)


def folder_bytes(folder: str) -> dict:
    """{relative path: bytes} of every file under `folder` (and its empty folders as None)."""
    out = {}
    for root, dirs, names in os.walk(folder):
        rel_root = os.path.relpath(root, folder)
        if not dirs and not names:
            out[rel_root + "/"] = None
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.normpath(os.path.join(rel_root, name))] = f.read()
    return out


@pytest.fixture(scope="session")
def studio_run(grid_faces, tmp_path_factory):
    """A workdir of the tiny autoencoder trained 4 steps on the two GRID speakers, with every
    step's losses, held-out metrics at steps 0, 2 and 4 and preview grids at 2 and 4."""
    from facejax import train
    from facejax.experiments import deepfakes_original
    c = deepfakes_original.get_config("tiny")
    c.data.a, c.data.b = grid_faces["a"], grid_faces["b"]
    c.num_steps, c.log_every, c.eval_every, c.preview_every = 4, 1, 2, 2
    workdir = str(tmp_path_factory.mktemp("studio_run"))
    train.train(c, workdir)
    return workdir
