"""The run record (facejax/run_info.py, built by facejax/data/run_record.py): what training
writes of its data so that inference needs none of it; a missing or broken record is one line
saying how to write it again."""

import glob
import json
import os
import shutil

import numpy as np
import pytest

from facejax import run_info, runs
from facejax.data import run_record, tfds_faces
from facejax.errors import UserError
from facejax.faces import align


def _aligned_mean(folder: str) -> np.ndarray:
    """Mean aligned landmark shape of an extraction folder's faces, in crop sides, read
    straight from its alignments files."""
    size = json.load(open(os.path.join(folder, "extract_config.json")))["size"]
    shapes = []
    for path in glob.glob(os.path.join(folder, "inputs", "*", "alignments.jsonl")):
        for line in open(path):
            r = json.loads(line)
            shapes.append(align.transform_points(np.asarray(r["affine"]),
                                                 np.asarray(r["landmarks"])) / size)
    assert shapes
    return np.mean(shapes, axis=0)


def test_the_record_written_at_training_start_round_trips(tiny_ae_run, grid_faces):
    config = runs.load_config(tiny_ae_run)
    info = run_info.read(tiny_ae_run)
    assert info == json.loads(json.dumps(run_record.from_data(config, ("a", "b"))))
    assert run_info.held_out_fraction(info, tiny_ae_run) == tfds_faces.VAL_FRACTION
    for name in ("a", "b"):
        assert info["identities"][name]["folder"] == os.path.abspath(grid_faces[name])
        assert info["identities"][name]["extraction"] == {"size": 64, "coverage": 0.75}
        assert run_info.coverage(info, name) == 0.75


def test_mean_landmarks_are_the_mean_aligned_shape_of_the_faces(grid_faces, tmp_path):
    info = run_record.from_data(_config(grid_faces), ("a", "b"))
    run_info.write(str(tmp_path), info)
    info = run_info.read(str(tmp_path))
    for name in ("a", "b"):
        mean = run_info.mean_landmarks(info, name, 128)
        assert mean.shape == (68, 2) and mean.dtype == np.float32
        np.testing.assert_allclose(mean, _aligned_mean(grid_faces[name]) * 128, atol=1e-3)
        # Aligned faces sit on the template alignment fits them to, up to their expression.
        assert np.median(np.abs(mean - align.mean_face_in_crop(128, 0.75))) < 128 * 0.03
    assert info["identities"]["a"]["faces"] == 75


def _config(grid_faces):
    from facejax.experiments import deepfakes_original
    c = deepfakes_original.get_config("tiny")
    c.data.a, c.data.b = grid_faces["a"], grid_faces["b"]
    return c


def test_folders_of_different_coverages_are_refused(grid_faces, tmp_path):
    wide = tmp_path / "wide"
    shutil.copytree(grid_faces["a"], wide, ignore=shutil.ignore_patterns("tfds"))
    settings = json.loads((wide / "extract_config.json").read_text())
    (wide / "extract_config.json").write_text(json.dumps(dict(settings, coverage=0.6)))
    with pytest.raises(UserError, match="different --coverage"):
        run_record.describe(f"{grid_faces['a']},{wide}", "--config.data.a")


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_a_missing_record_says_how_to_write_it(tmp_path):
    with pytest.raises(UserError) as e:
        run_info.read(str(tmp_path))
    msg = _one_line(e)
    assert msg.startswith(str(tmp_path / run_info.FILE)) and "missing" in msg
    assert "rerun `facejax train` on this workdir with its training data" in msg
    with pytest.raises(UserError, match="no such workdir"):
        run_info.read(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("content", ['{"version": 99, "identities": {}}', "[1, 2]",
                                     '{"version": 1}', "{not json"])
def test_a_broken_record_is_one_line(tmp_path, content):
    (tmp_path / run_info.FILE).write_text(content)
    with pytest.raises(UserError) as e:
        run_info.read(str(tmp_path))
    assert _one_line(e).startswith(str(tmp_path / run_info.FILE))


def test_a_record_without_the_held_out_share_says_how_to_write_it(tmp_path):
    run_info.write(str(tmp_path), {"version": run_info.VERSION, "identities": {}})
    info = run_info.read(str(tmp_path))
    with pytest.raises(UserError, match="records no held-out share.*rerun `facejax train`"):
        run_info.held_out_fraction(info, str(tmp_path))
    with pytest.raises(UserError, match="records no identity 'a'"):
        run_info.coverage(info)
