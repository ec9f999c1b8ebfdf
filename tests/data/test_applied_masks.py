"""Training inside applied XSeg masks (issue 33): the prepared dataset carries each face's mask
from `facejax xseg apply`, --config.data.mask=xseg puts it in the batches of SAEHD and of the
autoencoder, a face without one is refused, and the autoencoder's loss is taken inside it."""

import os
import shutil

import jax
import numpy as np
import pytest

from facejax import augment, tasks, train
from facejax.data import pipeline, tfds_faces
from facejax.errors import UserError
from facejax.experiments import deepfakes_original, saehd
from facejax.faces import align, mask_labels, masks
from facejax.tasks import autoencoder
from facejax.training import inputs


def _hull_and_pattern(rec: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(the face's hull, the mask written for it: the hull with its left half cut away, as an
    occluder over half the face would leave it)."""
    points = align.transform_points(np.asarray(rec["affine"]), np.asarray(rec["landmarks"]))
    hull = masks.face_hull(points, (size, size))
    pattern = hull.copy()
    pattern[:, :size // 2] = 0
    return hull, pattern


@pytest.fixture(scope="module")
def applied(grid_faces, tmp_path_factory):
    """A copy of speaker A's extraction with every face's applied mask written; returns
    (folder, {record id: (hull, applied mask)})."""
    from facejax import images
    folder = str(tmp_path_factory.mktemp("applied") / "faces_a")
    shutil.copytree(grid_faces["a"], folder, ignore=shutil.ignore_patterns("tfds"))
    size, records = tfds_faces.read_records(folder)
    want = {}
    for rec in records:
        want[rec["record"]] = _hull_and_pattern(rec, size)
        path = mask_labels.applied_path(folder, rec["key"], rec["frame"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        images.write_image(path, want[rec["record"]][1])
    return folder, want


def _records_of(source: pipeline.FaceSource) -> list[str]:
    return [source.parts[0].records[int(i)]["record"].decode() for i in source.parts[0].index]


def test_the_mask_field_is_the_applied_mask_with_xseg_and_the_hull_otherwise(applied, capfd):
    folder, want = applied
    xseg = pipeline.FaceSource([folder], "train", 64, mask="xseg")
    ids = _records_of(xseg)
    got = xseg.take(np.arange(len(xseg)), ("mask",))["mask"]
    np.testing.assert_array_equal(got, np.stack([want[r][1] for r in ids]))
    capfd.readouterr()
    hull = pipeline.FaceSource([folder], "train", 64, mask="hull")
    np.testing.assert_array_equal(hull.take(np.arange(len(hull)), ("mask",))["mask"],
                                  np.stack([want[r][0] for r in ids]))
    assert f"warning: {folder}: {len(ids)} of {len(ids)} faces have XSeg masks that this run " \
           "does not use (--config.data.mask=hull)" in capfd.readouterr().err
    pipeline.FaceSource([folder], "train", 64)  # a family without the setting: no word
    assert "warning" not in capfd.readouterr().err


def test_a_face_without_its_mask_is_refused_and_a_changed_mask_changes_the_dataset(
        applied, tmp_path):
    from facejax import images
    folder = str(tmp_path / "faces")
    shutil.copytree(applied[0], folder, ignore=shutil.ignore_patterns("tfds"))
    _, records = tfds_faces.read_records(folder)
    first = mask_labels.applied_path(folder, records[0]["key"], records[0]["frame"])
    before = tfds_faces.fingerprint(folder)
    images.write_image(first, np.zeros((64, 64), np.uint8))  # the same count, other bytes
    assert tfds_faces.fingerprint(folder) != before
    os.remove(first)
    n = len(pipeline.FaceSource([folder], "train", 64))
    with pytest.raises(UserError, match=rf"^--config.data.mask=xseg: {folder}: 1 of {n} faces "
                       r"\(train\) have no XSeg mask; run facejax xseg apply --model=RUN "
                       rf"--faces={folder}"):
        pipeline.FaceSource([folder], "train", 64, mask="xseg")
    images.write_image(first, np.zeros((32, 32), np.uint8))
    with pytest.raises(UserError, match=rf"^{first}: an applied mask must be a gray 64x64"):
        tfds_faces.builder(folder)


@pytest.mark.parametrize("module,variant", [(deepfakes_original, "tiny"), (saehd, "tiny")])
def test_xseg_masks_reach_the_batches_of_the_families_that_train_inside_a_mask(
        applied, grid_faces, tmp_path, module, variant):
    c = module.get_config(variant)
    c.data.a, c.data.b, c.data.mask = applied[0], grid_faces["b"], "xseg"
    task = tasks.get(c.task)
    with pytest.raises(UserError, match=rf"^--config.data.mask=xseg: {grid_faces['b']}: \d+ "
                                        r"of \d+ faces \(train\) have no XSeg mask"):
        inputs.open_inputs(c, task, str(tmp_path / "refused"))
    assert "mask" in inputs.fields(c, task)
    source = pipeline.FaceSource([applied[0]], "train", c.data.load_size, mask="xseg")
    batch = source.take(np.arange(4), inputs.fields(c, task))
    left = c.data.load_size // 2 - 1
    assert batch["mask"][:, :, :left].max() == 0 and batch["mask"][:, :, left + 2:].max() == 255


def test_the_autoencoder_loss_is_taken_inside_the_mask(applied):
    c = deepfakes_original.get_config("tiny")
    source = pipeline.FaceSource([applied[0]], "train", c.data.load_size, mask="xseg")
    faces = source.take(np.arange(8), ("image", "mask"))
    params = autoencoder.init(jax.random.key(0), c)["params"]
    rng = jax.random.key(1)
    whole = {n: {"image": faces["image"]} for n in "ab"}
    inside = lambda m: {n: {"image": faces["image"], "mask": m} for n in "ab"}
    loss = lambda b: float(autoencoder.loss_fn(params, b, rng, c)[0])
    ones, zeros = np.full_like(faces["mask"], 255), np.zeros_like(faces["mask"])
    assert loss(inside(ones)) == pytest.approx(loss(whole), rel=1e-5)
    assert loss(inside(zeros)) == 0.0
    half = loss(inside(faces["mask"]))
    assert 0.0 < half < 0.7 * loss(whole)
    # The host path (augment.placement "host") warps the mask with the same draws.
    host = autoencoder.host_augment(inside(faces["mask"]), np.random.default_rng(0), c)
    plain = augment.warp_batch_np(np.random.default_rng(0), faces["image"], c.model.size,
                                  c.augment, identity="a")
    np.testing.assert_array_equal(host["a"]["target"], plain[1])
    assert host["a"]["target_mask"].shape == plain[1].shape[:3] + (1,)
    assert 0.0 < float(autoencoder.loss_fn(params, host, rng, c)[0]) < 0.7 * loss(whole)


def test_a_short_run_trains_inside_the_xseg_masks(applied, grid_faces, tmp_path):
    from facejax import images
    folder_b = str(tmp_path / "faces_b")
    shutil.copytree(grid_faces["b"], folder_b, ignore=shutil.ignore_patterns("tfds"))
    size, records = tfds_faces.read_records(folder_b)
    for rec in records:
        path = mask_labels.applied_path(folder_b, rec["key"], rec["frame"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        images.write_image(path, _hull_and_pattern(rec, size)[1])
    c = deepfakes_original.get_config("tiny")
    c.data.a, c.data.b, c.data.mask = applied[0], folder_b, "xseg"
    c.num_steps, c.eval_every, c.preview_every = 3, 0, 0
    metrics = train.train(c, str(tmp_path / "run"))
    assert np.isfinite(metrics["loss"]) and os.path.isdir(str(tmp_path / "run" / "checkpoints"))
