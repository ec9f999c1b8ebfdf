"""Every convolution form, by kind and name, with one signature per kind:

    strided     f(x, kernel [k, k, C, O], padding ((top, bottom), (left, right))): stride 2
    transposed  f(x, kernel [4, 4, C, O], zero_first): stride 2, 'SAME', output 2H × 2W;
                zero_first: kernel row 0 and column 0 are zeros (a 3×3 layer embedded in 4×4),
                which a form may skip
    stride1     f(x, kernel [k, k, C, O], padding)

"xla" is XLA's own convolution in each kind; every other form equals it in value and both
gradients (tests/ops/conv/test_forms.py walks this table).
"""

from __future__ import annotations

import functools

from facejax.ops.conv import im2col, space_to_depth, thin, transposed, winograd, xla


def _strided_xla(x, kernel, padding):
    return xla.conv(x, kernel, padding, stride=2)


def _transposed_xla(x, kernel, zero_first=False):
    del zero_first  # the zero taps are multiplied like any other
    return xla.conv_transpose(x, kernel)


def _ignoring_zero_first(fn):
    return lambda x, kernel, zero_first=False: fn(x, kernel)


def _winograd(m):
    return lambda x, kernel, padding: winograd.conv_winograd(x, kernel, padding, m)


FORMS = {
    "strided": {
        "xla": _strided_xla,
        "s2d": space_to_depth.conv_s2d,
        "winograd": space_to_depth.conv_s2d_winograd,
        "im2col": functools.partial(im2col.conv_im2col, stride=2),
    },
    "transposed": {
        "xla": _transposed_xla,
        "subpixel": _ignoring_zero_first(transposed.conv_transpose_subpixel),
        "taps": _ignoring_zero_first(transposed.conv_transpose_taps),
        "winograd": _ignoring_zero_first(transposed.conv_transpose_winograd),
        "phases": lambda x, kernel, zero_first=False: transposed.conv_transpose_phases(
            x, kernel, zero_first),
        "mixed": lambda x, kernel, zero_first=False: transposed.conv_transpose_phases(
            x, kernel, zero_first, xla_forward=True),
    },
    "stride1": {
        "xla": xla.conv1,
        "im2col": functools.partial(im2col.conv_im2col, stride=1),
        "thin": thin.conv_thin,
        "winograd2": _winograd(2),
        "winograd3": _winograd(3),
        "winograd4": _winograd(4),
    },
}


def names(kind: str) -> tuple[str, ...]:
    """The registered forms of `kind`."""
    return tuple(FORMS[kind])


def supports(kind: str, name: str, kernel_size: int) -> bool:
    """Whether form `name` of `kind` computes k×k kernels of this size (the transposed forms
    take the 4×4 kernel every transposed layer is computed as)."""
    if kind == "stride1" and name.startswith("winograd"):
        return winograd.supported(int(name[len("winograd"):]), kernel_size)
    return True
