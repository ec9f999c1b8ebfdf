"""The entry point (facejax.ops.conv.convolve): 'SAME' and explicit padding, the unpadded
route, and plain forms for counting a model's multiply-adds."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facejax.ops import conv


def test_plain_forms_count_the_models_multiply_adds():
    """Inside plain_forms every layer is XLA's own convolution, so the benchmark's FLOP count
    is the plain model's, whatever form runs (Winograd counts fewer)."""
    x = jnp.zeros((2, 16, 16, 64))
    w = jnp.zeros((3, 3, 64, 64))
    cost = lambda impl: jax.jit(lambda x, w: conv.convolve("stride1", x, w, impl=impl)).lower(
        x, w).cost_analysis()["flops"]
    plain = cost("xla")
    assert cost("auto") < 0.6 * plain and cost("winograd4") < 0.6 * plain
    with conv.plain_forms():
        assert cost("winograd4") == cost("auto") == plain  # an explicit impl too
    assert cost("auto") < 0.6 * plain


def test_unpadded_convolutions_take_the_valid_route_on_cpu_outside_plain_forms():
    x = jax.random.normal(jax.random.key(0), (1, 14, 13, 6))
    w = jax.random.normal(jax.random.key(1), (7, 7, 6, 3))
    # A new function per trace: jax caches traces per function, and the forms are chosen
    # when tracing.
    f = lambda x: conv.convolve("stride1", x, w, ((0, 0), (0, 0)), impl="xla")
    jaxpr = lambda: str(jax.make_jaxpr(lambda x: f(x))(x))
    ref = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(f(x), ref, atol=1e-4, rtol=1e-5)
    assert "conv_valid" in jaxpr()
    with conv.plain_forms():
        assert "conv_valid" not in jaxpr()


@pytest.mark.parametrize("kind, k", [("stride1", 3), ("stride1", 4), ("strided", 5),
                                     ("strided", 4)])
def test_same_padding_matches_nn_conv(kind, k):
    stride = 2 if kind == "strided" else 1
    x = jax.random.normal(jax.random.key(0), (2, 9, 7, 4))
    ref = nn.Conv(5, (k, k), strides=stride, padding="SAME", use_bias=False)
    v = ref.init(jax.random.key(1), x)
    np.testing.assert_allclose(conv.convolve(kind, x, v["params"]["kernel"]), ref.apply(v, x),
                               atol=1e-5, rtol=1e-5)


def test_bad_arguments_are_value_errors():
    x = jnp.zeros((1, 4, 4, 2))
    with pytest.raises(ValueError, match="kind"):
        conv.convolve("dilated", x, jnp.zeros((3, 3, 2, 2)))
    with pytest.raises(ValueError, match="kernels 3 and 4"):
        conv.convolve("transposed", x, jnp.zeros((5, 5, 2, 2)))
    with pytest.raises(ValueError, match="no padding"):
        conv.convolve("transposed", x, jnp.zeros((4, 4, 2, 2)), ((1, 1), (1, 1)))
