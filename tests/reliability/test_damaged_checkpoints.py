"""A checkpoint damaged on disk (a flipped byte, a truncated or a missing array file): a rerun
resumes from the previous intact checkpoint with one line and keeps the damaged one; the
inference tools name it and use an earlier one only when asked (--step). The checkpoint's own
checks are in tests/test_checkpoint.py."""

import os
import re
import shutil

import pytest

from facejax import checkpoint, train
from facejax.experiments import deepfakes_original
from tests.helpers import DATA, assert_params_agree, params_of, run_tool
from tests.test_checkpoint import damage


def _config(grid_faces):
    c = deepfakes_original.get_config("tiny")
    c.data.a, c.data.b = grid_faces["a"], grid_faces["b"]
    c.num_steps, c.checkpoint_every = 4, 2
    c.eval_every = c.preview_every = 0
    return c


@pytest.fixture(scope="module")
def straight(grid_faces, tmp_path_factory):
    """A tiny autoencoder trained 4 steps, checkpoints at steps 2 and 4."""
    wd = str(tmp_path_factory.mktemp("straight"))
    train.train(_config(grid_faces), wd)
    return wd


def _damaged_copy(straight, tmp_path, how) -> str:
    wd = str(tmp_path / "run")
    shutil.copytree(straight, wd)
    damage(os.path.join(wd, "checkpoints", "4"), how)
    return wd


@pytest.mark.parametrize("how", ["flip", "truncate", "remove"])
def test_a_rerun_resumes_from_the_previous_checkpoint_and_keeps_the_damaged_one(
        grid_faces, straight, tmp_path, capfd, how):
    wd = _damaged_copy(straight, tmp_path, how)
    damaged_files = {os.path.relpath(os.path.join(r, f), os.path.join(wd, "checkpoints", "4")):
                     open(os.path.join(r, f), "rb").read()
                     for r, _, fs in os.walk(os.path.join(wd, "checkpoints", "4")) for f in fs}
    capfd.readouterr()
    out = train.train(_config(grid_faces), wd)
    err = capfd.readouterr().err
    assert out["step"] == 4
    lines = [line for line in err.splitlines() if "damaged" in line]
    kept = os.path.join(wd, "damaged_checkpoints", "4")
    assert len(lines) == 1 and re.fullmatch(
        rf"warning: checkpoint 4 at {re.escape(wd)}/checkpoints/4 is damaged \(.+\): resuming "
        rf"from step 2; it is kept for inspection at {re.escape(kept)}", lines[0]), err
    assert "Traceback" not in err
    # The damaged checkpoint is kept byte for byte; a new, intact one of step 4 replaces it.
    assert {os.path.relpath(os.path.join(r, f), kept): open(os.path.join(r, f), "rb").read()
            for r, _, fs in os.walk(kept) for f in fs} == damaged_files
    ck = checkpoint.Checkpointer(wd, read_only=True)
    assert ck.all_steps() == [2, 4]
    ck.close()
    c = _config(grid_faces)
    assert_params_agree(params_of(wd), params_of(straight), c.optim.learning_rate, 2)


def test_no_intact_checkpoint_is_one_line_and_nothing_is_moved(grid_faces, straight, tmp_path):
    wd = _damaged_copy(straight, tmp_path, "truncate")
    damage(os.path.join(wd, "checkpoints", "2"), "flip")
    with pytest.raises(train.RunError, match=r"no intact checkpoint to resume from: step 4 is "
                                             r"damaged .*; step 2 is damaged .*move them aside"):
        train.train(_config(grid_faces), wd)
    assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == ["2", "4"]
    assert not os.path.exists(os.path.join(wd, "damaged_checkpoints"))


def test_convert_names_the_damaged_checkpoint_and_uses_an_earlier_one_when_asked(
        straight, tmp_path):
    wd = _damaged_copy(straight, tmp_path, "flip")
    still = os.path.join(DATA, "stills", "astronaut.png")
    proc = run_tool("tools/convert.py", f"--model={wd}", f"--input={still}",
                    f"--output={tmp_path}/out.png")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert last.startswith(f"error: {wd}/checkpoints/4: the checkpoint of step 4 is damaged ("), \
        last
    assert last.endswith("; pass --step=2 to use the checkpoint before it")
    assert not os.path.exists(tmp_path / "out.png")
    proc = run_tool("tools/convert.py", f"--model={wd}", f"--input={still}",
                    f"--output={tmp_path}/out.png", "--step=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.isfile(tmp_path / "out.png")
    assert os.path.isdir(os.path.join(wd, "checkpoints", "4"))  # inference moves nothing
