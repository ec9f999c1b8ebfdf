"""A trained workdir is self-contained: moved elsewhere, with its training data deleted, it
converts, evaluates and reenacts exactly as before (facejax/run_info.py, facejax/inference.py)."""

import json
import os
import shutil

import numpy as np
import pytest

from facejax.experiments import deepfakes_original, face2face_pix2pix
from facejax import convert, evaluate, inference, reenact, run_info, train
from facejax.errors import UserError
from facejax.faces import video
from tests.helpers import GRID

CLIP_A = os.path.join(GRID, "GRID_bbaf2n.mpg")
CLIP_B = os.path.join(GRID, "GRID_brbk7n.mpg")


def _outputs(ae: str, f2f: str, out: str) -> dict:
    """Converted frames, evaluation figures and reenacted frames of the two runs."""
    os.makedirs(out)
    model = inference.load_swap_model(ae, "b2a", 4)
    convert.convert(model, CLIP_B, f"{out}/swapped.mp4", convert.ConvertOptions(batch=4),
                    verbose=False)
    m = evaluate.evaluate(ae, CLIP_A, CLIP_B, f"{out}/eval",
                          opts=evaluate.EvalOptions(max_frames=4, samples=2), verbose=False)
    reenact.reenact(f2f, CLIP_B, f"{out}/reenacted.mp4", batch=4, verbose=False)
    frames = lambda p: np.stack([f for _, f in video.FrameSource(p).frames()])
    return {"swapped": frames(f"{out}/swapped.mp4"), "reenacted": frames(f"{out}/reenacted.mp4"),
            "eval": {d: (m[d]["reconstruction"]["per_frame_psnr"],
                         m[d]["identity"]["per_frame_distance_to_target"]) for d in ("a2b", "b2a")}}


def test_a_moved_run_without_its_data_gives_the_same_outputs(grid_faces, tmp_path, monkeypatch):
    # The runs' own copies of the faces, named relative to the working folder (as users do).
    monkeypatch.chdir(tmp_path)
    for n in ("a", "b"):
        shutil.copytree(grid_faces[n], tmp_path / f"faces_{n}")
    ae = deepfakes_original.get_config("tiny")
    ae.data.a, ae.data.b = "faces_a", "faces_b"
    f2f = face2face_pix2pix.get_config("tiny")
    f2f.data.a = "faces_a"
    for c in (ae, f2f):
        c.num_steps, c.eval_every, c.preview_every, c.batch_size = 2, 0, 0, 8
    train.train(ae, "runs/ae")
    train.train(f2f, "runs/f2f")
    saved = json.loads((tmp_path / "runs/ae/config.json").read_text())
    assert saved["data"]["a"] == str(tmp_path / "faces_a")  # absolute, for reference
    info = json.loads((tmp_path / "runs/ae" / run_info.FILE).read_text())
    assert info["identities"]["a"]["extraction"]["coverage"] == pytest.approx(0.75)
    before = _outputs("runs/ae", "runs/f2f", str(tmp_path / "before"))

    os.rename(tmp_path / "runs", tmp_path / "moved")
    for n in ("a", "b"):
        shutil.rmtree(tmp_path / f"faces_{n}")
    after = _outputs("moved/ae", "moved/f2f", str(tmp_path / "after"))
    np.testing.assert_array_equal(after["swapped"], before["swapped"])
    np.testing.assert_array_equal(after["reenacted"], before["reenacted"])
    assert after["eval"] == before["eval"]

    # Without the record, the data is needed: one line saying how to get it back.
    os.unlink(tmp_path / "moved/f2f" / run_info.FILE)
    with pytest.raises(UserError, match="inference.json: missing, and the training data"):
        inference.load_run("moved/f2f")
