"""What every task shares: the finiteness guard, and bf16 compute tracking float32."""

import jax
import jax.numpy as jnp
import pytest


@pytest.mark.parametrize("experiment", [
    "deepfakes_original",
    pytest.param("face2face_pix2pix", marks=pytest.mark.slow),
    pytest.param("cyclegan_faces", marks=pytest.mark.slow),
    pytest.param("saehd", marks=pytest.mark.slow),
    pytest.param("xseg", marks=pytest.mark.slow)])
def test_bfloat16_compute_tracks_float32(experiment, grid_faces):
    """compute_dtype=bfloat16: parameters and optimizer state stay float32, and a short run's
    reconstruction-type losses follow the float32 run's within 5%. Adversarial terms (through
    a discriminator that is itself 3 steps old) are only required finite: they move by 5-15%
    even between float32 runs that differ in rounding."""
    import importlib

    import jax
    import numpy as np
    from facejax import tasks
    from facejax.data import pipeline
    from tests.helpers import train_steps_on

    losses = {}
    for dtype in ("float32", "bfloat16"):
        config = importlib.import_module(f"facejax.experiments.{experiment}").get_config("tiny")
        config.model.compute_dtype = dtype
        task = tasks.get(config.task)
        tables = {n: pipeline.FaceSource([grid_faces[n]], "train", config.data.load_size)
                  for n in task.identities}
        batches = pipeline.FaceBatches(tables, global_batch=4, seed=0, fields=task.fields)
        state, metrics = train_steps_on(jax.devices()[:1], task, config, batches, 3)
        leaves = jax.tree_util.tree_flatten_with_path(state)[0]
        kinds = {x.dtype for path, x in leaves if np.issubdtype(x.dtype, np.floating)
                 and any(w in jax.tree_util.keystr(path) for w in ("params", "opt", "mu", "nu"))}
        assert kinds == {np.dtype("float32")}, (dtype, kinds)
        losses[dtype] = {k: float(v) for k, v in metrics.items() if k != "finite"}
    print(experiment, losses)
    for k, v in losses["float32"].items():
        assert np.isfinite(losses["bfloat16"][k])
        if "gan" in k or k.startswith("d_") or k == "loss" and "pix2pix" in experiment:
            continue
        assert losses["bfloat16"][k] == pytest.approx(v, rel=0.05, abs=0.02), k


def test_auto_compute_dtype_is_bfloat16_for_a_gpu_and_float32_for_the_cpu(monkeypatch):
    """compute_dtype="auto" (every experiment's default) follows the platform the step is
    traced for, float32 inside plain_forms; a named dtype is kept on both."""
    from facejax.experiments import deepfakes_original
    from facejax.models import layers
    from facejax.ops.conv import backend

    model = deepfakes_original.get_config("tiny").model
    assert model.compute_dtype == "auto" and layers.compute_dtype(model) is None  # this CPU
    monkeypatch.setattr(backend, "target_platform", lambda: "gpu")
    assert layers.compute_dtype(model) == jnp.bfloat16
    with backend.plain_forms():  # the textbook model (an ONNX export's) stays float32
        assert layers.compute_dtype(model) is None
    model.compute_dtype = "float32"
    assert layers.compute_dtype(model) is None
    model.compute_dtype = "bfloat16"
    monkeypatch.setattr(backend, "target_platform", lambda: "cpu")
    assert layers.compute_dtype(model) == jnp.bfloat16


def test_finiteness_guard_flags_inf_nan_and_gradients_whose_square_overflows():
    from facejax.tasks import common
    check = jax.jit(common.all_finite)
    assert bool(check({"a": jnp.ones(3), "b": jnp.array([3e38, -3e38])}))  # finite, no overflow
    assert not bool(check({"a": jnp.ones(3), "b": jnp.array([1.0, jnp.inf])}))
    assert not bool(check({"a": jnp.array([jnp.nan]), "b": jnp.ones(2)}))
    assert not bool(check({"a": jnp.array([1.0, 2.0], jnp.bfloat16) * jnp.inf}))

    @jax.jit
    def guard(state, grads):
        return common.guard_finite(state, {"loss": jnp.float32(1.0)}, grads)[1]["finite"]

    state = {"params": jnp.ones(4), "opt": {"mu": jnp.ones(4)}}
    assert bool(guard(state, jnp.full(4, 1e18)))
    assert not bool(guard(state, jnp.full(4, 1e20)))  # g² overflows Adam's second moment
    assert not bool(guard({"params": jnp.array([jnp.inf]), "opt": {}}, jnp.ones(1)))
    # Optimizer moments are implied finite by finite g and g², so they are not re-read.
    assert bool(guard({"params": jnp.ones(1), "opt": {"nu": jnp.array([jnp.inf])}}, jnp.ones(1)))
