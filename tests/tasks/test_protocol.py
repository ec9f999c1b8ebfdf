"""The task protocol: every family's Task is complete and consistent, its weights go in and out
of a state (params_of / with_params), and --config.init_from refuses another model (each
family's init_from test: tests/test_train.py, test_pix2pix.py, test_cyclegan.py)."""

import ast
import importlib
import os

import jax
import numpy as np
import pytest

from facejax import tasks
from facejax.errors import UserError
from tests.helpers import ROOT, run_tool

EXPERIMENTS = {"autoencoder": "deepfakes_original", "pix2pix": "face2face_pix2pix",
               "cyclegan": "cyclegan_faces", "saehd": "saehd", "xseg": "xseg"}
# Families with no PyTorch twin in ../shared/bench (DeepFaceLab's XSeg is TensorFlow).
WITHOUT_REFERENCE = ("xseg",)


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
                   "cyclegan": (True, False, False), "saehd": (True, False, False),
                   "xseg": (False, False, True)}
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


def test_every_family_declares_its_schema_reference_and_inference_settings():
    from facejax import config_check, samples
    from facejax.tasks.protocol import Reference
    for name in tasks.TASKS:
        task, config = tasks.get(name), tiny(name)
        assert task.config_schema and all(
            isinstance(r, config_check.Range) or (r and all(isinstance(c, str) for c in r))
            for r in task.config_schema.values()), name
        fast = task.inference_config(config)
        assert (fast.model.conv_impl, fast.model.up_impl) == ("xla", "auto")
        if name in WITHOUT_REFERENCE:
            assert task.reference is None, name
            continue
        assert isinstance(task.reference, Reference), name
        assert os.path.isfile(os.path.join(samples.SHARED, "bench", task.reference.script))
        args = task.reference.arguments(config)
        assert all(isinstance(a, str) for a in args)
        assert args[args.index("--batch") + 1] == str(config.batch_size)
        # Loaded for inference: XLA's strided convolution forward, the rules' transposed one.
        fast = task.inference_config(config)
        assert (fast.model.conv_impl, fast.model.up_impl) == ("xla", "auto")
        assert config.model.conv_impl == "auto" and "up_impl" not in config.model
        config.model.conv_impl = "im2col"  # a form the run chose itself stays
        assert task.inference_config(config).model.to_dict() == config.model.to_dict()
    assert tasks.get("autoencoder").reference.arguments(tiny("autoencoder")) == [
        "--batch", "8", "--size", "32"]
    assert tasks.get("cyclegan").reference.arguments(tiny("cyclegan"))[-4:] == [
        "--steps", "3", "--warmup", "1"]
    saehd = tiny("saehd")
    args = tasks.get("saehd").reference.arguments(saehd)
    assert args[:4] == ["--archi", "df", "--resolution", "32"] and "--no-eyes_mouth_prio" \
        not in args
    saehd.model.archi = "liae-ud"
    with pytest.raises(UserError, match="^--config.model.archi=liae-ud: the reference has"):
        tasks.get("saehd").reference.arguments(saehd)


def _family_names(source: str) -> list:
    """(line, name) of every string constant of `source` (docstrings and f-string parts
    included) that is a family's name."""
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and node.value in tasks.TASKS]


def test_no_module_outside_tasks_names_a_family():
    """Family knowledge lives beside the family (its Task): the tools branch on what a task
    declares, never on its name (as `git grep '"saehd"' facejax/ ':!facejax/tasks'` shows)."""
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, "facejax")):
        rel = os.path.relpath(folder, ROOT).replace(os.sep, "/")
        if rel.startswith(("facejax/tasks", "facejax/experiments")):
            continue
        for f in (f for f in files if f.endswith(".py")):
            with open(os.path.join(folder, f), encoding="utf-8") as source:
                found += [f"{rel}/{f}:{line}: {name}" for line, name in _family_names(
                    source.read())]
    # The exceptions, names a user sees rather than branches on a family, each spelled once:
    # the folder of applied XSeg masks in an extraction folder (mask_labels.APPLIED_FOLDER) and
    # the --mask value of the segmentation model's mask (compose.SEGMENTED).
    exempt = [x for x in found if x.startswith(("facejax/faces/mask_labels.py:",
                                                "facejax/faces/compose.py:"))
              and x.endswith(": xseg")]
    assert len(exempt) <= 2 and [x for x in found if x not in exempt] == []
    assert _family_names("if config.task == 'saehd':\n    x = f'{a}{b}cyclegan'\n") == [
        (1, "saehd"), (2, "cyclegan")]
