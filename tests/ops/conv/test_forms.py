"""Every registered convolution form equals XLA's own in value and both gradients (the table in
facejax/ops/conv/registry.py is walked, so a new form is tested by registering it)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facejax.ops import conv
from facejax.ops.conv import registry, transposed

DIMS = ("NHWC", "HWIO", "NHWC")


def _reference(kind):
    """XLA's convolution of `kind`, straight from lax (no CPU route)."""
    if kind == "transposed":
        return lambda x, k, zero_first: jax.lax.conv_transpose(x, k, (2, 2), "SAME",
                                                               dimension_numbers=DIMS)
    stride = 2 if kind == "strided" else 1
    return lambda x, k, pad: jax.lax.conv_general_dilated(x, k, (stride, stride), pad,
                                                          dimension_numbers=DIMS)


def _same(shape, k, stride):
    return (conv.same_padding(shape[1], k, stride), conv.same_padding(shape[2], k, stride))


# (input shape, kernel size, output channels, padding or None for 'SAME')
CASES = {
    "strided": [((1, 9, 8, 4), 5, 5, None), ((2, 8, 8, 6), 4, 5, None),
                ((1, 4, 4, 8), 3, 5, None),
                ((1, 8, 9, 6), 3, 5, ((1, 1), (1, 1))),  # CycleGAN's down layers
                ((2, 8, 8, 6), 4, 5, ((1, 1), (1, 1)))],  # PyTorch-style, pix2pix and CycleGAN
    # The last case takes the tap form's wide-kernel branch (input broadcast over taps).
    "transposed": [((2, 4, 4, 3), 4, 5, None), ((1, 5, 7, 8), 4, 5, None),
                   ((1, 2, 3, 16), 4, 8, None)],
    "stride1": [((2, 4, 4, 8), 3, 5, None),
                ((2, 9, 7, 6), 4, 1, ((1, 1), (1, 1))),   # the PatchGAN's logits
                ((2, 9, 7, 24), 4, 1, ((1, 1), (1, 1))),  # thin's other orientation
                ((1, 14, 13, 6), 7, 3, ((0, 0), (0, 0))),  # unpadded: the conv_valid route
                ((1, 10, 11, 12), 7, 3, ((3, 2), (1, 4))),  # thin's crop of uneven padding
                ((2, 9, 8, 3), 3, 5, ((2, 0), (1, 3)))],
}
def _tested(kind, name, case) -> bool:
    """Winograd tiles run on 3×3 and 4×4 kernels here, the ones the rules give them (larger ones
    compile slowly; tests/ops/conv/test_winograd.py filters them exactly); on a kernel a form cannot
    take, it must refuse."""
    k = case[1]
    return not (name.startswith("winograd") and k > 4 and registry.supports(kind, name, k))


PARAMS = [(kind, name, i) for kind, cases in CASES.items() for name in registry.names(kind)
          for i in range(len(cases)) if _tested(kind, name, cases[i])]


def _inputs(kind, i):
    shape, k, out, pad = CASES[kind][i]
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), (k, k, shape[-1], out))
    if kind == "transposed":
        arg = False
    else:
        arg = pad if pad is not None else _same(shape, k, 2 if kind == "strided" else 1)
    return x, w, arg


def _value_and_grads(fn, x, w, arg):
    """fn(x, w, arg) and the gradients of <fn, cot> for a fixed random cot."""
    y = jax.jit(fn, static_argnums=2)(x, w, arg)
    cot = jax.random.normal(jax.random.key(2), y.shape)
    return (y, *jax.jit(jax.grad(lambda x, w: (fn(x, w, arg) * cot).sum(), (0, 1)))(x, w))


_REFERENCES = {}


def _reference_outputs(kind, i):
    if (kind, i) not in _REFERENCES:
        _REFERENCES[kind, i] = _value_and_grads(_reference(kind), *_inputs(kind, i))
    return _REFERENCES[kind, i]


