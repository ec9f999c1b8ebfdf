"""`facejax xseg apply`: a trained XSeg run's masks for every face of an extraction folder,
written beside the crops, resumable, counted, with one-line errors; the dataset's fingerprint
counts them."""

import json
import os
import shutil

import numpy as np
import pytest

from facejax import inference, segment
from facejax.data import tfds_faces
from facejax.errors import UserError
from facejax.faces import video
from tests.helpers import run_tool


def _crops(folder):
    root = os.path.join(folder, "inputs")
    return [(k, n) for k in sorted(os.listdir(root))
            for n in sorted(os.listdir(os.path.join(root, k, "faces")))]


def test_apply_writes_every_mask_once_and_resumes(grid_faces, xseg_run, tmp_path):
    folder = str(tmp_path / "faces")
    shutil.copytree(grid_faces["a"], folder, ignore=shutil.ignore_patterns("tfds"))
    before = tfds_faces.fingerprint(folder)
    crops = _crops(folder)
    counts = segment.apply(xseg_run, folder, batch=8, verbose=False)
    assert counts.as_dict() == {"written": len(crops), "kept": 0, "failed": 0}
    key, name = crops[5]
    mask = video.read_image(segment.mask_path(folder, key, name))[..., 0]
    crop = video.read_image(os.path.join(folder, "inputs", key, "faces", name))
    assert mask.shape == crop.shape[:2]
    want = inference.load_segmenter(xseg_run, 8)(crop[None])[0]
    np.testing.assert_array_equal(mask, want)
    counted = tfds_faces.fingerprint(folder)
    assert counted != before
    # Resumed: nothing to do; one mask removed: only it is written again.
    assert segment.apply(xseg_run, folder, verbose=False).as_dict() == {
        "written": 0, "kept": len(crops), "failed": 0}
    os.remove(segment.mask_path(folder, key, name))
    assert tfds_faces.fingerprint(folder) != counted
    assert segment.apply(xseg_run, folder, verbose=False).written == 1
    assert tfds_faces.fingerprint(folder) == counted
    np.testing.assert_array_equal(
        video.read_image(segment.mask_path(folder, key, name))[..., 0], mask)


def test_the_command_counts_names_an_unreadable_crop_and_refuses_other_models(
        grid_faces, xseg_run, tiny_ae_run, tmp_path):
    folder = str(tmp_path / "faces")
    shutil.copytree(grid_faces["a"], folder, ignore=shutil.ignore_patterns("tfds"))
    key, name = _crops(folder)[3]
    bad = os.path.join(folder, "inputs", key, "faces", name)
    with open(bad, "wb") as f:
        f.write(b"not a png")
    proc = run_tool("tools/xseg.py", "apply", f"--model={xseg_run}", f"--faces={folder}")
    assert proc.returncode == 1, proc.stderr[-2000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts == {"written": len(_crops(folder)) - 1, "kept": 0, "failed": 1}
    assert f"error: {bad}" in proc.stdout and "Traceback" not in proc.stderr
    for args, message in (
            (["apply", f"--model={tiny_ae_run}", f"--faces={folder}"],
             f"error: --model={tiny_ae_run}: its task autoencoder predicts no face mask"),
            (["apply", f"--model={xseg_run}", f"--faces={tmp_path}"],
             f"error: --faces={tmp_path}: no extracted faces"),
            ([f"--model={xseg_run}", f"--faces={folder}"],
             "error: facejax xseg: expected the action apply, got none")):
        proc = run_tool("tools/xseg.py", *args)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr[-500:]
        assert "Traceback" not in proc.stderr
