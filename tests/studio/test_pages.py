"""The studio's pages in a real headless Chromium on real GRID faces: each page loads with its
content; sorting by blur puts a face the test blurred first; deleting faces in the page and
undoing leaves the folder byte-identical (and the dataset fingerprint changes, then comes
back); a polygon drawn with the mouse lands in masks.jsonl at the right crop coordinates."""

import json
import os

import cv2
import numpy as np
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from facejax.faces import mask_labels
from tests.studio.conftest import KEY, folder_bytes, serving, wait_for



def _ids(folder: str) -> list[str]:
    with open(os.path.join(folder, "alignments.jsonl")) as f:
        return [json.loads(line)["record"] for line in f]


def _text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def _open_faces(driver, srv, sort: str = "frame"):
    driver.get(srv.url("faces"))
    wait_for(driver, lambda d: d.find_element(By.ID, "grid").get_attribute("data-loaded")
             == "frame", message="the faces grid did not load")
    if sort != "frame":
        Select(driver.find_element(By.ID, "sort")).select_by_value(sort)
        wait_for(driver, lambda d: d.find_element(By.ID, "grid").get_attribute("data-loaded")
                 == sort, timeout=180, message=f"the grid was not sorted by {sort}")
    return driver.find_elements(By.CSS_SELECTOR, "#grid .face")


def test_the_faces_page_loads_with_its_faces(browser, faces_dir):
    ids = _ids(faces_dir)
    with serving([faces_dir]) as srv:
        cards = _open_faces(browser, srv)
        assert [c.get_attribute("data-id") for c in cards] == ids[:60]
        assert _text(browser, "pageinfo") == "page 1 of 2 (75 faces)"
        assert "GRID_bbaf2n.mpg · frame 0" in cards[0].text
        # Every crop arrives as the 64 px image it is.
        wait_for(browser, lambda d: d.execute_script(
            "return [...document.querySelectorAll('#grid img')].every("
            "i => i.complete && i.naturalWidth === 64)"), message="crops did not load")
        keys = [o.get_attribute("value") for o in
                Select(browser.find_element(By.ID, "sort")).options]
        assert keys == ["frame", "blur", "yaw", "pitch", "size", "fit", "identity", "similar"]
        browser.find_element(By.ID, "next").click()
        wait_for(browser, lambda d: _text(d, "pageinfo").startswith("page 2"))
        assert [c.get_attribute("data-id") for c in browser.find_elements(
            By.CSS_SELECTOR, "#grid .face")] == ids[60:]


