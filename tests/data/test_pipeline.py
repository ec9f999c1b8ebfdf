"""TFDS builder and batches: splits, per-process slices, determinism in (seed, step)."""

import os
import shutil

import jax
import numpy as np
import pytest

from facejax import parallel
from facejax.data import pipeline, tfds_faces
from facejax.errors import UserError
from facejax.faces import masks, video


def test_builder_features_and_held_out_split(grid_faces):
    b = tfds_faces.builder(grid_faces["a"])
    assert b.info.splits["train"].num_examples == 67
    assert b.info.splits["validation"].num_examples == 8  # the last 10% of the clip's frames
    assert b.info.file_format.value == "array_record"  # random access, for streaming
    ex = b.as_data_source("validation")[0]
    assert ex["image"].shape == (64, 64, 3) and ex["mask"].shape == (64, 64, 1)
    assert ex["parts"].shape == (64, 64, 4) and ex["landmarks"].shape == (68, 2)
    assert ex["identity"] == b"a"
    # The records hold the crops and masks as extracted, channels in RGB order.
    key, frame = ex["record"].decode().split("/")
    crop = video.read_image(os.path.join(grid_faces["a"], "inputs", key, "faces", f"{frame}.png"))
    np.testing.assert_array_equal(ex["image"], crop)
    np.testing.assert_array_equal(ex["mask"][..., 0], masks.face_hull(ex["landmarks"], (64, 64)))
    np.testing.assert_array_equal(ex["landmark_image"],
                                  masks.landmark_image(ex["landmarks"], 64))
    frames_val = [int(e["frame"]) for e in b.as_data_source("validation")]
    frames_train = [int(e["frame"]) for e in b.as_data_source("train")]
    assert min(frames_val) > max(frames_train)


def test_processes_cover_the_split_disjointly_and_completely(grid_faces):
    whole = pipeline.FaceSource([grid_faces["a"]], "train", 32)
    parts = [pipeline.FaceSource([grid_faces["a"]], "train", 32, process_index=i, process_count=2)
             for i in range(2)]
    frames = [set(p.frame.tolist()) for p in parts]
    assert not frames[0] & frames[1]
    assert frames[0] | frames[1] == set(whole.frame.tolist())


def test_batches_are_a_pure_function_of_seed_and_step(grid_faces):
    tables = {k: pipeline.FaceSource([v], "train", 32) for k, v in grid_faces.items()}
    make = lambda seed: pipeline.FaceBatches(tables, global_batch=8, seed=seed,
                                             fields=("image", "mask"))
    a, b = make(0), make(0)
    for step in (0, 5, 9, 40):  # 40·8 > 67: crosses epochs
        x, y = a(step), b(step)
        np.testing.assert_array_equal(x["a"]["image"], y["a"]["image"])
        np.testing.assert_array_equal(x["b"]["mask"], y["b"]["mask"])
    assert not np.array_equal(a(1)["a"]["image"], a(2)["a"]["image"])
    assert not np.array_equal(a(1)["a"]["image"], make(1)(1)["a"]["image"])
    # Each epoch visits every example once.
    sampler = pipeline.EpochSampler(67, 67, 3)
    assert sorted(sampler.indices(0).tolist()) == list(range(67))
    assert sorted(sampler.indices(1).tolist()) == list(range(67))


def test_full_mode_splits_one_global_batch_across_processes(grid_faces):
    tables = {"a": pipeline.FaceSource([grid_faces["a"]], "train", 32)}
    full = dict(global_batch=8, seed=0, fields=("image",), per_process=False)
    one = pipeline.FaceBatches(tables, **full)(3)["a"]["image"]
    parts = [pipeline.FaceBatches(tables, process_index=i, process_count=2, **full)(3)
             for i in range(2)]
    np.testing.assert_array_equal(np.concatenate([p["a"]["image"] for p in parts]), one)


def test_global_arrays_are_sharded_on_the_mesh(grid_faces):
    tables = {"a": pipeline.FaceSource([grid_faces["a"]], "train", 32)}
    batch = pipeline.FaceBatches(tables, global_batch=8, seed=0, fields=("image",))(0)
    mesh = parallel.make_mesh()
    g = pipeline.to_global(batch, parallel.batch_sharding(mesh))
    assert g["a"]["image"].shape == (8, 32, 32, 3)
    assert len(g["a"]["image"].addressable_shards) == jax.device_count()
    np.testing.assert_array_equal(np.asarray(g["a"]["image"]), batch["a"]["image"])


