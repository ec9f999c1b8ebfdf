"""The training core on real faces: sharding, multi-process, exact resume, divergence, learning."""

import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from facejax.experiments import deepfakes_original
from facejax import checkpoint, train
from facejax.data import pipeline, tfds_faces
from facejax.faces import video
from facejax.tasks import autoencoder as ae_task
from facejax.training import run_files
from tests.helpers import (ROOT, assert_params_agree, assert_same_params, compilations,
                           params_of, run_tool, state_shapes, train_steps_on)

CONFIG = "--config=experiments/deepfakes_original.py:tiny"


def tiny(grid_faces):
    c = deepfakes_original.get_config("tiny")
    c.data.a, c.data.b = grid_faces["a"], grid_faces["b"]
    return c


def test_sharded_step_equals_single_device_step(grid_faces):
    config = tiny(grid_faces)
    tables = {k: pipeline.FaceSource([v], "train", config.data.load_size)
              for k, v in grid_faces.items()}
    batches = pipeline.FaceBatches(tables, global_batch=8, seed=0, fields=ae_task.FIELDS)
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        state, metrics = train_steps_on(devices, ae_task, config, batches, 2)
        results.append((state["params"], float(metrics["loss"])))
    assert len(jax.devices()) >= 2  # conftest's simulated devices: a sharded batch
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-5)
    assert_same_params(results[0][0], results[1][0], atol=1e-5)


def test_short_run_lowers_held_out_l1(grid_faces, tmp_path):
    config = tiny(grid_faces)
    config.num_steps, config.eval_every, config.checkpoint_every = 60, 30, 30
    metrics = train.train(config, str(tmp_path))
    history = run_files.read_history(str(tmp_path))
    first, last = history[0], history[-1]
    print(f"held-out L1: A {first['val_l1_a']:.4f} -> {last['val_l1_a']:.4f}, "
          f"B {first['val_l1_b']:.4f} -> {last['val_l1_b']:.4f} in 60 steps")
    assert first["step"] == 0 and last["step"] == 60
    for k in ("val_l1_a", "val_l1_b"):
        assert last[k] < 0.8 * first[k]
    preview = video.read_image(os.path.join(tmp_path, "previews", "latest.png"))
    # Labelled as faceswap's: a white header over each side's panels, with dark text in it.
    head = preview[:preview.shape[0] % config.model.size]  # above rows of whole faces
    assert 12 <= head.shape[0] <= 24 and (head.min(axis=2) < 128).mean() > 0.03
    assert os.listdir(os.path.join(tmp_path, "tensorboard"))
    assert metrics["step"] == 60 and checkpoint.Checkpointer(str(tmp_path)).latest_step() == 60


def _train_cmd(grid_faces, workdir, *extra, config=CONFIG):
    return [sys.executable, "tools/train.py", config, f"--config.data.a={grid_faces['a']}",
            f"--config.data.b={grid_faces['b']}", f"--workdir={workdir}",
            "--config.num_steps=8", "--config.checkpoint_every=2", "--config.log_every=1",
            "--config.eval_every=0", "--config.preview_every=0", *extra]


def _env(devices=1):
    return dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu")


def _start(cmd, env, **kwargs):
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.fixture(scope="module")
def uninterrupted(grid_faces, tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("straight"))
    # Batches prepared in this process's threads; the interrupted runs use worker processes:
    # the batches are a function of the step alone, whoever prepares them.
    proc = subprocess.run(_train_cmd(grid_faces, wd, "--config.data.workers=0"), cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return params_of(wd)


def test_resume_after_sigterm_is_exact(grid_faces, uninterrupted, tmp_path):
    wd = str(tmp_path)
    # As a cluster stops a job: SIGTERM to every process, the input workers too, which leave
    # it to the training process to stop at a step and save.
    proc = _start(_train_cmd(grid_faces, wd, "--config.data.workers=2"), _env(),
                  start_new_session=True)
    for line in proc.stdout:
        if line.startswith("step 3/"):
            os.killpg(proc.pid, signal.SIGTERM)
            t0 = time.monotonic()
            break
    out = proc.communicate(timeout=120)[0]
    waited = time.monotonic() - t0
    print(f"SIGTERM to exit (checkpoint saved): {waited:.2f} s")
    assert proc.returncode == 0, out[-3000:]
    assert waited < 30  # one step and one checkpoint, not a hang
    stopped = checkpoint.Checkpointer(wd, read_only=True).latest_step()
    assert 3 <= stopped < 8 and "stopped at step" in out
    subprocess.run(_train_cmd(grid_faces, wd), cwd=ROOT, env=_env(), check=True,
                   capture_output=True, timeout=300)
    assert_same_params(params_of(wd), uninterrupted)


def test_resume_after_kill_9_is_exact(grid_faces, uninterrupted, tmp_path):
    import psutil
    wd = str(tmp_path)
    proc = _start(_train_cmd(grid_faces, wd, "--config.data.workers=2"), _env())
    ckdir = os.path.join(wd, "checkpoints", "4")
    deadline = time.time() + 240
    while not os.path.isdir(ckdir) and time.time() < deadline:
        time.sleep(0.02)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) >= 2  # the input pipeline's worker processes
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The killed run's workers end with it; none is left running.
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, alive
    assert checkpoint.Checkpointer(wd, read_only=True).latest_step() in (4, 6)
    subprocess.run(_train_cmd(grid_faces, wd, "--config.data.workers=2"), cwd=ROOT, env=_env(),
                   check=True, capture_output=True, timeout=300)
    assert_same_params(params_of(wd), uninterrupted)


