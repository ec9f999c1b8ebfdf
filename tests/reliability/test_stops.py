"""A stop request (SIGTERM, as a cluster sends; SIGINT, Ctrl-C) to `tools/train.py`, for real in
a subprocess: during dataset preparation it ends with one line, exit 0 and nothing half-prepared;
during training it leaves the preview and the held-out metrics of the state it saved."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from facejax import checkpoint
from tests.helpers import ROOT

TINY = "--config=experiments/deepfakes_original.py:tiny"


def _cmd(a, b, workdir, *extra):
    return [sys.executable, "tools/train.py", TINY, f"--config.data.a={a}",
            f"--config.data.b={b}", f"--workdir={workdir}", "--config.num_steps=8",
            "--config.checkpoint_every=4", "--config.log_every=1", "--config.eval_every=0",
            "--config.preview_every=0", "--config.data.workers=0", *extra]


def _env():
    return dict(os.environ, JAX_NUM_CPU_DEVICES="1", JAX_PLATFORMS="cpu")


def _start(cmd):
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _larger_fresh_copy(folder: str, dest: str, copies: int) -> None:
    """`folder`'s extraction, its input repeated `copies` times under keys (and record names)
    of their own and no prepared dataset: a preparation long enough to stop for sure."""
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("tfds"))
    inputs = os.path.join(dest, "inputs")
    (key,) = os.listdir(inputs)
    for n in range(1, copies):
        copy = os.path.join(inputs, f"{key}-copy{n}")
        shutil.copytree(os.path.join(inputs, key), copy)
        path = os.path.join(copy, "alignments.jsonl")
        with open(path) as f:
            lines = f.read().replace(f'"{key}/', f'"{key}-copy{n}/')
        with open(path, "w") as f:
            f.write(lines)


def _being_prepared(folder: str) -> list:
    """TFDS's temporary folders of `folder`'s dataset (there while it is prepared)."""
    return glob.glob(os.path.join(folder, "tfds", "*", "facejax_faces", "*incomplete*"))


def _prepared(folder: str) -> list:
    return glob.glob(os.path.join(folder, "tfds", "*", "facejax_faces", "*", "dataset_info.json"))


def test_sigterm_while_preparing_says_so_keeps_nothing_and_the_rerun_trains(grid_faces,
                                                                              tmp_path):
    fresh = str(tmp_path / "a")  # an extraction folder no run has prepared yet
    _larger_fresh_copy(grid_faces["a"], fresh, copies=10)
    wd = str(tmp_path / "run")
    proc = _start(_cmd(fresh, grid_faces["b"], wd))
    deadline = time.monotonic() + 240
    while not _being_prepared(fresh) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert _being_prepared(fresh), "preparation never seen"
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    print(out[-2000:])
    assert proc.returncode == 0, out[-3000:]
    said = [line for line in out.splitlines() if "stopped while preparing" in line]
    assert said == [f"stopped while preparing the dataset of {fresh} (signal 15); the next "
                    "run prepares it again"], out[-3000:]
    assert "Traceback" not in out and "final" not in out
    assert not _being_prepared(fresh) and not _prepared(fresh)  # nothing half-prepared kept
    assert checkpoint.Checkpointer(wd, read_only=True).latest_step() is None

    again = subprocess.run(_cmd(fresh, grid_faces["b"], wd), cwd=ROOT, env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert len(_prepared(fresh)) == 1
    assert checkpoint.Checkpointer(wd, read_only=True).latest_step() == 8


def test_sigterm_mid_run_leaves_the_preview_and_held_out_metrics_of_the_saved_step(
        grid_faces, tmp_path):
    wd = str(tmp_path)
    # Previews and evaluation every 100 steps: none due between step 0 and the stop.
    proc = _start(_cmd(grid_faces["a"], grid_faces["b"], wd, "--config.eval_every=100",
                       "--config.preview_every=100"))
    for line in proc.stdout:
        if line.startswith("step 3/"):
            proc.send_signal(signal.SIGTERM)
            break
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out[-3000:]
    stopped = checkpoint.Checkpointer(wd, read_only=True).latest_step()
    assert 3 <= stopped < 8 and f"stopped at step {stopped} on request" in out
    previews = sorted(os.listdir(os.path.join(wd, "previews")))
    assert previews == ["latest.png", f"step_{stopped:07d}.png"]
    with open(os.path.join(wd, "metrics.jsonl")) as f:
        history = [json.loads(line) for line in f]
    assert [h["step"] for h in history] == [0, stopped]  # before training, and at the stop
    last = history[-1]
    assert last["stopped"] == 1 and last["eval_batches"] == 1
    assert {"val_l1_a", "val_l1_b"} <= set(last) and "stopped" not in history[0]


def test_sigterm_while_waiting_for_another_run_to_prepare_is_one_line(grid_faces, tmp_path):
    # In this process: the lock held on a second descriptor (flock locks are per open file, so
    # the builder waits on it as on another run's), and a SIGTERM to ourselves while it waits.
    import fcntl
    import threading
    from facejax.data import tfds_faces
    fresh = str(tmp_path / "a")
    _larger_fresh_copy(grid_faces["a"], fresh, copies=1)
    data_dir = os.path.join(fresh, "tfds", tfds_faces.fingerprint(fresh))
    os.makedirs(data_dir)
    held = open(os.path.join(data_dir, ".prepare.lock"), "a")
    fcntl.flock(held, fcntl.LOCK_EX)
    # Safety nets: an early signal is ignored here, not fatal to the test process, and the
    # lock is let go after 60 s so a failing test cannot hang.
    before = signal.signal(signal.SIGTERM, lambda *_: None)
    timers = [threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)),
              threading.Timer(60.0, held.close)]
    for t in timers:
        t.start()
    try:
        tfds_faces.builder(fresh)
        raise AssertionError("the builder did not stop")
    except tfds_faces.PreparationStopped as e:
        assert str(e) == (f"stopped while waiting for another run to prepare the dataset of "
                          f"{fresh} (signal 15); the next run prepares it, or reads what that "
                          "run prepared")
    finally:
        for t in timers:
            t.cancel()
        held.close()
        signal.signal(signal.SIGTERM, before)
    assert not _being_prepared(fresh) and not _prepared(fresh)


def _catches_sigterm(pid: int) -> bool:
    """Whether process `pid` has a handler of its own for SIGTERM (/proc's SigCgt mask)."""
    with open(f"/proc/{pid}/status") as f:
        mask = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    return bool(int(mask, 16) >> (signal.SIGTERM - 1) & 1)


def test_sigterm_before_training_starts_is_one_line_and_exit_0(grid_faces, tmp_path):
    wd = str(tmp_path / "run")
    proc = _start(_cmd(grid_faces["a"], grid_faces["b"], wd))
    deadline = time.monotonic() + 60
    # As soon as the command catches it: JAX and TensorFlow are still loading, seconds away
    # from the data and the model.
    while proc.poll() is None and not _catches_sigterm(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out[-3000:]
    assert out.strip().splitlines() == ["stopped before training started (signal 15); nothing "
                                        "new was saved: rerun to go on"], out[-3000:]
    assert not os.path.isdir(wd) or checkpoint.Checkpointer(wd, read_only=True).latest_step() \
        is None


def test_a_start_up_stop_that_python_dropped_still_stops_before_training(grid_faces, tmp_path):
    """Python prints and drops an exception raised where it cannot propagate (a signal handled
    inside a garbage-collection callback or a __del__): the start-up handler's Stopped is kept,
    train.train stops before any training, and the dropped exception prints nothing, while
    other dropped exceptions still reach Python's hook."""
    import gc
    from facejax import errors, train
    from facejax.commands import train as train_command
    from facejax.experiments import deepfakes_original
    c = deepfakes_original.get_config("tiny")
    c.data.a, c.data.b = grid_faces["a"], grid_faces["b"]
    errors.STOPS_RAISED.append(15)
    try:
        with pytest.raises(errors.Stopped, match=r"^stopped before training started \(signal "
                                                 r"15\)"):
            train.train(c, str(tmp_path / "run"))
    finally:
        errors.STOPS_RAISED.clear()
    assert not os.path.isdir(tmp_path / "run" / "checkpoints")

    class Dropper:
        def __init__(self, error):
            self.error = error

        def __del__(self):
            raise self.error

    # Other tests' cyclic garbage, collected first and kept from being collected inside the
    # window: its finalizers may drop exceptions of their own (a full-suite run saw 83 there).
    gc.collect()
    gc.disable()
    seen, hook = [], sys.unraisablehook
    sys.unraisablehook = train_command._quiet_dropped_stop(lambda info: seen.append(
        info.exc_value))
    try:
        Dropper(errors.stopped_before_training(15))  # dropped as its last reference goes
        Dropper(ValueError("not a stop"))
    finally:
        sys.unraisablehook = hook
        gc.enable()
    assert [type(e) for e in seen] == [ValueError]
