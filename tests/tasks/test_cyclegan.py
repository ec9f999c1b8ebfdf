"""CycleGAN for faces: loss terms and their order, pool, pixel dropout, training, sharding."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from facejax.experiments import cyclegan_faces
from facejax import checkpoint, losses, train
from facejax.training import run_files
from facejax.data import pipeline, tfds_faces
from facejax.tasks import cyclegan
from tests.helpers import (assert_params_agree, assert_started_from, train_and_resume,
                           train_steps_on)


def loss_cfg(**kw):
    c = dict(gan_mode="lsgan", c_gan=1.0, c_cycle=10.0, c_attention=5.0, c_multi=5.0,
             c_multi_gan=0.5, c_identity=0.5)
    c.update(kw)
    return ml_collections.ConfigDict(c)


def test_terms_against_numpy_with_known_generators():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (2, 8, 8, 3)), rng.uniform(-1, 1, (2, 8, 8, 3))
    px = (rng.uniform(size=(2, 8, 8, 1)) > 0.7).astype(np.float32)
    py = np.zeros((2, 8, 8, 1), np.float32)  # empty mask: attention term 0, not NaN
    g_ab = lambda v: 0.5 * v + 0.25   # non-commuting maps, so any other order fails
    g_ba = lambda v: v * v - 0.1
    d_a = lambda v: v.mean(-1, keepdims=True)
    d_b = lambda v: 2 * v[..., :1]
    ident = lambda v: v
    cfg = loss_cfg()
    t, im = jax.jit(lambda x, y, px, py: cyclegan.generator_terms(
        g_ab, g_ba, d_a, d_b, x, y, px, py, ident, ident, cfg))(x, y, px, py)
    fb, fa = 0.5 * x + 0.25, y * y - 0.1
    rx, ry = fb * fb - 0.1, 0.5 * fa + 0.25          # G_ba(G_ab(x)), G_ab(G_ba(y))
    fb2, fa2 = 0.5 * rx + 0.25, ry * ry - 0.1        # G_ab(G_ba(G_ab(x))), G_ba(G_ab(G_ba(y)))
    ls = lambda d: ((d - 1) ** 2).mean()
    ref = {
        "gan": ls(2 * fb[..., :1]) + ls(fa.mean(-1, keepdims=True)),
        "cycle": np.abs(rx - x).mean() + np.abs(ry - y).mean(),
        "attention": (np.abs(rx - x) * px).sum() / (px.sum() * 3) + 0.0,
        "multi": np.abs(fb2 - fb).mean() + np.abs(fa2 - fa).mean(),
        "multi_gan": ls(2 * fb2[..., :1]) + ls(fa2.mean(-1, keepdims=True)),
        "identity": np.abs((x * x - 0.1) - x).mean() + np.abs((0.5 * y + 0.25) - y).mean(),
    }
    for k, v in ref.items():
        np.testing.assert_allclose(t[k], v, rtol=1e-5, err_msg=k)
    total = sum(cfg[c] * ref[k] for c, k in [("c_gan", "gan"), ("c_cycle", "cycle"),
                                             ("c_attention", "attention"), ("c_multi", "multi"),
                                             ("c_multi_gan", "multi_gan"),
                                             ("c_identity", "identity")])
    np.testing.assert_allclose(t["total"], total, rtol=1e-5)
    # Gradient of the total is finite with an empty attention mask and matches differences.
    f = lambda x: cyclegan.generator_terms(g_ab, g_ba, d_a, d_b, x, y, px, py, ident, ident,
                                           cfg)[0]["cycle"]
    g = jax.grad(f)(jnp.array(x))
    assert np.isfinite(g).all()
    e = np.zeros_like(x)
    e[0, 3, 3, 1] = 1e-2
    np.testing.assert_allclose((f(x + e) - f(x - e)) / 2e-2, g[0, 3, 3, 1], rtol=2e-2)


def test_seed_l1_gan_mode():
    real, fake = jnp.array([0.2, 1.5]), jnp.array([-0.3, 0.4])
    r, f = losses.gan_discriminator(real, fake, "l1")
    np.testing.assert_allclose(r, [0.8, 0.5], rtol=1e-6)
    np.testing.assert_allclose(f, [0.3, 0.4], rtol=1e-6)
    np.testing.assert_allclose(losses.gan_generator(fake, "l1"), [1.3, 0.6], rtol=1e-6)


def test_pool_fills_then_swaps_half_and_is_deterministic():
    pool = cyclegan.pool_init(4, (2, 2, 1))
    q = jax.jit(cyclegan.pool_query)
    imgs = jnp.arange(1, 5, dtype=jnp.float32)[:, None, None, None] * jnp.ones((4, 2, 2, 1))
    pool, out = q(pool, imgs, jax.random.key(0))
    np.testing.assert_array_equal(out, imgs)            # not full: the incoming images
    np.testing.assert_array_equal(pool["images"], imgs)
    assert int(pool["count"]) == 4
    returned_old, n = 0, 400
    state = pool
    for i in range(n // 4):
        new = (100 + 4 * i + jnp.arange(4.0))[:, None, None, None] * jnp.ones((4, 2, 2, 1))
        before = set(np.asarray(state["images"])[:, 0, 0, 0].tolist())
        state, out = q(state, new, jax.random.key(i + 1))
        vals = np.asarray(out)[:, 0, 0, 0]
        # A value other than the incoming image's is a stored one, handed out.
        returned_old += int((vals != np.asarray(new)[:, 0, 0, 0]).sum())
        # An image handed out from the pool was replaced by the new one.
        after = np.asarray(state["images"])[:, 0, 0, 0]
        assert all(v not in after for v in vals if v in before)
    assert 0.4 < returned_old / n < 0.6
    a = q(pool, imgs * 7, jax.random.key(9))
    b = q(pool, imgs * 7, jax.random.key(9))
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_pool_survives_a_checkpoint_round_trip(tmp_path):
    pool = cyclegan.pool_init(3, (4, 4, 3))
    pool, _ = cyclegan.pool_query(pool, jax.random.uniform(jax.random.key(0), (3, 4, 4, 3)),
                                  jax.random.key(1))
    state = {"pool_a": pool, "step": jnp.array(3)}
    ck = checkpoint.Checkpointer(str(tmp_path))
    ck.save(3, state)
    back = ck.restore_local(jax.eval_shape(lambda: state))
    jax.tree.map(np.testing.assert_array_equal, back, state)
    k = jax.random.key(5)
    x = jnp.ones((3, 4, 4, 3))
    jax.tree.map(np.testing.assert_array_equal, cyclegan.pool_query(back["pool_a"], x, k),
                 cyclegan.pool_query(pool, x, k))


def test_pixel_dropout_zeroes_the_fraction_and_nothing_else():
    x = jax.random.uniform(jax.random.key(0), (4, 64, 64, 3), minval=0.1, maxval=1.0)
    y = jax.jit(cyclegan.pixel_dropout, static_argnums=2)(jax.random.key(1), x, 0.3)
    zero = np.asarray((y == 0).all(-1))
    assert abs(zero.mean() - 0.3) < 0.02
    np.testing.assert_array_equal(np.asarray(y)[~zero], np.asarray(x)[~zero])
    assert not np.asarray(y == 0).any(-1)[~zero].any()  # whole pixels, all channels together
    np.testing.assert_array_equal(cyclegan.pixel_dropout(jax.random.key(1), x, 0.0), x)


def test_external_part_masks_replace_landmark_parts(grid_faces, tmp_path):
    import shutil
    import cv2
    d = str(tmp_path / "ext")
    shutil.copytree(grid_faces["a"], d, ignore=shutil.ignore_patterns("tfds"))
    key = os.listdir(os.path.join(d, "inputs"))[0]
    os.makedirs(os.path.join(d, "inputs", key, "parts"))
    m = np.zeros((64, 64), np.uint8)
    m[10:20, 10:20] = 255
    cv2.imwrite(os.path.join(d, "inputs", key, "parts", "000070.png"), m)
    ex = [e for e in tfds_faces.builder(d).as_data_source("validation")
          if int(e["frame"]) == 70][0]
    parts = ex["parts"]
    assert (parts[10:20, 10:20] == 255).all() and parts.sum() == 100 * 255 * 4


def test_sharded_step_equals_single_device_step(grid_faces):
    config = cyclegan_faces.get_config("tiny")
    config.batch_size = 8
    tables = {k: pipeline.FaceSource([v], "train", 32) for k, v in grid_faces.items()}
    batches = pipeline.FaceBatches(tables, global_batch=8, seed=0, fields=cyclegan.FIELDS)
    results = [train_steps_on(devices, cyclegan, config, batches, 1)
               for devices in (jax.devices()[:1], jax.devices())]
    for k in results[0][1]:
        assert results[0][1][k] == pytest.approx(results[1][1][k], rel=1e-5, abs=1e-6), k
    # One step: later steps of a GAN amplify the float differences (see assert_params_agree).
    params = lambda st: {k: st[k]["params"] for k in cyclegan.NETS}
    assert_params_agree(params(results[0][0]), params(results[1][0]),
                        lr=config.optim.learning_rate, steps=1)
    for pool in ("pool_a", "pool_b"):
        np.testing.assert_allclose(results[0][0][pool]["images"], results[1][0][pool]["images"],
                                   atol=1e-4)


def short_run_config(grid_faces):
    config = cyclegan_faces.get_config("tiny")
    config.data.a, config.data.b = grid_faces["a"], grid_faces["b"]
    config.batch_size = 8
    config.num_steps, config.eval_every, config.checkpoint_every = 120, 60, 60
    config.optim.learning_rate = 1e-3
    return config


@pytest.fixture(scope="module")
def short_run(grid_faces, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("cyclegan"))
    return workdir, train.train(short_run_config(grid_faces), workdir)


def test_short_run_on_two_people_lowers_the_cycle_loss(short_run):
    workdir, metrics = short_run
    h = run_files.read_history(workdir)
    print(f"CycleGAN held-out cycle L1: A {h[0]['val_cycle_a']:.4f} -> {h[-1]['val_cycle_a']:.4f},"
          f" B {h[0]['val_cycle_b']:.4f} -> {h[-1]['val_cycle_b']:.4f} in 120 steps")
    for k in ("val_cycle_a", "val_cycle_b"):
        assert h[-1][k] < 0.6 * h[0][k]
    assert all(np.isfinite(v) for v in metrics.values())


def test_init_from_starts_with_the_trained_weights(short_run, grid_faces, tmp_path):
    """The four networks' weights carry over; optimizers and image pools start fresh."""
    config = short_run_config(grid_faces)
    config.num_steps, config.eval_every, config.init_from = 0, 0, short_run[0]
    train.train(config, str(tmp_path))
    assert_started_from(cyclegan.TASK, short_run[0], short_run_config(grid_faces),
                        str(tmp_path), config)


def test_exact_resume_with_the_pools_in_the_state(grid_faces, tmp_path, capfd):
    """A run resumed from its step-4 checkpoint (the uninterrupted run's, the later ones
    removed: what a kill after step 4 leaves) ends bitwise equal to the uninterrupted run,
    image pools included. (A real SIGKILL mid-run: tests/test_train.py.)"""
    config = cyclegan_faces.get_config("tiny")
    config.data.a, config.data.b = grid_faces["a"], grid_faces["b"]
    config.pool_size, config.num_steps, config.checkpoint_every = 3, 8, 4
    config.eval_every = config.preview_every = 0
    straight, resumed = train_and_resume(config, tmp_path, capfd)
    shapes = jax.eval_shape(lambda: cyclegan.init(jax.random.key(0), config))
    a = checkpoint.Checkpointer(straight, read_only=True).restore_local(shapes)
    b = checkpoint.Checkpointer(resumed, read_only=True).restore_local(shapes)
    assert int(a["step"]) == int(b["step"]) == 8 and int(a["pool_a"]["count"]) == 3
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), a, b)