@pytest.mark.parametrize("kind, name, i", PARAMS, ids=[f"{k}-{n}-{i}" for k, n, i in PARAMS])
def test_form_equals_xla_in_value_and_both_gradients(kind, name, i):
    x, w, arg = _inputs(kind, i)
    form = registry.FORMS[kind][name]
    if not registry.supports(kind, name, w.shape[0]):
        with pytest.raises(ValueError, match="interpolation points"):
            form(x, w, arg)
        return
    got, ref = _value_and_grads(form, x, w, arg), _reference_outputs(kind, i)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-4, rtol=1e-4)
    for a, b in zip(got[1:], ref[1:]):
        np.testing.assert_allclose(a, b, atol=1e-3, rtol=1e-4)


def _pytorch_transposed3(x, w):
    """PyTorch's ConvTranspose2d(k=3, s=2, padding=1, output_padding=1), by its definition:
    y[o] += x[i] w[o - 2i + 1]."""
    n, h, wd, _ = x.shape
    y = np.zeros((n, 2 * h, 2 * wd, w.shape[3]), np.float32)
    for i in range(h):
        for j in range(wd):
            for a in range(3):
                for b in range(3):
                    oy, ox = 2 * i + a - 1, 2 * j + b - 1
                    if 0 <= oy < 2 * h and 0 <= ox < 2 * wd:
                        y[:, oy, ox] += x[:, i, j] @ w[a, b]
    return y


@pytest.mark.parametrize("name", registry.names("transposed"))
def test_3x3_transposed_forms_match_pytorchs_definition(name):
    """CycleGAN's 3×3 transposed layers go through the 4×4 forms with the kernel flipped and a
    zero tap in front; "phases" skips those taps, and its kernel gradient there stays zero."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 3, 4, 2)).astype(np.float32)
    w = rng.normal(size=(3, 3, 2, 5)).astype(np.float32)
    ref = _pytorch_transposed3(x, w)
    f = lambda x, w: conv.convolve("transposed", x, w, impl=name)
    np.testing.assert_allclose(f(x, w), ref, atol=1e-5)
    cot = rng.normal(size=ref.shape).astype(np.float32)
    g = jax.grad(lambda x, w: (f(x, w) * cot).sum(), (0, 1))(x, w)
    g_ref = jax.grad(lambda x, w: (conv.convolve("transposed", x, w, impl="xla") * cot).sum(),
                     (0, 1))(x, w)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_phase_form_with_known_zero_taps_is_the_function_of_the_other_taps():
    """zero_first (UpConv's 3×3 case) skips kernel row 0 and column 0: the value is the
    transposed convolution with them zeroed, and their gradient is 0."""
    x = jax.random.normal(jax.random.key(0), (1, 3, 4, 6))
    k = jax.random.normal(jax.random.key(1), (4, 4, 6, 5))
    mask = jnp.ones((4, 4, 1, 1)).at[0].set(0).at[:, 0].set(0)
    ref = lambda x, k: jax.lax.conv_transpose(x, k * mask, (2, 2), "SAME",
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))
    cot = jax.random.normal(jax.random.key(2), (1, 6, 8, 5))
    g2 = jax.grad(lambda x, k: (ref(x, k) * cot).sum(), (0, 1))(x, k)
    for xla_forward in (False, True):
        fn = lambda x, k: transposed.conv_transpose_phases(x, k, zero_first=True,
                                                       xla_forward=xla_forward)
        np.testing.assert_allclose(fn(x, k), ref(x, k), atol=1e-4)
        g1 = jax.grad(lambda x, k: (fn(x, k) * cot).sum(), (0, 1))(x, k)
        for a, b in zip(g1, g2):
            np.testing.assert_allclose(a, b, atol=1e-3, rtol=1e-4)
        assert not np.asarray(g1[1])[0].any() and not np.asarray(g1[1])[:, 0].any()