def test_sort_by_blur_puts_the_blurred_face_first(browser, faces_dir):
    face = f"{KEY}/000037"
    path = mask_labels.crop_path(faces_dir, face)
    crop = cv2.imread(path)
    cv2.imwrite(path, cv2.GaussianBlur(crop, (0, 0), 2.0))
    blurred = cv2.Laplacian(cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()
    with serving([faces_dir]) as srv:
        cards = _open_faces(browser, srv, "blur")
        assert cards[0].get_attribute("data-id") == face
        assert f"frame 37 · {blurred:.3f}" in cards[0].text
        # The rest, sharpest last, none as blurred as it.
        values = [float(c.text.split(" · ")[2].split()[0]) for c in cards]
        assert values == sorted(values) and values[1] > 2 * blurred
        # The features are cached in the folder, and a changed crop is measured again.
        cache = json.load(open(os.path.join(faces_dir, "studio_cache", "faces.json")))
        assert cache["faces"][face]["blur"] == pytest.approx(blurred)
        # Reversed, sharpest first: the blurred face is the last of the last page.
        browser.find_element(By.ID, "reverse").click()
        wait_for(browser, lambda d: d.find_elements(
            By.CSS_SELECTOR, "#grid .face")[0].get_attribute("data-id") != face)
        browser.find_element(By.ID, "next").click()
        wait_for(browser, lambda d: _text(d, "pageinfo").startswith("page 2"))
        wait_for(browser, lambda d: d.find_elements(
            By.CSS_SELECTOR, "#grid .face")[-1].get_attribute("data-id") == face,
            message="reversed, the blurred face is not last")


def test_delete_then_undo_in_the_page_leaves_the_folder_byte_identical(browser, faces_dir):
    from facejax.data import tfds_faces
    before, print_before = folder_bytes(faces_dir), tfds_faces.fingerprint(faces_dir)
    with serving([faces_dir]) as srv:
        cards = _open_faces(browser, srv)
        chosen = [cards[i].get_attribute("data-id") for i in (2, 5, 40)]
        for i in (2, 5, 40):
            cards[i].click()
        assert _text(browser, "count") == "3"
        browser.find_element(By.ID, "delete").click()
        wait_for(browser, lambda d: "moved 3 face(s) to the trash" in _text(d, "status"))
        assert "(75 faces)" not in _text(browser, "pageinfo")
        assert _text(browser, "pageinfo") == "page 1 of 2 (72 faces)"
        left = _ids(faces_dir)
        assert len(left) == 72 and not set(chosen) & set(left)
        with open(os.path.join(faces_dir, "inputs", KEY, "alignments.jsonl")) as f:
            assert not any(face in f.read() for face in chosen)
        for face in chosen:
            frame = face.rpartition("/")[2]
            assert not os.path.exists(mask_labels.crop_path(faces_dir, face))
            assert os.path.isfile(os.path.join(faces_dir, "trash", "000001", "faces", KEY,
                                               f"{frame}.png"))
        # The prepared dataset is stale: the next run's fingerprint is another.
        assert tfds_faces.fingerprint(faces_dir) != print_before
        browser.find_element(By.ID, "undo").click()
        wait_for(browser, lambda d: "restored 3 face(s)" in _text(d, "status"))
        assert _text(browser, "pageinfo") == "page 1 of 2 (75 faces)"
    assert folder_bytes(faces_dir) == before
    assert tfds_faces.fingerprint(faces_dir) == print_before


def _click_at(driver, canvas, x: float, y: float) -> tuple[float, float]:
    """Clicks the canvas at crop pixel (x, y); returns the crop point the click's whole
    viewport pixel stands for."""
    box = driver.execute_script(
        "const c = arguments[0], r = c.getBoundingClientRect();"
        "return [r.left + c.clientLeft, r.top + c.clientTop, c.clientWidth];", canvas)
    scale = box[2] / 64
    vx, vy = round(box[0] + x * scale), round(box[1] + y * scale)
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(vx, vy).click()
    actions.perform()
    return (vx - box[0]) / scale, (vy - box[1]) / scale


def test_a_polygon_drawn_with_the_mouse_lands_in_masks_jsonl(browser, faces_dir):
    face = f"{KEY}/000012"
    include = [(8, 6), (56, 6), (56, 58), (8, 58)]
    exclude = [(20, 20), (44, 20), (32, 40)]
    with serving([faces_dir]) as srv:
        browser.get(srv.url("masks", folder=0, face=face))
        canvas = browser.find_element(By.ID, "canvas")
        wait_for(browser, lambda d: canvas.get_attribute("data-face") == face,
                 message="the face did not open")
        assert _text(browser, "labelled") == "0" and _text(browser, "total") == "75"
        clicked = [_click_at(browser, canvas, x, y) for x, y in include]
        ActionChains(browser).send_keys("\n").perform()  # Enter closes the polygon
        browser.find_element(By.CSS_SELECTOR, "input[name=kind][value=exclude]").click()
        clicked += [_click_at(browser, canvas, x, y) for x, y in exclude]
        browser.find_element(By.ID, "close").click()
        browser.find_element(By.ID, "save").click()
        wait_for(browser, lambda d: _text(d, "status").startswith("saved"))
        assert _text(browser, "labelled") == "1"
        done = browser.find_element(By.CSS_SELECTOR, f"#facelist div[data-id='{face}']")
        assert "done" in done.get_attribute("class")
    labels = mask_labels.read(faces_dir)
    assert list(labels) == [face]
    label = labels[face]
    assert label.size == 64 and [p.kind for p in label.polygons] == ["include", "exclude"]
    got = np.concatenate([p.points for p in label.polygons])
    np.testing.assert_allclose(got, np.array(include + exclude, float), atol=1.0)
    np.testing.assert_allclose(got, np.array(clicked), atol=0.01)
    mask = mask_labels.rasterise(label)
    assert mask[30, 12] == 1 and mask[25, 32] == 0 and mask[2, 2] == 0 and mask[57, 55] == 1
    assert mask.sum() == pytest.approx(48 * 52 - 24 * 20 / 2, abs=40)


def test_the_masks_page_loads_with_the_folders_faces(browser, faces_dir, grid_faces):
    with serving([faces_dir, grid_faces["b"]]) as srv:
        browser.get(srv.url("masks"))
        canvas = browser.find_element(By.ID, "canvas")
        first = _ids(faces_dir)[0]
        wait_for(browser, lambda d: canvas.get_attribute("data-face") == first)
        items = browser.find_elements(By.CSS_SELECTOR, "#facelist div")
        assert [i.get_attribute("data-id") for i in items] == _ids(faces_dir)
        # The crop is drawn: the canvas is not blank.
        assert browser.execute_script(
            "const c = document.getElementById('canvas').getContext('2d');"
            "const d = c.getImageData(0, 0, 512, 512).data;"
            "let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] + d[i + 1] + d[i + 2];"
            "return n;") > 0
        Select(browser.find_element(By.ID, "folder")).select_by_value("1")
        second = _ids(grid_faces["b"])[0]
        wait_for(browser, lambda d: canvas.get_attribute("data-face") == second)
