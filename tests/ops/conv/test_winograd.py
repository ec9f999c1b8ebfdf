"""Winograd tiles (facejax/ops/conv/winograd.py): the transform matrices and float32 rounding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facejax.ops.conv import winograd


def test_winograd_matrices_are_the_published_ones_and_filter_exactly():
    """F(2, 3) is Lavin & Gray's (2016) table, up to the sign of the point at infinity (BT's last
    row and AT's last column flip together); every F(m, r) computes the m outputs of an r-tap
    correlation exactly (float64)."""
    at, g, bt = winograd.winograd_matrices(2, 3)
    flip = np.diag([1, 1, 1, -1])
    np.testing.assert_array_equal(flip @ bt,
                                  [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
    np.testing.assert_array_equal(g, [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
    np.testing.assert_array_equal(at @ flip, [[1, 1, 1, 0], [0, 1, -1, -1]])
    np.testing.assert_array_equal(winograd.winograd_matrices(4, 3)[2][0], [4, 0, -5, 0, 1, 0])
    rng = np.random.default_rng(0)
    for m, r in [(2, 3), (4, 3), (3, 2), (2, 4), (4, 4), (2, 5), (6, 3), (2, 7)]:
        at, g, bt = winograd.winograd_matrices(m, r)
        d, k = rng.normal(size=m + r - 1), rng.normal(size=r)
        np.testing.assert_allclose(at @ ((g @ k) * (bt @ d)), np.correlate(d, k, "valid"),
                                   atol=1e-10, err_msg=f"F({m}, {r})")
    assert not winograd.supported(3, 7)
    with pytest.raises(ValueError, match="interpolation points"):
        winograd.winograd_matrices(3, 7)


@pytest.mark.parametrize("m, r", [(2, 3), (3, 3), (4, 3), (3, 2), (3, 4)])
def test_winograd_conv_rounding_at_realistic_scale(m, r):
    """An r×r, 64 -> 64 layer with lecun-normal weights on unit inputs, ragged tiles and
    asymmetric padding: value and both gradients within float32 rounding of XLA's. r 3: the 3×3
    layers; 2: the strided and transposed 4×4 ones' space-to-depth and phase kernels; 4: the
    PatchGAN's stride-1 layer."""
    x = jax.random.normal(jax.random.key(0), (2, 19, 17, 64))
    w = jax.random.normal(jax.random.key(1), (r, r, 64, 64)) / (8.0 * r)
    pad = ((2, 0), (1, 3))
    ref = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), pad,
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
    fn = jax.jit(lambda x, w: winograd.conv_winograd(x, w, pad, m))
    y = ref(x, w)
    cot = jax.random.normal(jax.random.key(2), y.shape)
    tol = {(2, 3): 2e-6, (3, 3): 1e-5, (4, 3): 3e-5, (3, 2): 2e-6, (3, 4): 3e-5}[m, r]  # of max
    np.testing.assert_allclose(fn(x, w), y, atol=tol * float(jnp.abs(y).max()))
    g = jax.jit(jax.grad(lambda x, w: (fn(x, w) * cot).sum(), (0, 1)))(x, w)
    g_ref = jax.grad(lambda x, w: (ref(x, w) * cot).sum(), (0, 1))(x, w)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a, b, atol=tol * float(jnp.abs(b).max()))
