"""Data settings of several folders: globs, per-folder weights, a pretraining set."""

import json
import os

import numpy as np
import pytest

from facejax import tasks, train
from facejax.training import inputs
from facejax.data import pipeline, source
from facejax.errors import UserError
from facejax.experiments import deepfakes_original


def test_folder_settings_are_parsed_with_globs_and_weights(tmp_path):
    for name in ("clip1", "clip2", "other"):
        (tmp_path / name).mkdir()
    spec = f"{tmp_path}/clip*@2.5, {tmp_path}/other"
    assert source.entries(spec, "--config.data.a") == [
        (f"{tmp_path}/clip1", 2.5), (f"{tmp_path}/clip2", 2.5), (f"{tmp_path}/other", None)]
    assert source.weights(spec, "--config.data.a") == [2.5, 2.5, 1.0]
    assert source.weights(f"{tmp_path}/clip1,{tmp_path}/other", "--config.data.a") is None
    with pytest.raises(UserError, match=r"^--config.data.b: .*/nope\* matches no folder$"):
        source.folders(f"{tmp_path}/nope*", "--config.data.b")
    for bad in ("0", "-1", "x", "inf"):
        with pytest.raises(UserError, match=f"^--config.data.a: .*@{bad}: the weight after @"):
            source.entries(f"{tmp_path}/other@{bad}", "--config.data.a")
    with pytest.raises(UserError, match="^--config.data.a: no extraction directory given$"):
        source.folders(" , ", "--config.data.a")


def test_a_source_of_two_folders_reads_both(grid_faces):
    one = {k: pipeline.FaceSource([v], "train", 32) for k, v in grid_faces.items()}
    both = pipeline.FaceSource([grid_faces["a"], grid_faces["b"]], "train", 32)
    assert len(both) == len(one["a"]) + len(one["b"]) and both.identity == "a,b"
    assert both.part_sizes() == [len(one["a"]), len(one["b"])]
    idx = np.array([0, len(one["a"]) - 1, len(one["a"]), len(both) - 1])
    got = both.take(idx, ("image", "landmarks"))
    np.testing.assert_array_equal(got["image"][1], one["a"].take([len(one["a"]) - 1],
                                                                  ("image",))["image"][0])
    np.testing.assert_array_equal(got["image"][2], one["b"].take([0], ("image",))["image"][0])
    np.testing.assert_array_equal(got["landmarks"][3], one["b"].landmarks[-1])
    with pytest.raises(UserError, match="data_dir=.*: holds the dataset of one"):
        pipeline.FaceSource([grid_faces["a"], grid_faces["b"]], "train", 32, data_dir="/tmp/x")


def test_weighted_draws_follow_the_weights_not_the_record_counts():
    """A folder of 10 records weighted 3 against one of 990 weighted 1: three draws in four
    come from the small one (record counts would give 1%)."""
    s = pipeline.WeightedSampler([10, 990], [3, 1], 64, (0, 1))
    draws = np.concatenate([s.indices(step) for step in range(100)])
    assert 0.72 < (draws < 10).mean() < 0.78
    assert draws.min() >= 0 and draws.max() < 1000 and len(np.unique(draws[draws >= 10])) > 500
    np.testing.assert_array_equal(s.indices(5),
                                  pipeline.WeightedSampler([10, 990], [3, 1], 64, (0, 1))
                                  .indices(5))
    assert not np.array_equal(s.indices(5), s.indices(6))


def test_pretraining_reads_one_set_for_every_identity(grid_faces, tmp_path):
    """--config.data.pretrain: both sides read the generic set (here two people, the second
    weighted 3), no check that the sides differ; the run records that set for inference."""
    c = deepfakes_original.get_config("tiny")
    c.data.a, c.data.b = grid_faces["a"], grid_faces["a"]  # ignored while pretraining
    c.data.pretrain = f"{grid_faces['a']},{grid_faces['b']}@3"
    c.num_steps, c.eval_every, c.checkpoint_every = 4, 4, 4
    c.data.workers = 0
    metrics = train.train(c, str(tmp_path))
    assert metrics["step"] == 4
    info = json.load(open(os.path.join(tmp_path, "inference.json")))
    for side in ("a", "b"):
        assert info["identities"][side]["faces"] == 150  # both clips' faces
        assert info["identities"][side]["folder"] == f"{grid_faces['a']},{grid_faces['b']}"
    saved = json.load(open(os.path.join(tmp_path, "config.json")))
    assert saved["data"]["pretrain"] == f"{grid_faces['a']},{grid_faces['b']}@3"
    sources = inputs.open_sources(c, tasks.get(c.task), "train", True)
    assert isinstance(pipeline.sampler(sources["a"], 4, 0), pipeline.WeightedSampler)
    c.data.yaw_bins = 16
    with pytest.raises(UserError, match="yaw_bins: .*use one of them"):
        train.train(c, str(tmp_path / "yaw"))
