"""SAEHD's discriminators (facejax/tasks/saehd_gan.py): they start at chance and learn real A
faces from reconstructions, the figures that show it, and DeepFaceLab's order (the PatchGAN
judges faces of the generator just updated)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facejax.tasks import saehd, saehd_gan
from tests.helpers import train_steps_on
from tests.tasks.test_saehd import _batches, tiny


def gan_config(grid_faces, lr=1e-3):
    config = tiny(grid_faces)
    config.loss.update(gan_power=0.1, true_face_power=0.01)
    config.model.update(gan_dims=16, gan_patch_size=8)
    config.optim.learning_rate = lr
    return config


def test_pixel_figures_against_numpy():
    rng = np.random.default_rng(0)
    real, fake = (rng.normal(size=(2, 8, 8, 1)).astype(np.float32) for _ in range(2))
    inside = (rng.uniform(size=(2, 8, 8, 1)) > 0.4) * rng.uniform(size=(2, 8, 8, 1))
    got = saehd_gan.pixel_figures(jnp.asarray(real), jnp.asarray(fake), jnp.asarray(inside))
    w = inside > 0
    bce = lambda x, y: np.log1p(np.exp(-x)) if y else np.log1p(np.exp(x))
    assert float(got["d_loss_inside"]) == pytest.approx(
        0.5 * (bce(real[w], 1) + bce(fake[w], 0)).mean(), rel=1e-5)
    assert float(got["d_logit_gap"]) == pytest.approx(real[w].mean() - fake[w].mean(), rel=1e-5)
    assert float(got["d_acc"]) == pytest.approx(
        0.5 * ((real[w] > 0).mean() + (fake[w] < 0).mean()), rel=1e-6)


def test_discriminators_learn_real_faces_from_reconstructions(grid_faces):
    """With gan_power and true_face_power the step trains both discriminators beside the
    autoencoder: their losses start at chance (2·ln 2 for the U-Net's two heads, ln 2 for the
    code's), the generator gets both terms on A's side only, and both discriminators' own
    updates learn to tell real A faces from reconstructions and B's codes from A's (held fixed
    here: in training the generator moves too)."""
    config = gan_config(grid_faces)
    batches = _batches(grid_faces, config)
    state, first = train_steps_on(jax.devices()[:1], saehd.TASK, config, batches, 1)
    assert set(state) >= {"d", "code_d"}
    assert first["d_loss"] == pytest.approx(2 * np.log(2), abs=0.05)
    assert first["d_loss_inside"] == pytest.approx(np.log(2), abs=0.03)
    assert first["d_code_loss"] == pytest.approx(np.log(2), abs=0.05)
    assert first["gan_a"] > 0 and first["true_face_a"] > 0 and "gan_b" not in first
    assert bool(first["finite"])

    @jax.jit
    def faces(state, batch):
        sides = saehd._warp(jax.random.key(1), batch, config)
        return sides, saehd.loss_fn(state["params"], state, sides, config)[1][1]

    sides, rendered = faces(state, batches(1))
    _, target, mask, _ = sides["a"]
    inside = saehd.mask_blur(mask, config.model.size)

    @jax.jit
    def d_step(nets, key):
        (_, m), g = jax.value_and_grad(saehd_gan.discriminator_losses, has_aux=True)(
            {n: nets[n]["params"] for n in nets}, target, rendered["face_a"], inside,
            rendered["codes"], config)
        return {n: dict(zip(("params", "opt"), saehd._apply(
            nets[n]["params"], nets[n]["opt"], g[n], key, config))) for n in nets}, m

    nets = {n: state[n] for n in ("d", "code_d")}
    _, start = d_step(nets, jax.random.key(0))
    for i in range(40):
        nets, end = d_step(nets, jax.random.key(i))
    print("discriminators on fixed faces, start and after 40 updates:",
          {k: (float(start[k]), float(end[k])) for k in start})
    assert end["d_loss"] < 0.7 * start["d_loss"]
    assert end["d_loss_inside"] < 0.7 * start["d_loss_inside"]
    assert end["d_logit_gap"] > 1.0 and end["d_acc"] > 0.8
    # An untrained encoder's codes are about 1e-3 in size, so the code discriminator's logits
    # move slowly at first; its loss still falls.
    assert end["d_code_loss"] < start["d_code_loss"] - 0.003
    config.model.archi = "liae"
    with pytest.raises(ValueError, match="true_face_power needs archi df"):
        jax.eval_shape(lambda: saehd.TASK.init(jax.random.key(0), config))


def test_the_patchgan_judges_the_updated_generators_faces(grid_faces):
    """DeepFaceLab's order: the discriminator's fakes are A's warped faces rendered with the
    weights after the generator's update, not the ones the generator's loss saw."""
    config = gan_config(grid_faces)
    config.loss.true_face_power = 0.0
    state = jax.jit(lambda k: saehd.init(k, config))(jax.random.key(0))
    batch = _batches(grid_faces, config)(0)
    new, metrics = jax.jit(lambda s, b: saehd.train_step(s, b, jax.random.key(0), config))(
        jax.tree.map(jnp.copy, state), batch)

    @jax.jit
    def d_loss_of(params):
        k_warp = jax.random.split(jax.random.fold_in(jax.random.key(0), 0), 3)[0]
        warped, target, mask, _ = saehd._warp(k_warp, batch, config)["a"]
        fake = saehd._render_a(params, warped, config)
        inside = saehd.mask_blur(mask, config.model.size)
        return saehd_gan.discriminator_losses({"d": state["d"]["params"]}, target, fake,
                                              inside, {}, config)[1]["d_loss"]

    after, before = float(d_loss_of(new["params"])), float(d_loss_of(state["params"]))
    assert float(metrics["d_loss"]) == pytest.approx(after, rel=1e-5)
    assert abs(after - before) > 1e-5