def test_degradation_is_deterministic_and_changes_images(grid_faces):
    tables = {"a": pipeline.FaceSource([grid_faces["a"]], "train", 32)}
    deg = dict(prob=1.0, max_blur=1.5, jpeg_min=20)
    plain = dict(global_batch=4, seed=0, fields=("image",))
    x = pipeline.FaceBatches(tables, degrade=deg, **plain)(2)["a"]["image"]
    y = pipeline.FaceBatches(tables, degrade=deg, **plain)(2)["a"]["image"]
    z = pipeline.FaceBatches(tables, **plain)(2)["a"]["image"]
    np.testing.assert_array_equal(x, y)
    assert np.abs(x.astype(int) - z.astype(int)).mean() > 1


def test_not_an_extraction_dir(tmp_path):
    with pytest.raises(UserError, match="not an extraction directory"):
        tfds_faces.builder(str(tmp_path))


def test_yaw_sampling_draws_every_pose_as_often():
    """90 frontal faces and 10 turned ones: evenly over yaw, half the draws are turned faces
    (an epoch sampler gives 10%); the draws are a pure function of (seed, step)."""
    yaws = np.array([0.0] * 90 + [0.9] * 10)
    s = pipeline.YawSampler(yaws, 64, (0, 1), bins=16)
    turned = np.concatenate([s.indices(step) for step in range(50)]) >= 90
    assert 0.45 < turned.mean() < 0.55
    np.testing.assert_array_equal(s.indices(7), pipeline.YawSampler(yaws, 64, (0, 1), 16)
                                  .indices(7))
    assert not np.array_equal(s.indices(7), s.indices(8))
    # Beyond the span: the end bins.
    ends = pipeline.YawSampler(np.array([-3.0, 3.0]), 8, 0, bins=4)
    assert [g.tolist() for g in ends.groups] == [[0], [1]]


def test_yaw_sampling_through_the_batches(grid_faces):
    table = pipeline.FaceSource([grid_faces["a"]], "train", 32)
    yaw = dict(global_batch=8, seed=0, fields=("landmarks",), yaw_bins=128)
    batches = pipeline.FaceBatches({"a": table}, **yaw)
    assert isinstance(batches._samplers["a"], pipeline.YawSampler)
    np.testing.assert_array_equal(batches(3)["a"]["landmarks"],
                                  pipeline.FaceBatches({"a": table}, **yaw)(3)["a"]["landmarks"])


def test_two_runs_preparing_one_dataset_wait_for_each_other(grid_faces, tmp_path):
    """Two trainings started together on one extraction folder: the second waits while the
    first prepares the dataset, then reads it (they used to race, and one failed on the other's
    rename). The test holds the lock until both processes are waiting, so they start together."""
    import subprocess
    import sys
    import time
    from facejax import lock
    from tests.helpers import ROOT
    data_dir = str(tmp_path / "tfds")
    code = ("import sys; from facejax.data import tfds_faces; "
            "b = tfds_faces.builder(sys.argv[1], sys.argv[2]); "
            "print(b.info.splits['train'].num_examples)")
    with lock.wait_turn(os.path.join(data_dir, ".prepare.lock")):
        procs = [subprocess.Popen([sys.executable, "-c", code, grid_faces["a"], data_dir],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        time.sleep(8)  # both import TensorFlow and block on the lock
        assert all(p.poll() is None for p in procs)
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-500:] for _, e in outs]
    assert [o.split()[-1] for o, _ in outs] == ["67", "67"]
    # The one that prepared it says so on one line of ours, not TFDS's download wording.
    said = [line for o, _ in outs for line in o.splitlines()[:-1]]
    assert len(said) == 1 and said[0].startswith(
        f"preparing dataset for {grid_faces['a']}: 75 faces at 64 px (once; kept in {data_dir}"), said
    assert not [n for n in os.listdir(os.path.join(data_dir, "facejax_faces"))
                if n.startswith("incomplete")]


