"""Stride-2 'SAME' transposed convolution with a 4×4 kernel, as other computations: a 3×3
convolution and a pixel shuffle, per-tap matrix products, or one stride-1 convolution per output
phase (directly or in Winograd tiles). Each equals XLA's in value and both gradients."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from facejax.ops.conv import im2col, xla
from facejax.ops.conv.winograd import conv_winograd
from facejax.ops.shuffle import pixel_shuffle

# Tap of the 4-tap transposed kernel that feeds output phase r from input offset u-1, for a
# stride-2 'SAME' transposed convolution (XLA pads the dilated input by 2 at the low end):
# t = 2u - r when 0 <= t <= 3; 4 marks "no tap" (a zero row appended to the kernel).
_SUBPIXEL_TAPS = np.array([[0, 4], [2, 1], [4, 3]])


def _require_4x4(kernel: jax.Array, form: str) -> None:
    if kernel.shape[:2] != (4, 4):
        raise ValueError(f"{form} transposed convolution needs a 4×4 kernel, got {kernel.shape}")


def conv_transpose_subpixel(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """4×4 stride-2 'SAME' transposed convolution as a 3×3 convolution + pixel shuffle.

    Equal to lax.conv_transpose(x, kernel, (2, 2), "SAME") (tested in value and gradient), but
    every output phase is one dense stride-1 convolution, which XLA:CPU runs far faster than the
    weight gradient of a transposed convolution.

    Args:
      x: [B, H, W, C]; kernel: [4, 4, C, O].
    Returns:
      [B, 2H, 2W, O].
    """
    _require_4x4(kernel, "subpixel")
    c, o = kernel.shape[2], kernel.shape[3]
    kp = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    rows = kp[_SUBPIXEL_TAPS]                       # [3 (uy), 2 (ry), 5, C, O]
    k3 = rows[:, :, _SUBPIXEL_TAPS]                 # [3, 2, 3 (ux), 2 (rx), C, O]
    k3 = k3.transpose(0, 2, 4, 1, 3, 5).reshape(3, 3, c, 4 * o)
    y = xla.conv(x, k3, ((1, 1), (1, 1)))
    return pixel_shuffle(y, 2)


# For a 4×4 stride-2 'SAME' transposed convolution, output row 2m + r gathers kernel row t of
# input row m + d for each (t, d) in _TAP_PHASES[r] (XLA pads the dilated input by 2 below).
_TAP_PHASES = (((0, -1), (2, 0)), ((1, 0), (3, 1)))


def _shifted(a: jax.Array, d: int, axis: int) -> jax.Array:
    """a[m + d] along `axis`, zero outside (d in -1, 0, 1)."""
    if d == 0:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (1, 0) if d < 0 else (0, 1)
    index = [slice(None)] * a.ndim
    index[axis] = slice(0, -1) if d < 0 else slice(1, None)
    return jnp.pad(a, pad)[tuple(index)]


def _interleave(phases) -> jax.Array:
    """[[y00, y01], [y10, y11]] (each [B, H, W, O], phase (ry, rx)) -> [B, 2H, 2W, O], output
    pixel (2i + ry, 2j + rx) from phase (ry, rx)'s pixel (i, j)."""
    n, h, w, o = phases[0][0].shape
    y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # [B, H, 2, W, 2, O]
    return y.reshape(n, 2 * h, 2 * w, o)


def _phase_kernel(kernel: jax.Array, ty, tx) -> jax.Array:
    """The stride-1 kernel of one output phase: `kernel`'s taps (t, offset) along each axis,
    [len(ty), len(tx), C, O], in the order given."""
    return jnp.stack([jnp.stack([kernel[a, b] for b, _ in tx]) for a, _ in ty])


