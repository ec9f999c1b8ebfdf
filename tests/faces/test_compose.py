"""Compositing a face into its frame (facejax/faces/compose.py): the mask, colour matching."""

import numpy as np

from facejax.faces import align, compose, detect, find, video
from tests.conftest import GRID


def test_paste_changes_nothing_outside_the_feathered_mask():
    frame = video.FrameSource(f"{GRID}/GRID_bbaf2n.mpg").read(5)
    face, _ = find.FaceFinder(detect.make_detector())(frame)
    m = align.align_matrix(face.landmarks, 64)
    pts = align.transform_points(m, face.landmarks)
    opts = compose.PasteOptions(color="none", blur=5, erode=-3)
    out, alpha = compose.paste(frame, np.full((64, 64, 3), 255, np.uint8), m, pts, opts)
    np.testing.assert_array_equal(out[alpha == 0], frame[alpha == 0])
    inner = alpha > 0.999
    assert (out[inner] >= 254).all() and inner.sum() > 1000


def test_colour_matching_moves_statistics_to_the_target():
    rng = np.random.default_rng(0)
    face = rng.integers(0, 120, (32, 32, 3)).astype(np.uint8)
    target = rng.integers(100, 255, (32, 32, 3)).astype(np.uint8)
    mask = np.ones((32, 32), np.float32)
    for fn in (compose.match_rct, compose.match_histogram):
        out = fn(face, target, mask)
        assert abs(out.mean() - target.mean()) < 0.25 * abs(face.mean() - target.mean())