def test_source_decodes_the_records_on_demand(grid_faces):
    """FaceSource's decoding equals TFDS's own, at the extracted size and resized."""
    import cv2
    records = tfds_faces.builder(grid_faces["a"]).as_data_source("train")
    fields = ("image", "mask", "parts", "landmark_image", "landmarks", "frame")
    idx = np.array([5, 0, 66, 5])
    full = pipeline.FaceSource([grid_faces["a"]], "train", 64).take(idx, fields)
    small = pipeline.FaceSource([grid_faces["a"]], "train", 40).take(idx, fields)
    for row, i in enumerate(idx):
        ex = records[int(i)]
        for f in ("image", "parts", "landmark_image", "mask"):
            want = ex[f][..., 0] if f == "mask" else ex[f]
            np.testing.assert_array_equal(full[f][row], want, err_msg=f)
            np.testing.assert_array_equal(
                small[f][row], cv2.resize(want, (40, 40), interpolation=cv2.INTER_AREA))
        np.testing.assert_allclose(small["landmarks"][row], ex["landmarks"] * 40 / 64, rtol=1e-6)
        assert full["frame"][row] == ex["frame"]
    assert set(full) == set(fields) and full["image"].dtype == np.uint8


def test_a_tfrecord_dataset_is_rebuilt_as_array_record(grid_faces, tmp_path, capsys):
    import tensorflow_datasets as tfds
    d = str(tmp_path / "faces")
    shutil.copytree(grid_faces["a"], d, ignore=shutil.ignore_patterns("tfds"))
    old = os.path.join(d, "tfds", tfds_faces.fingerprint(d))
    tfds_faces.FacejaxFaces(extraction_dir=d, data_dir=old, file_format="tfrecord") \
        .download_and_prepare(download_config=tfds.download.DownloadConfig(
            try_download_gcs=False))
    capsys.readouterr()
    b = tfds_faces.builder(d)
    said = capsys.readouterr().out.splitlines()
    assert said[0] == (f"{d}: rebuilding the prepared dataset at {b.data_dir} as ArrayRecord, "
                       "which training streams from (it was TFRecord)")
    assert b.info.file_format.value == "array_record"
    assert not [f for f in os.listdir(b.data_dir) if "tfrecord" in f]
    assert len(pipeline.FaceSource([d], "train", 64)) == 67
    tfds_faces.builder(d)  # once: the next run reads it as it is
    assert "rebuilding" not in capsys.readouterr().out


class _FailsAt:
    """A batch function that raises a UserError at one step (pickled to the workers)."""

    def __init__(self, step):
        self.step = step

    def __call__(self, step):
        if step == self.step:
            raise UserError(f"{self.step}: cannot read this step's faces")
        return {"a": {"step": np.full((2,), step)}}


def test_loader_workers_prepare_the_steps_batches_in_order(grid_faces):
    """Worker processes give exactly the in-process batches, host augmentation included, in
    step order from any start; an error in a worker reaches the training process."""
    from facejax import tasks
    from facejax.training import inputs
    from facejax.experiments import deepfakes_original
    c = deepfakes_original.get_config("tiny")
    c.augment.placement = "host"
    task = tasks.get(c.task)
    sources = {n: pipeline.FaceSource([grid_faces[n]], "train", c.data.load_size)
               for n in task.identities}
    batches = pipeline.FaceBatches(sources, global_batch=4, seed=0, fields=task.fields,
                                   augment=inputs.host_augment(c, task))
    loader = pipeline.Loader(batches, 5, 9, workers=2)
    try:
        for want_step in range(5, 9):
            step, got = loader.next()
            assert step == want_step
            want = batches(step)
            for n in want:
                assert set(got[n]) == {"warped", "target"}
                for k in want[n]:
                    np.testing.assert_array_equal(got[n][k], want[n][k])
    finally:
        loader.close()
    loader = pipeline.Loader(_FailsAt(2), 0, 4, workers=1)
    try:
        assert loader.next()[0] == 0 and loader.next()[0] == 1
        with pytest.raises(UserError) as e:
            loader.next()
        assert str(e.value) == "2: cannot read this step's faces"  # the one line the CLI prints
    finally:
        loader.close()
