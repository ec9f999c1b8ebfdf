"""XSeg's network (facejax/models/xseg.py): DeepFaceLab's layer table and its parameter count,
the blur pool and the filter response normalisation against numpy, the transposed block's
shape, and the sides it refuses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facejax.models import xseg


def dfl_parameter_count(b: int, side: int) -> int:
    """The parameters of DeepFaceLab's XSeg(3, b, 1) at `side` px, from its layer list
    (core/leras/models/XSeg.py): (in, out) of each block, conv or transposed (3×3 kernel and
    bias, FRN weight, bias and eps, TLU tau), the two dense layers and the output conv."""
    blocks = [(3, b), (b, b), (b, 2 * b), (2 * b, 2 * b), (2 * b, 4 * b), (4 * b, 4 * b),
              (4 * b, 8 * b), *[(8 * b, 8 * b)] * 8]
    for _ in range(3):  # up5, up4, up3: to 4b, then 12b -> 8b and two 8b blocks
        blocks += [(8 * b, 4 * b), (12 * b, 8 * b), (8 * b, 8 * b), (8 * b, 8 * b)]
    blocks += [(8 * b, 4 * b), (8 * b, 4 * b), (4 * b, 4 * b),    # up2, uconv22, uconv21
               (4 * b, 2 * b), (4 * b, 2 * b), (2 * b, 2 * b),    # up1, uconv12, uconv11
               (2 * b, b), (2 * b, b), (b, b)]                    # up0, uconv02, uconv01
    count = sum(9 * i * o + o + 2 * o + 1 + o for i, o in blocks)
    flat = (side // 64) ** 2 * 8 * b
    count += flat * 512 + 512 + 512 * flat + flat
    return count + 9 * b + 1


@pytest.mark.parametrize("base, side", [(32, 256), (4, 64), (8, 128)])
def test_parameter_count_is_deepfacelabs(base, side):
    m = xseg.XSeg(base=base)
    x = jnp.zeros((1, side, side, 3))
    params = jax.eval_shape(lambda: m.init(jax.random.key(0), x))["params"]
    assert sum(p.size for p in jax.tree.leaves(params)) == dfl_parameter_count(base, side)
    out = jax.eval_shape(lambda: m.apply(m.init(jax.random.key(0), x), x))
    assert out.shape == (1, side, side, 1) and out.dtype == jnp.float32


def test_the_side_must_divide_by_64():
    m = xseg.XSeg(base=2, dense=8)
    with pytest.raises(ValueError, match="divides by 64, got 96"):
        m.init(jax.random.key(0), jnp.zeros((1, 96, 96, 3)))


@pytest.mark.parametrize("taps", [2, 3, 4])
def test_blur_pool_is_the_binomial_filter_then_every_second_pixel(taps):
    x = np.random.default_rng(taps).normal(size=(2, 16, 16, 3)).astype(np.float32)
    a = {2: [1, 1], 3: [1, 2, 1], 4: [1, 3, 3, 1]}[taps]
    k = np.outer(a, a) / np.sum(a) ** 2
    before = (taps - 1) // 2
    padded = np.pad(x, ((0, 0), (before, taps - 1 - before), (before, taps - 1 - before),
                        (0, 0)))
    want = np.zeros((2, 8, 8, 3), np.float64)
    for i in range(8):
        for j in range(8):
            win = padded[:, 2 * i:2 * i + taps, 2 * j:2 * j + taps]
            want[:, i, j] = np.einsum("nhwc,hw->nc", win, k)
    np.testing.assert_allclose(xseg.blur_pool(jnp.asarray(x), taps), want, atol=1e-5)


def test_frn_and_tlu_are_the_formula():
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 4)).astype(np.float32)
    frn = xseg.FRN()
    params = frn.init(jax.random.key(0), x)["params"]
    assert float(params["eps"][0]) == pytest.approx(1e-6)
    params = {"weight": np.array([1.0, 2.0, 0.5, -1.0], np.float32),
              "bias": np.array([0.1, 0.0, -0.2, 0.3], np.float32),
              "eps": np.array([-1e-3], np.float32), "tau": np.array([0.0, -5, 0.2, 0.1],
                                                                    np.float32)}
    got = frn.apply({"params": params}, x)
    nu2 = (x.astype(np.float64) ** 2).mean(axis=(1, 2), keepdims=True)
    y = x / np.sqrt(nu2 + 1e-3) * params["weight"] + params["bias"]
    np.testing.assert_allclose(got, np.maximum(y, params["tau"]), rtol=1e-5, atol=1e-6)


def test_up_block_doubles_the_side():
    blk = xseg.Block(6, up=True)
    x = jnp.ones((1, 4, 4, 3))
    out = jax.eval_shape(lambda: blk.apply(blk.init(jax.random.key(0), x), x))
    assert out.shape == (1, 8, 8, 6)
