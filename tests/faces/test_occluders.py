"""Occluders pasted over real face crops (and over the mouth of a real frame): the occluded
crop and the visible-face mask are exact (pixel by pixel against the shape and the texture),
deterministic from the seed, textured from another real image, and the shapes are what they
say (one solid piece, in the size asked)."""

import os

import cv2
import numpy as np
import pytest

from facejax.data import pipeline
from facejax.faces import occluders, video
from tests.helpers import LIVEPORTRAIT


@pytest.fixture(scope="module")
def faces(grid_faces):
    """Eight real faces (64 px crops) of a GRID speaker and their hull masks."""
    source = pipeline.FaceSource([grid_faces["a"]], "train", 64)
    batch = source.take(np.arange(0, 40, 5), ("image", "mask"))
    return batch["image"], batch["mask"]


@pytest.fixture(scope="module")
def donor():
    """A frame of another clip (another person, another room)."""
    return video.FrameSource(os.path.join(LIVEPORTRAIT, "driving_d6.mp4")).read(10)


@pytest.mark.parametrize("kind", occluders.KINDS)
def test_pasted_pixels_and_visible_mask_are_exact(faces, donor, kind):
    images, hulls = faces
    for i in range(len(images)):
        rng = np.random.default_rng([3, i])
        o = occluders.occlude(images[i], hulls[i], donor, rng, kind)
        # The same draws again give the occluder's shape and texture on their own.
        rng = np.random.default_rng([3, i])
        centre = occluders.face_point(rng, hulls[i])
        shape = occluders.shape_mask(rng, 64, kind, centre)
        tex = occluders.texture(rng, donor, 64)
        np.testing.assert_array_equal(o.occluder, shape)
        np.testing.assert_array_equal(o.image[shape], tex[shape])
        np.testing.assert_array_equal(o.image[~shape], images[i][~shape])
        face = hulls[i] >= 128
        np.testing.assert_array_equal(o.visible, (face & ~shape).astype(np.uint8))
        # Centred on a face pixel: every occluder hides part of the face.
        assert 0 < np.count_nonzero(face & shape) and o.visible.sum() < face.sum()


def test_same_seed_same_occlusion_other_seed_another(faces, donor):
    images, hulls = faces
    a = occluders.occluded_set(images, hulls, [donor], seed=5)
    b = occluders.occluded_set(images, hulls, [donor], seed=5)
    c = occluders.occluded_set(images, hulls, [donor], seed=6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.visible, y.visible)
    assert any(not np.array_equal(x.occluder, z.occluder) for x, z in zip(a, c))
    assert [o.occluder.any() for o in a] == [True] * len(a)


def test_texture_is_a_window_of_the_donor(donor):
    """Each texture pixel is a bilinear mix of donor pixels: its colour lies in the donor's
    range, and the texture of a real frame is not flat (it carries the frame's structure)."""
    for seed in range(4):
        tex = occluders.texture(np.random.default_rng(seed), donor, 48)
        assert tex.shape == (48, 48, 3) and tex.dtype == np.uint8
        assert (tex.reshape(-1, 3).min(0) >= donor.reshape(-1, 3).min(0)).all()
        assert (tex.reshape(-1, 3).max(0) <= donor.reshape(-1, 3).max(0)).all()
        assert tex.std() > 5


@pytest.mark.parametrize("kind", occluders.KINDS)
def test_shapes_are_one_solid_piece_of_the_size_asked(kind):
    for seed in range(6):
        m = occluders.shape_mask(np.random.default_rng(seed), 128, kind, (64, 64), 20)
        count, _ = cv2.connectedComponents(m.astype(np.uint8))
        assert count == 2, (kind, seed)  # background and one piece
        area = m.sum()
        if kind == "disc":  # an ellipse of radii 20 and 14..20
            assert np.pi * 20 * 14 - 60 < area < np.pi * 20 * 20 + 60
        elif kind == "bar":  # 10 px wide, crossing the crop
            assert 10 * 100 < area < 10 * 182
        else:  # a palm of 20 x 23 px half-axes and five fingers
            assert np.pi * 20 * 23 < area < 2.6 * np.pi * 20 * 23
    with pytest.raises(ValueError, match="unknown occluder 'cup'"):
        occluders.shape_mask(np.random.default_rng(0), 32, "cup")


def test_batch_occluders_take_textures_from_other_faces(faces):
    images, hulls = faces
    out, visible = occluders.occlude_batch(np.random.default_rng(1), images, hulls, share=1.0)
    for i in range(len(images)):
        hidden = (hulls[i] >= 128) & (visible[i] == 0)
        assert hidden.any()
        assert not np.array_equal(out[i][hidden], images[i][hidden])
    untouched, vis = occluders.occlude_batch(np.random.default_rng(1), images, hulls, share=0.0)
    np.testing.assert_array_equal(untouched, images)
    np.testing.assert_array_equal(vis, (hulls >= 128).astype(np.uint8))


def test_iou():
    a, b = np.zeros((4, 4)), np.zeros((4, 4))
    a[:2], b[1:3] = 1, 1
    assert occluders.iou(a, b) == pytest.approx(4 / 12)
    assert occluders.iou(a, a) == 1.0 and occluders.iou(b * 0, a * 0) == 1.0


def test_a_disc_over_the_mouth_of_a_real_frame(donor):
    from facejax.faces import detect, find
    from tests.helpers import GRID
    frame = video.FrameSource(os.path.join(GRID, "GRID_brbk7n.mpg")).read(5)
    face, _ = find.FaceFinder(detect.make_detector("hog"), min_face=0)(frame)
    out, disc = occluders.over_mouth(frame, face.landmarks, donor)
    mouth = face.landmarks[48:68]
    ys, xs = np.nonzero(disc)
    centre = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
    assert np.abs(centre - mouth.mean(0)).max() < 1.0
    width = mouth[:, 0].max() - mouth[:, 0].min()
    assert abs(np.sqrt(disc.sum() / np.pi) / (0.75 * width) - 1) < 0.35  # radius, ratio 0.7-1
    np.testing.assert_array_equal(out[~disc], frame[~disc])
    assert np.abs(out[disc].astype(int) - frame[disc]).mean() > 20  # another image's pixels
    again, same = occluders.over_mouth(frame, face.landmarks, donor)
    np.testing.assert_array_equal(again, out)
    np.testing.assert_array_equal(same, disc)
    other, _ = occluders.over_mouth(frame, face.landmarks, donor, seed=34)
    assert (other != out).any()
