"""Compositing a face into its frame (facejax/faces/compose.py): the mask, colour matching."""

import numpy as np

from facejax.faces import align, compose, detect, find, video
from tests.helpers import GRID


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


def test_crop_masks_of_every_kind():
    pts = np.array([[10 + 20 * np.cos(t), 32 + 20 * np.sin(t)] for t in
                    np.linspace(0, 2 * np.pi, 68, endpoint=False)]) + [22, 0]
    learned = np.zeros((64, 64), np.float32)
    learned[:, :32] = 1.0
    hull = compose.crop_mask_of("hull", pts, 64)
    assert hull[32, 32] == 255 and hull[2, 2] == 0
    assert (compose.crop_mask_of("crop", pts, 64) == 255).all()
    np.testing.assert_array_equal(compose.crop_mask_of("learned", pts, 64, learned),
                                  (learned * 255).astype(np.uint8))
    both = compose.crop_mask_of("learned_x_hull", pts, 64, learned)
    assert both[32, 20] == 255 and both[32, 40] == 0 and both[2, 2] == 0
    try:
        compose.crop_mask_of("learned", pts, 64)
        raise AssertionError("a learned mask without the model's mask")
    except ValueError:
        pass
