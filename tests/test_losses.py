"""Loss terms (facejax/losses.py) against numpy, jitted, with check_grads."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from facejax import losses
from facejax.ops import conv


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


def _np_depthwise_valid(x, k):
    n, h, w, c = x.shape
    s = k.shape[0]
    out = np.zeros((n, h - s + 1, w - s + 1, c))
    for i in range(s):
        for j in range(s):
            out += k[i, j] * x[:, i:i + h - s + 1, j:j + w - s + 1]
    return out


def test_dssim_against_numpy_and_its_gradients():
    """DeepFaceLab's DSSIM: a softmax-Gaussian window, VALID filtering, per channel."""
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(2, 20, 18, 3))
    b = np.clip(a + rng.normal(scale=0.1, size=a.shape), 0, 1)
    size = 7
    d = (np.arange(size) - (size - 1) / 2.0) ** 2 * (-0.5 / 1.5 ** 2)
    k = np.exp(d[None] + d[:, None])
    k /= k.sum()
    np.testing.assert_allclose(np.outer(*[losses.ssim_taps(size)] * 2), k, rtol=1e-5)
    red = lambda x: _np_depthwise_valid(x, k)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m0, m1 = red(a), red(b)
    lum = (2 * m0 * m1 + c1) / (m0 ** 2 + m1 ** 2 + c1)
    cs = (2 * red(a * b) - 2 * m0 * m1 + c2) / (red(a * a + b * b) - m0 ** 2 - m1 ** 2 + c2)
    ref = (1 - (lum * cs).mean((1, 2))) / 2
    got = jax.jit(losses.dssim, static_argnums=2)(jnp.asarray(a, jnp.float32),
                                                  jnp.asarray(b, jnp.float32), size)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=1e-6)
    assert float(losses.dssim(jnp.asarray(a, jnp.float32), jnp.asarray(a, jnp.float32),
                              size).max()) < 1e-6
    check_grads(lambda x: losses.dssim(x, jnp.asarray(b), size).sum(), (jnp.asarray(a),),
                order=1, modes=["rev"], eps=1e-3, atol=2e-2, rtol=2e-2)


def test_separable_window_equals_the_per_channel_convolution():
    """Both forms of `conv.separable_filter`, the CPU's banded-matrix products and the others'
    two per-channel convolutions (inside plain_forms), give what XLA's per-channel convolution
    with the outer-product window gives, value and gradient, at SAEHD's sizes (same and valid
    padding, even and uneven)."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.uniform(size=(2, 128, 96, 3)), jnp.float32)
    for taps, pad in ((losses.ssim_taps(11), ((0, 0), (0, 0))),
                      (losses.gaussian_taps(4.0), ((8, 8), (8, 8))),
                      (losses.gaussian_taps(1.0), ((1, 1), (1, 1))),
                      (losses.gaussian_taps(1.0), ((2, 0), (0, 1)))):
        window = np.outer(taps, taps)
        kernel = jnp.asarray(np.broadcast_to(window[:, :, None, None], window.shape + (1, 3)),
                             jnp.float32)
        conv_2d = lambda v: jax.lax.conv_general_dilated(
            v, kernel, (1, 1), pad, feature_group_count=3,
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
        g = jnp.asarray(rng.normal(size=conv_2d(x).shape), jnp.float32)
        want, want_grad = conv_2d(x), jax.vjp(conv_2d, x)[1](g)[0]
        for plain in (False, True):
            def mine(v):
                with conv.plain_forms() if plain else contextlib.nullcontext():
                    return conv.separable_filter(v, taps, pad)
            np.testing.assert_allclose(mine(x), want, atol=2e-6)
            np.testing.assert_allclose(jax.vjp(mine, x)[1](g)[0], want_grad, atol=2e-5)
    # The CPU takes the products, elsewhere (and in plain_forms) the convolutions.
    primitives = lambda: {e.primitive.name for e in jax.make_jaxpr(
        lambda v: conv.separable_filter(v, taps, pad))(x).jaxpr.eqns}
    assert "dot_general" in primitives() and "conv_general_dilated" not in primitives()
    with conv.plain_forms():
        assert "conv_general_dilated" in primitives() and "dot_general" not in primitives()


def test_gaussian_blur_kernel_and_mask_blur():
    k = np.outer(losses.gaussian_taps(4.0), losses.gaussian_taps(4.0))
    assert k.shape == (17, 17) and abs(k.sum() - 1) < 1e-6
    np.testing.assert_allclose(k, k.T)
    assert np.unravel_index(k.argmax(), k.shape) == (8, 8)
    assert losses.gaussian_taps(0.5).shape == (3,)  # at least 3 taps, odd
    x = np.zeros((1, 21, 21, 1), np.float32)
    x[0, 10, 10, 0] = 1.0
    np.testing.assert_allclose(losses.gaussian_blur(jnp.asarray(x), 4.0)[0, 2:19, 2:19, 0], k,
                               atol=1e-7)
