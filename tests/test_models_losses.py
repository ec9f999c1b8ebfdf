"""Models, layers, losses and augmentation: shapes, parameter counts, numpy references, grads."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from experiments import deepfakes_original
from facejax import augment, losses
from facejax.models import autoencoder
from facejax.tasks import autoencoder as ae_task


def count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def test_autoencoder_shapes_and_parameter_count():
    config = deepfakes_original.get_config()
    state = jax.eval_shape(lambda k: ae_task.init(k, None, config), jax.random.key(0))
    p = state["params"]
    conv = lambda k, i, o: k * k * i * o + o
    dense = lambda i, o: i * o + o
    enc = (conv(5, 3, 128) + conv(5, 128, 256) + conv(5, 256, 512) + conv(5, 512, 1024)
           + dense(4 * 4 * 1024, 1024) + dense(1024, 4 * 4 * 1024) + conv(3, 1024, 4 * 512))
    dec = conv(3, 512, 4 * 256) + conv(3, 256, 4 * 128) + conv(3, 128, 4 * 64) + conv(5, 64, 3)
    print(f"64 px autoencoder: encoder {count(p['encoder']):,}, decoder {count(p['decoder_a']):,}, "
          f"total {count(p):,} parameters")
    assert count(p["encoder"]) == enc and count(p["decoder_a"]) == count(p["decoder_b"]) == dec
    enc_m, dec_m = autoencoder.build(config)
    x = jnp.zeros((2, 64, 64, 3))
    code = jax.eval_shape(lambda p, x: enc_m.apply({"params": p}, x), p["encoder"], x)
    chex.assert_shape(code, (2, 8, 8, 512))
    out = jax.eval_shape(lambda p, c: dec_m.apply({"params": p}, c), p["decoder_a"], code)
    chex.assert_shape(out, (2, 64, 64, 3))


def test_one_encoder_pass_over_both_faces_equals_two(grid_faces):
    """The training step runs the shared encoder once over A's and B's faces (interleaved, so a
    sharded batch stays on its devices): the codes and their gradients are those of one pass
    per identity, on real faces."""
    from facejax.data import pipeline
    config = deepfakes_original.get_config("tiny")
    tables = {n: pipeline.load_table(grid_faces[n], "train", config.data.load_size)
              for n in ae_task.IDENTITIES}
    batch = jax.tree.map(jnp.asarray, pipeline.FaceBatches(tables, 3, 0, ae_task.FIELDS)(0))
    a, b = (ae_task.views(batch, n, config) for n in ae_task.IDENTITIES)
    assert float(jnp.abs(a - b).mean()) > 0.05  # two different people
    enc, _ = autoencoder.build(config)
    params = {"encoder": jax.jit(enc.init)(jax.random.key(0), a)["params"]}
    weights = [jax.random.normal(jax.random.key(i), (3, 4, 4, 64)) for i in (1, 2)]

    def pair(p):
        ca, cb = ae_task.encode_pair(p, a, b, config)
        return (ca * weights[0]).sum() + (cb * weights[1]).sum(), (ca, cb)

    def apart(p):
        ca, cb = (enc.apply({"params": p["encoder"]}, x) for x in (a, b))
        return (ca * weights[0]).sum() + (cb * weights[1]).sum(), (ca, cb)

    (_, codes), g = jax.jit(jax.value_and_grad(pair, has_aux=True))(params)
    (_, codes_ref), g_ref = jax.jit(jax.value_and_grad(apart, has_aux=True))(params)
    for x, y in zip([*codes, *jax.tree.leaves(g)], [*codes_ref, *jax.tree.leaves(g_ref)]):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5 * float(jnp.abs(y).max()))


def test_128px_needs_no_new_code():
    config = deepfakes_original.get_config("128")
    state = jax.eval_shape(lambda k: ae_task.init(k, None, config), jax.random.key(0))
    out = jax.eval_shape(
        lambda p, x: ae_task.forward(p, x, "decoder_b", config), state["params"],
        jnp.zeros((1, 128, 128, 3)))
    chex.assert_shape(out, (1, 128, 128, 3))


def test_l1_and_masked_mean_against_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 8, 8, 3)), rng.normal(size=(4, 8, 8, 3))
    m = (rng.uniform(size=(4, 8, 8, 1)) > 0.5).astype(np.float32)
    np.testing.assert_allclose(jax.jit(losses.l1)(a, b), np.abs(a - b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jit(losses.l2)(a, b), (a - b) ** 2, rtol=1e-5)
    ref = (np.abs(a - b) * m).sum() / np.broadcast_to(m, a.shape).sum()
    np.testing.assert_allclose(jax.jit(losses.masked_mean)(losses.l1(a, b), m), ref, rtol=1e-5)
    assert float(losses.masked_mean(losses.l1(a, b), np.zeros_like(m))) == 0.0
    g = jax.grad(lambda x: losses.masked_mean(losses.l1(x, b), np.zeros_like(m)))(jnp.array(a))
    assert np.isfinite(g).all()
    # Central differences are exact for a quadratic, so a large step keeps float32 noise out.
    check_grads(lambda x: losses.masked_mean(losses.l2(x, b), m), (jnp.array(a),), order=1,
                modes=["fwd", "rev"], eps=1e-1)
    # L1 is piecewise linear: its gradient is sign(a - b) / n exactly.
    g = jax.jit(jax.grad(lambda x: losses.l1(x, b).mean()))(jnp.array(a))
    np.testing.assert_allclose(g, np.sign(a - b) / a.size, rtol=1e-6)
    with pytest.raises(AssertionError):
        losses.l1(a, b[:, :4])


def test_lab_round_trip_and_reference_values():
    rgb = jax.random.uniform(jax.random.key(0), (32, 3))
    np.testing.assert_allclose(augment.lab_to_rgb(augment.rgb_to_lab(rgb)), rgb, atol=2e-4)
    # Reference values of the sRGB/D65 conversion (white, red).
    np.testing.assert_allclose(augment.rgb_to_lab(jnp.ones(3)), [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(augment.rgb_to_lab(jnp.array([1.0, 0, 0])), [53.24, 80.09, 67.20],
                               atol=0.1)


def test_warp_without_randomness_is_the_centre_view():
    cfg = augment.default_config()
    cfg.update(rotation=0.0, zoom=0.0, shift=0.0, shear=0.0, flip=0.0, warp=0.0, lightness=0.0,
               color=0.0, contrast=0.0)
    image = jax.random.randint(jax.random.key(0), (80, 80, 3), 0, 256).astype(jnp.uint8)
    warped, target = augment.warp_pair(jax.random.key(1), image, 64, cfg)
    centre = augment.centre_view(image, 64, cfg.region)
    np.testing.assert_allclose(target, centre, atol=1e-5)
    np.testing.assert_allclose(warped, centre, atol=1e-5)
    cfg.flip = 1.0
    _, flipped = augment.warp_pair(jax.random.key(1), image, 64, cfg)
    np.testing.assert_allclose(flipped, centre[:, ::-1], atol=1e-5)


def test_random_warp_moves_pixels_smoothly():
    cfg = augment.default_config()
    image = jax.random.randint(jax.random.key(0), (80, 80, 3), 0, 256).astype(jnp.uint8)
    warped, target = jax.jit(lambda k: augment.warp_pair(k, image, 64, cfg))(jax.random.key(3))
    assert warped.shape == target.shape == (64, 64, 3)
    assert float(jnp.abs(warped - target).mean()) > 0.02
    field = augment.warp_field(jax.random.key(0), 64, 80, cfg)
    # Displacement std ≈ warp · region · size, and neighbouring pixels move alike.
    assert 0.3 < float(field.std()) / (cfg.warp * cfg.region * 80) < 2.0
    assert float(jnp.abs(jnp.diff(field, axis=0)).max()) < 0.2 * float(jnp.abs(field).max())


@pytest.mark.parametrize("experiment", [
    "deepfakes_original",
    pytest.param("face2face_pix2pix", marks=pytest.mark.slow),
    pytest.param("cyclegan_faces", marks=pytest.mark.slow)])
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
    from tests.conftest import train_steps_on

    losses = {}
    for dtype in ("float32", "bfloat16"):
        config = importlib.import_module(f"experiments.{experiment}").get_config("tiny")
        config.model.compute_dtype = dtype
        task = tasks.get(config.task)
        tables = {n: pipeline.load_table(grid_faces[n], "train", config.data.load_size,
                                         landmark_image="landmark_image" in task.FIELDS)
                  for n in task.IDENTITIES}
        batches = pipeline.FaceBatches(tables, 4, 0, task.FIELDS)
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
