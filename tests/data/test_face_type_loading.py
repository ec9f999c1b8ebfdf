"""Loading faces by face type (FaceSource(face_type=...)): the loader re-cuts each extracted
crop to the face type's square with a margin, and what it gives is what cutting that square
straight from the video frame gives (training sees the faces conversion will cut)."""

import numpy as np
import pytest

from facejax.data import pipeline, tfds_faces
from facejax.faces import align, face_types, video
from facejax.training import inputs
from facejax.experiments import saehd


def _frame(video_path: str, index: int) -> np.ndarray:
    """Frame `index` as extraction read it (OpenCV's own seek lands elsewhere on some MPEG-1
    frames, GRID's frame 0 among them)."""
    return video.FrameSource(video_path).read(index)


def test_loaded_face_type_crop_is_the_square_cut_from_the_frame(grid_faces):
    size, grow = 64, 1.25
    loaded = pipeline.FaceSource([grid_faces["a"]], "train", size, face_type="full", grow=grow)
    records = {r["frame"]: r for r in tfds_faces.iter_records(grid_faces["a"])}
    for i in (0, len(loaded) // 2, len(loaded) - 1):
        rec = records[int(loaded.frame[i])]
        points = np.asarray(rec["landmarks"], np.float64)
        m = face_types.matrix(points, size, "full", grow)
        direct = align.crop(_frame(rec["input"], rec["frame"]), m, size)
        got = loaded.take([i], ("image", "landmarks"))
        # the same square: landmarks agree to float32 rounding
        np.testing.assert_allclose(got["landmarks"][0], align.transform_points(m, points),
                                   atol=2e-3)
        # the same pixels up to the extraction's own resampling, inside the face square
        inner = slice(int(size * 0.15), int(size * 0.85))
        diff = np.abs(got["image"][0].astype(float) - direct.astype(float))[inner, inner]
        assert diff.mean() < 4.0, diff.mean()


def test_model_view_of_a_face_type_run_is_the_square_itself(grid_faces):
    """augment.region of the loaded crop is exactly the face type's square: its corners sit
    at (1 - region)/2 and (1 + region)/2 of the loaded side."""
    config = saehd.get_config("tiny")
    framing = inputs.loaded_framing(config)
    assert framing == {"face_type": "full", "grow": pytest.approx(1 / config.augment.region)}
    size = config.data.load_size
    loaded = pipeline.FaceSource([grid_faces["a"]], "train", size, **framing)
    records = {r["frame"]: r for r in tfds_faces.iter_records(grid_faces["a"])}
    rec = records[int(loaded.frame[0])]
    points = np.asarray(rec["landmarks"], np.float64)
    square = face_types.corners(face_types.matrix(points, 100, "full"), 100)
    to_loaded = face_types.matrix(points, size, "full", framing["grow"])
    r = config.augment.region
    np.testing.assert_allclose(align.transform_points(to_loaded, square)[[0, 2]],
                               [[(1 - r) / 2 * size] * 2, [(1 + r) / 2 * size] * 2], atol=1e-6)


def test_tight_extractions_are_warned_about(grid_faces, capfd):
    pipeline.FaceSource([grid_faces["a"]], "train", 64, face_type="full", grow=1.25)
    assert "warning" not in capfd.readouterr().err  # the default coverage holds full face
    pipeline.FaceSource([grid_faces["a"]], "train", 64, face_type="head", grow=1.25)
    err = capfd.readouterr().err
    assert "frame less than the head face type needs" in err and "--coverage=0.31" in err
    # the held-out split comes from the same folders: said once per run, not twice
    pipeline.FaceSource([grid_faces["a"]], "validation", 64, face_type="head", grow=1.25)
    assert "warning" not in capfd.readouterr().err


def test_eyes_mouth_mask_is_drawn_at_the_load_size_over_the_eyes_and_mouth(grid_faces):
    """The derived eyes_mouth field: high over the eyes and the inner lips of each loaded face,
    zero at the crop's corners, and in DeepFaceLab's proportions whatever the load size."""
    shares = []
    for size in (48, 64):
        loaded = pipeline.FaceSource([grid_faces["a"]], "train", size, face_type="full",
                                     grow=1.25)
        got = loaded.take([0, 5], ("eyes_mouth", "landmarks"))
        assert got["eyes_mouth"].shape == (2, size, size) and got["eyes_mouth"].dtype == np.uint8
        for em, points in zip(got["eyes_mouth"], got["landmarks"]):
            for group in (range(36, 42), range(42, 48), range(60, 68)):
                x, y = np.round(points[list(group)].mean(0)).astype(int)
                assert em[y, x] > 200, (size, group, em[y, x])
            assert em[0, 0] == 0 and em[-1, -1] == 0
            x, y = np.round(points[30]).astype(int)  # the nose tip lies between them
            assert em[y, x] < 60
        share = (loaded.take([0], ("eyes_mouth",))["eyes_mouth"][0] > 127).mean()
        shares.append(share)
    assert abs(shares[0] - shares[1]) < 0.02  # the same share of the crop at either size