def conv_transpose_taps(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """4×4 stride-2 'SAME' transposed convolution as 16 matrix products + overlap-add.

    Every kernel tap t multiplies the whole input map ([N·H·W, C] @ [C, O], the kernel used as
    stored), and each output phase adds the 4 tap products that land on it, shifted by at most
    one pixel. Exact multiply-adds (the subpixel form does 2.25×) and no reshuffled copy of the
    kernel, which is what dominates on small maps with wide kernels (the U-Net's inner levels).

    Args:
      x: [B, H, W, C]; kernel: [4, 4, C, O].
    Returns:
      [B, 2H, 2W, O], equal to lax.conv_transpose(x, kernel, (2, 2), "SAME").
    """
    _require_4x4(kernel, "tap")
    n, h, w, c = x.shape
    o = kernel.shape[3]
    if 16 * x.size <= kernel.size:
        # Wide kernel, small map: batched over taps with the input broadcast, so the kernel
        # gradient comes out in the stored [t, c, o] layout; transposed, the optimizer's
        # elementwise passes would read it with a stride, several times slower.
        xs = jnp.broadcast_to(x.reshape(1, n * h * w, c), (16, n * h * w, c))
        cols = jnp.einsum("tpc,tco->tpo", xs, kernel.reshape(16, c, o))
    else:
        # Large map, small kernel (the U-Net's last layer): one product; broadcasting the map
        # 16× costs more than any kernel transposition.
        cols = jnp.einsum("pc,tco->tpo", x.reshape(n * h * w, c), kernel.reshape(16, c, o))
    cols = cols.reshape(4, 4, n, h, w, o)

    def phase(ry, rx):
        terms = [_shifted(_shifted(cols[ty, tx], dy, 1), dx, 2)
                 for ty, dy in _TAP_PHASES[ry] for tx, dx in _TAP_PHASES[rx]]
        return sum(terms[1:], terms[0])

    return _interleave([[phase(ry, rx) for rx in range(2)] for ry in range(2)])


def conv_transpose_winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """4×4 stride-2 'SAME' transposed convolution as its 4 output phases, each a 2×2 stride-1
    convolution (`_TAP_PHASES`) in Winograd F(3×3, 2×2) tiles (`conv_winograd`, whose custom
    VJP gives the gradients): 16 products for 9 outputs against 36.

    Args:
      x: [B, H, W, C]; kernel: [4, 4, C, O].
    Returns:
      [B, 2H, 2W, O], equal to lax.conv_transpose(x, kernel, (2, 2), "SAME").
    """
    _require_4x4(kernel, "Winograd")
    # Each phase's taps in order of input offset; the window starts one pixel before (offset
    # -1, padded at the top or left) or at the pixel itself (padded after).
    taps = [sorted(_TAP_PHASES[r], key=lambda t: t[1]) for r in range(2)]
    pads = [(1, 0) if t[0][1] < 0 else (0, 1) for t in taps]

    def phase(ry, rx):
        return conv_winograd(x, _phase_kernel(kernel, taps[ry], taps[rx]), (pads[ry], pads[rx]), 3)

    return _interleave([[phase(ry, rx) for rx in range(2)] for ry in range(2)])


def conv_transpose_phases(x: jax.Array, kernel: jax.Array, zero_first: bool = False,
                          xla_forward: bool = False) -> jax.Array:
    """4×4 stride-2 'SAME' transposed convolution as 4 stride-1 convolutions, one per output
    phase (2×2 taps each), interleaved: exact multiply-adds. Its gradients (custom VJP) are the
    adjoint strided convolution as one matrix product over the output gradient's 4×4 stride-2
    views: dx = views @ flipped kernel, dkernel = xᵀ @ views, faster on CPU than the phase
    convolutions' own gradients.

    Args:
      x: [B, H, W, C]; kernel: [4, 4, C, O].
      zero_first: kernel row 0 and column 0 are known zeros (UpConv's 3×3 case): the forward
        skips those taps, so the 4 phases take 1, 2, 2 and 4 taps, 9 in all, like the 3×3 layer.
      xla_forward: the value from XLA's own transposed convolution instead (same gradients).
    Returns:
      [B, 2H, 2W, O], equal to lax.conv_transpose(x, kernel, (2, 2), "SAME").
    """
    _require_4x4(kernel, "phase")
    return _phases(x, kernel, zero_first, xla_forward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _phases(x, kernel, zero_first, xla_forward):
    return _phases_value(x, kernel, zero_first, xla_forward)


def _phases_value(x, kernel, zero_first, xla_forward=False):
    if xla_forward:
        if zero_first:
            kernel = kernel.at[0].set(0).at[:, 0].set(0)
        return xla.conv_transpose(x, kernel)
    h, w = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    # Each phase's taps in order of input offset (the window starts at the lower one).
    taps = [sorted((t for t in _TAP_PHASES[r] if not (zero_first and t[0] == 0)),
                   key=lambda t: t[1]) for r in range(2)]

    def phase(ry, rx):
        ty, tx = taps[ry], taps[rx]
        y0, x0 = ty[0][1] + 1, tx[0][1] + 1
        return xla.conv1(xp[:, y0:y0 + h + len(ty) - 1, x0:x0 + w + len(tx) - 1],
                      _phase_kernel(kernel, ty, tx), ((0, 0), (0, 0)))

    return _interleave([[phase(ry, rx) for rx in range(2)] for ry in range(2)])


def _phases_fwd(x, kernel, zero_first, xla_forward):
    return _phases_value(x, kernel, zero_first, xla_forward), (x, kernel)


def _phases_bwd(zero_first, xla_forward, res, dy):
    x, kernel = res
    n, h, w, c = x.shape
    o = kernel.shape[3]
    # x[i] reaches dy[2i + 2 - t] through tap t: with dy padded by one, the window 2i + u
    # (u = 3 - t) of a stride-2 4×4 correlation. With zero_first the forward never reads tap
    # t = 0 (u = 3), so the window is the 3×3 one: 9 views and products of 9 taps, not 16.
    taps = kernel[1:, 1:] if zero_first else kernel
    k = taps.shape[0]
    views = im2col.patches(jnp.pad(dy, ((0, 0), (1, 1), (1, 1), (0, 0))), k, 2, h, w)
    flipped = taps[::-1, ::-1].transpose(0, 1, 3, 2).reshape(k * k * o, c)   # [(u, v, o), c]
    dx = (views @ flipped).reshape(n, h, w, c)
    dk = (x.reshape(n * h * w, c).T @ views).reshape(c, k, k, o)
    dk = dk.transpose(1, 2, 0, 3)[::-1, ::-1]
    if zero_first:
        dk = jnp.pad(dk, ((1, 0), (1, 0), (0, 0), (0, 0)))
    return dx, dk.astype(kernel.dtype)


_phases.defvjp(_phases_fwd, _phases_bwd)
