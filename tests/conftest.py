"""The session's settings, test order and shared fixtures; the helpers test files import are in
tests/helpers.py. Real faces come from ../shared/data (read in place, never copied).

Tests run on 2 simulated CPU devices (the variable is set before JAX starts): enough for every
sharded path, and a third faster than 8 on the two cores the suite has.
"""

import os

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

from tests.helpers import GRID, ROOT  # noqa: E402


# The longest files first: the workers (`--dist loadfile --no-loadscope-reorder`) take whole
# files in collection order, and a long file taken last keeps one worker busy while the other
# has nothing left. The files with `slow` tests come early: the SIGKILL loop and the killed
# peer (test_kills), the real-width fingerprints, every family in bfloat16 (test_common), and
# the full benchmarks, every detector end to end.
_LONG_FIRST = ("tests/tasks/test_saehd.py", "tests/test_train.py",
               "tests/reliability/test_kills.py", "tests/tasks/test_cyclegan.py",
               "tests/tasks/test_fingerprints.py", "tests/tasks/test_common.py",
               "tests/commands/test_benchmark.py", "tests/faces/test_detectors_end_to_end.py",
               "tests/tasks/", "tests/test_inference.py",
               "tests/reliability/", "tests/test_convert.py", "tests/studio/test_run_pages.py",
               "tests/data/")


def _long_first(item) -> int:
    path = os.path.relpath(str(item.path), ROOT).replace(os.sep, "/")
    return next((i for i, p in enumerate(_LONG_FIRST) if path.startswith(p)), len(_LONG_FIRST))


def pytest_collection_modifyitems(config, items):
    items.sort(key=_long_first)  # stable: a file's tests stay together and in order


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


@pytest.fixture(scope="session")
def xseg_run(grid_faces, tmp_path_factory):
    """A workdir of the tiny XSeg trained 4 steps on GRID speaker B's faces."""
    from facejax.experiments import xseg
    from facejax import train
    config = xseg.get_config("tiny")
    config.data.a = grid_faces["b"]
    config.num_steps, config.eval_every, config.preview_every = 4, 0, 0
    wd = str(tmp_path_factory.mktemp("xseg_run"))
    train.train(config, wd)
    return wd


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