def test_non_finite_loss_stops_without_writing_it(grid_faces, tmp_path):
    proc = run_tool(*_train_cmd(grid_faces, str(tmp_path), "--config.optim.learning_rate=1e30")[1:])
    assert proc.returncode == 3
    assert "non-finite loss or gradient at step" in proc.stderr and "Traceback" not in proc.stderr
    ck = checkpoint.Checkpointer(str(tmp_path), read_only=True)
    for step in ck.all_steps():
        state = ck.restore_local(state_shapes(), step)
        assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))


@pytest.mark.parametrize("flag, message", [
    ("--config.batchsize=3", "batchsize"),
    ("--config.batch_size=many", "batch_size"),
    ("--config.task=nope", "--config.task=nope"),
])
def test_config_errors_are_one_line(grid_faces, tmp_path, flag, message):
    proc = run_tool(*_train_cmd(grid_faces, str(tmp_path), flag)[1:])
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if message in line]
    assert errors, proc.stderr[-2000:]


def test_another_models_workdir_is_refused(grid_faces, tiny_ae_run):
    c = tiny(grid_faces)
    c.model.latent = 32
    with pytest.raises(Exception, match="another model"):
        train.train(c, tiny_ae_run)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process_with_four_devices(grid_faces, tmp_path):
    for d in grid_faces.values():
        tfds_faces.builder(d)  # prepared once, read by every process
    common = ["--config.data.per_process=false", "--config.num_steps=3"]
    one = str(tmp_path / "one")
    proc = subprocess.run(_train_cmd(grid_faces, one, *common), cwd=ROOT, env=_env(4),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = str(tmp_path / "two")
    port = _free_port()
    procs = [_start(_train_cmd(grid_faces, two, *common, "--distributed",
                               f"--coordinator=127.0.0.1:{port}", "--num_processes=2",
                               f"--process_id={i}"), _env(2)) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    # gloo's cross-process all-reduce sums in another order than one process's 4 devices.
    assert_params_agree(params_of(two), params_of(one), lr=5e-4, steps=3)


def test_init_from_starts_with_another_runs_weights(grid_faces, tiny_ae_run, tmp_path):
    c = tiny(grid_faces)
    c2 = tiny(grid_faces)
    c2.num_steps, c2.eval_every, c2.preview_every, c2.checkpoint_every = 1, 0, 0, 100
    c2.optim.learning_rate = 1e-12  # a step that changes nothing measurable
    c2.init_from = tiny_ae_run
    train.train(c2, str(tmp_path / "second"))
    assert_same_params(params_of(str(tmp_path / "second")), params_of(tiny_ae_run), atol=1e-6)
    fresh = jax.device_get(ae_task.init(jax.random.key(0), c)["params"])
    with pytest.raises(AssertionError):
        assert_same_params(params_of(str(tmp_path / "second")), fresh, atol=1e-3)


def test_samples_are_found_and_checked(tmp_path):
    from facejax import samples
    found = samples.obtain(None, str(tmp_path))
    assert os.path.basename(found["a"]) == "driving_d6.mp4"
    assert os.path.basename(found["b"]) == "driving_d9.mp4"
    (tmp_path / "liveportrait").mkdir()
    (tmp_path / "liveportrait" / "driving_d6.mp4").write_bytes(b"tampered")
    with pytest.raises(Exception, match="sha256"):
        samples.obtain(str(tmp_path), str(tmp_path / "dl"))


def test_no_recompilation_after_the_first_step(grid_faces, tiny_ae_run, tmp_path):
    """XLA compilations of a run do not grow with its length: a 2-step and an 8-step run
    (after the warm-up run of the tiny_ae_run fixture in this process) compile exactly as
    often. The train step itself is
    compiled ahead of time, so it cannot recompile at all."""
    with compilations() as compiles:
        counts = []
        for steps in (2, 8):
            c = tiny(grid_faces)
            c.num_steps, c.checkpoint_every, c.log_every = steps, 2, 1
            c.eval_every = c.preview_every = 2
            before = len(compiles)
            train.train(c, str(tmp_path / f"run{len(counts)}"))
            counts.append(len(compiles) - before)
    print(f"XLA compilations per run (2 and 8 steps): {counts}")
    assert counts[0] == counts[1]
