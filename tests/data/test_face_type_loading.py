"""Loading faces by face type (FaceSource(face_type=...)): the loader re-cuts each extracted
crop to the face type's square with a margin, and what it gives is what cutting that square
straight from the video frame gives (training sees the faces conversion will cut)."""

import cv2
import numpy as np
import pytest

from facejax.data import pipeline, tfds_faces
from facejax.faces import align, face_types
from facejax.training import inputs
from facejax.experiments import saehd


def _frame(video_path: str, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(video_path)
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = cap.read()
    cap.release()
    assert ok
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


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
    pipeline.FaceSource([grid_faces["a"]], "validation", 64, face_type="full", grow=1.25)
    assert "warning" not in capfd.readouterr().err  # the default coverage holds full face
    pipeline.FaceSource([grid_faces["a"]], "validation", 64, face_type="head", grow=1.25)
    err = capfd.readouterr().err
    assert "frame less than the head face type needs" in err and "--coverage=0.31" in err
