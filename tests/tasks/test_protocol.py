"""The task protocol: every family's Task is complete and consistent, its weights go in and out
of a state (params_of / with_params), and --config.init_from refuses another model (each
family's init_from test: tests/test_train.py, test_pix2pix.py, test_cyclegan.py)."""

import importlib

import jax
import numpy as np
import pytest

from facejax import tasks
from facejax.errors import UserError
from tests.helpers import run_tool

EXPERIMENTS = {"autoencoder": "deepfakes_original", "pix2pix": "face2face_pix2pix",
               "cyclegan": "cyclegan_faces", "saehd": "saehd"}


def tiny(name, grid_faces=None):
    config = importlib.import_module(f"facejax.experiments.{EXPERIMENTS[name]}").get_config("tiny")
    if grid_faces:
        for n in tasks.get(name).identities:
            config.data[n] = grid_faces[n]
    return config


def test_every_family_is_a_task_with_its_capabilities():
    assert set(EXPERIMENTS) == set(tasks.TASKS)
    got = {n: (tasks.get(n).swaps, tasks.get(n).generate is not None,
               tasks.get(n).host_augment is not None) for n in tasks.TASKS}
    assert got == {"autoencoder": (True, False, True), "pix2pix": (False, True, True),
                   "cyclegan": (True, False, False), "saehd": (True, False, False)}
    for n in tasks.TASKS:
        assert tasks.get(n).name == n and tiny(n).task == n
    with pytest.raises(UserError, match="--config.task=nope: unknown task"):
        tasks.get("nope")
    with pytest.raises(TypeError, match="come together"):
        tasks.Task("x", ("image",), ("a",), *[lambda: 0] * 6, swap=lambda: 0)


@pytest.mark.parametrize("name", tasks.TASKS)
def test_weights_go_in_and_out_of_a_state(name):
    """with_params(s0, params_of(s1)) holds s1's weights and everything else of s0 (optimizer
    moments, step, pools)."""
    task, config = tasks.get(name), tiny(name)
    init = jax.jit(lambda k: task.init(k, config))
    s0, s1 = init(jax.random.key(0)), init(jax.random.key(1))
    # Make the rest of s0 recognisable: a step and optimizer moments that are not init's.
    s0 = jax.tree.map(lambda x: x + 1 if np.issubdtype(x.dtype, np.number) else x, s0)
    mixed = task.with_params(s0, task.params_of(s1))
    assert jax.tree.structure(mixed) == jax.tree.structure(s0)
    jax.tree.map(np.testing.assert_array_equal, task.params_of(mixed), task.params_of(s1))
    zeroed = lambda s: task.with_params(s, jax.tree.map(np.zeros_like, task.params_of(s)))
    jax.tree.map(np.testing.assert_array_equal, zeroed(mixed), zeroed(s0))
    jax.tree.map(np.testing.assert_array_equal, task.with_params(s0, task.params_of(s0)), s0)
    # The weights are a part of the state: no optimizer moments among them.
    assert 0 < len(jax.tree.leaves(task.params_of(s0))) < len(jax.tree.leaves(s0)) / 2


def test_init_from_another_model_is_one_line_exit_2(grid_faces, tiny_ae_run, tmp_path):
    proc = run_tool("tools/train.py", "--config=experiments/face2face_pix2pix.py:tiny",
                    f"--config.data.a={grid_faces['a']}", f"--config.init_from={tiny_ae_run}",
                    "--config.batch_size=8",
                    f"--workdir={tmp_path / 'wd'}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"error: --config.init_from={tiny_ae_run}: holds a run of another model")
    assert "Traceback" not in proc.stderr
