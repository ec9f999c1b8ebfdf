"""Loss terms (facejax/losses.py) against numpy, jitted, with check_grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from facejax import losses


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


def np_bce(logits, label):
    p = 1 / (1 + np.exp(-logits))
    return -(label * np.log(p) + (1 - label) * np.log(1 - p))


def test_gan_losses_against_numpy():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(2, 30, 30, 1)) * 3, rng.normal(size=(2, 30, 30, 1)) * 3
    for mode, ref_r, ref_f, ref_g in [
        ("vanilla", np_bce(real, 1), np_bce(fake, 0), np_bce(fake, 1)),
        ("lsgan", (real - 1) ** 2, fake ** 2, (fake - 1) ** 2),
        ("hinge", np.maximum(0, 1 - real), np.maximum(0, 1 + fake), -fake),
    ]:
        r, f = jax.jit(losses.gan_discriminator, static_argnums=2)(real, fake, mode)
        np.testing.assert_allclose(r, ref_r, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(f, ref_f, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(jax.jit(losses.gan_generator, static_argnums=1)(fake, mode),
                                   ref_g, rtol=1e-5, atol=1e-6)
    # Stable for large logits, and gradients match finite differences.
    assert np.isfinite(losses.bce_with_logits(jnp.array([1e4, -1e4]), 1.0)).all()
    check_grads(lambda x: losses.bce_with_logits(x, 1.0).mean(), (jnp.array(real[0]),),
                order=1, modes=["rev"], eps=1e-2, atol=1e-2)
    check_grads(lambda x: losses.gan_generator(x, "lsgan").mean(), (jnp.array(fake[0]),),
                order=1, modes=["rev"], eps=1e-1)
    with pytest.raises(ValueError, match="gan_mode"):
        losses.gan_generator(fake, "wgan")
