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
from tests.helpers import GRID, run_tool

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

    # Without the record: one line saying how to write it again (the data is never read).
    os.unlink(tmp_path / "moved/f2f" / run_info.FILE)
    with pytest.raises(UserError, match="inference.json: missing .*rerun `facejax train`"):
        inference.load_run("moved/f2f")


def test_a_trained_run_loads_without_the_data_code_or_tensorflow(tiny_ae_run):
    # A fresh process, as facejax convert is: what loading and running the swap imports.
    code = ("import json, sys; import numpy as np; from facejax import convert, inference; "
            "m = inference.load_swap_model(sys.argv[1], 'b2a', 2); "
            "out = np.asarray(m.fn(np.zeros((1, m.size, m.size, 3), np.uint8))); "
            "print(json.dumps({'shape': out.shape, 'size': m.size, 'modules': sorted("
            "n for n in sys.modules if n.split('.')[0] in ('tensorflow', 'tensorflow_datasets') "
            "or n == 'facejax.data' or n.startswith('facejax.data.'))}))")
    proc = run_tool("-c", code, tiny_ae_run, check=True)
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    size = loaded["size"]
    assert size == deepfakes_original.get_config("tiny").model.size
    assert loaded["shape"] == [1, size, size, 3]
    assert loaded["modules"] == []
