"""Training guarantees: divergence rollback, a failed save through the train tool, bad data and
workdirs, all checked before or without losing work (the checkpoint's own guarantees are in
tests/test_checkpoint.py)."""

import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from facejax.experiments import deepfakes_original
from facejax import checkpoint, train
from facejax.data import tfds_faces
from facejax.errors import UserError
from tests.helpers import ROOT, assert_same_params, params_of

TINY = "--config=experiments/deepfakes_original.py:tiny"


def tiny(grid_faces, **kw):
    c = deepfakes_original.get_config("tiny")
    c.data.a, c.data.b = grid_faces["a"], grid_faces["b"]
    c.eval_every = c.preview_every = 0
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def test_nan_rolls_back_and_continues_at_a_lower_learning_rate(grid_faces, tmp_path, capsys):
    """A learning rate of 1e30 makes step 2 non-finite (a real overflow, not a mock). With
    rollback on, the run reloads its last good checkpoint (the initial state, saved because
    rollback is on) and goes on at lr x factor: the result equals a clean run at that rate."""
    factor = 1e-34
    c = tiny(grid_faces, num_steps=4, checkpoint_every=2, rollback=2)
    c.rollback_lr_factor = factor
    c.optim.learning_rate = 1e30
    wd = str(tmp_path / "rolled")
    out = train.train(c, wd)
    assert out["step"] == 4 and np.isfinite(out["loss"])
    log = json.load(open(os.path.join(wd, "rollback.json")))
    assert log["count"] == 1 and log["lr_scale"] == factor
    assert log["events"] == [{"non_finite_at": 2, "rolled_back_to": 0, "lr_scale": factor}]
    ck = checkpoint.Checkpointer(wd, read_only=True)
    assert ck.all_steps() == [0, 2, 4]
    ck.close()
    for step in (0, 2, 4):
        assert all(np.isfinite(x).all() for x in jax.tree.leaves(params_of(wd, step)))

    clean = tiny(grid_faces, num_steps=4, checkpoint_every=2)
    clean.optim.learning_rate = 1e30 * factor
    train.train(clean, str(tmp_path / "clean"))
    assert_same_params(params_of(wd), params_of(str(tmp_path / "clean")), atol=0)

    # Resuming keeps the reduced rate (it says so), and with the rollbacks used up a new
    # divergence stops the run.
    c.num_steps, c.rollback = 6, 1
    c.optim.learning_rate = 3e38  # the largest float32: still 3e4 after x1e-34
    capsys.readouterr()
    with pytest.raises(train.Diverged, match="non-finite loss or gradient at step 6.*1 "
                                             "rollback"):
        train.train(c, wd)
    assert "learning rate x1e-34 after 1 rollback(s)" in capsys.readouterr().out
    ck = checkpoint.Checkpointer(wd, read_only=True)
    assert ck.latest_step() == 4
    ck.close()


# Runs tools/train.py with writes past 256 kB failing (EFBIG), as on a full disk.
_LIMITED = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY)); "
            "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def test_the_train_tool_reports_a_failed_save_on_one_line(grid_faces, tmp_path):
    from facejax.data import tfds_faces
    for d in grid_faces.values():
        tfds_faces.builder(d)  # prepared before the limit (that failure is tested below)
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="1")
    cmd = [sys.executable, "-c", _LIMITED, "tools/train.py", TINY, f"--workdir={tmp_path}",
           f"--config.data.a={grid_faces['a']}", f"--config.data.b={grid_faces['b']}",
           "--config.num_steps=2", "--config.checkpoint_every=2"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "saving the checkpoint of step 2 failed" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not [p for p in os.listdir(tmp_path / "checkpoints") if p.isdigit()]

    # Preparing the TFDS dataset on a full disk: one line, and no prepared folder is left.
    fresh = str(tmp_path / "fresh")
    shutil.copytree(grid_faces["a"], fresh, ignore=shutil.ignore_patterns("tfds"))
    cmd[cmd.index(f"--config.data.a={grid_faces['a']}")] = f"--config.data.a={fresh}"
    cmd[cmd.index(f"--workdir={tmp_path}")] = f"--workdir={tmp_path / 'second'}"
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "preparing the dataset in" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    prepared = os.path.join(fresh, "tfds")
    assert not [p for _, dirs, _ in os.walk(prepared) for p in dirs
                if p == str(tfds_faces.FacejaxFaces.VERSION)]


def test_workdir_and_model_checks_come_before_any_work(grid_faces, tiny_ae_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="--workdir .*not writable"):
        train.train(tiny(grid_faces), str(blocker / "run"))
    # Another resolution of the same family is another model.
    c = tiny(grid_faces)
    c.model.size = 48
    with pytest.raises(UserError, match="holds a run of another model"):
        train.train(c, tiny_ae_run)


def test_one_persons_data_for_two_identities_is_refused(grid_faces, tmp_path):
    twin = str(tmp_path / "twin")
    shutil.copytree(grid_faces["a"], twin, ignore=shutil.ignore_patterns("tfds"))
    for b in (grid_faces["a"], twin):
        c = tiny(grid_faces)
        c.data.b = b
        with pytest.raises(UserError, match="the same faces as --config.data.a"):
            train.train(c, str(tmp_path / "run"))
    c = tiny(grid_faces)
    c.data.b = ""
    with pytest.raises(UserError, match="--config.data.b: no extraction directory"):
        train.train(c, str(tmp_path / "run"))


def test_other_crop_size_and_corrupt_or_missing_shards(grid_faces, tmp_path):
    from facejax.data import pipeline, tfds_faces
    with pytest.raises(UserError, match="extracted at 64 px, smaller than the 128 px"):
        pipeline.FaceSource([grid_faces["a"]], "train", 128)
    d = str(tmp_path / "faces")
    shutil.copytree(grid_faces["a"], d, ignore=shutil.ignore_patterns("tfds"))
    prepared = tfds_faces.builder(d).data_dir
    shard = [f for f in os.listdir(prepared) if "-train.array_record" in f][0]
    path = os.path.join(prepared, shard)
    data = open(path, "rb").read()
    bad = f"{re.escape(path)} is unreadable .*; delete {re.escape(prepared)} to rebuild it$"
    with open(path, "wb") as f:  # truncated mid-record
        f.write(data[: len(data) // 2])
    with pytest.raises(UserError, match=bad):
        pipeline.FaceSource([d], "train", 40)
    os.unlink(path)
    with pytest.raises(UserError, match=bad):
        pipeline.FaceSource([d], "train", 40)
    with open(path, "wb") as f:  # one byte flipped in the middle: a chunk's checksum fails
        mid = len(data) // 3
        f.write(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:])
    with pytest.raises(UserError, match=bad):  # found when the source opens, not mid-run
        pipeline.FaceSource([d], "train", 40)
    with open(path, "wb") as f:  # same length, every byte flipped
        f.write(bytes(b ^ 0x5A for b in data))
    with pytest.raises(UserError, match=bad):
        pipeline.FaceSource([d], "train", 40)
    shutil.rmtree(prepared)  # what the message says to do: the dataset is rebuilt
    assert len(pipeline.FaceSource([d], "train", 40)) == len(
        pipeline.FaceSource([grid_faces["a"]], "train", 40))

