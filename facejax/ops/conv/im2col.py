"""Convolution as one matrix product over the kernel's k·k views of the input (im2col)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from facejax.ops.shuffle import pixel_shuffle, space_to_depth


def patches(x, k, stride, ho, wo):
    """[N, H, W, C] (padded) -> patches [N·ho·wo, k·k·C] (taps in HWIO order). For stride 2 the
    views are stride-1 slices of the space-to-depth view (rows and columns no tap reads are
    cropped)."""
    n, h, w, c = x.shape
    if stride == 1:
        # In two passes, the k column views and then k row views of those: one pass of k·k
        # views of C channels each copies in pieces too narrow for the first layers' 3.
        rows = jnp.concatenate([x[:, :, dx:dx + wo] for dx in range(k)], axis=-1)
        views = [rows[:, dy:dy + ho] for dy in range(k)]
    else:
        h2, w2 = (k - 1) // 2 + ho, (k - 1) // 2 + wo
        x = jnp.pad(x, ((0, 0), (0, max(2 * h2 - h, 0)), (0, max(2 * w2 - w, 0)), (0, 0)))
        xs = space_to_depth(x[:, :2 * h2, :2 * w2], 2)         # [N, h2, w2, (py, px, C)]
        views = [xs[:, dy // 2:dy // 2 + ho, dx // 2:dx // 2 + wo,
                    ((dy % 2) * 2 + dx % 2) * c:((dy % 2) * 2 + dx % 2 + 1) * c]
                 for dy in range(k) for dx in range(k)]
    return jnp.concatenate(views, axis=-1).reshape(n * ho * wo, k * k * c)


def _col2im(dp, shape, k, stride):
    """The adjoint of `patches`: dp [N, ho, wo, k, k, C] summed back to `shape`. For stride 2
    each space-to-depth phase is summed at half resolution, then interleaved."""
    n, h, w, c = shape
    ho, wo = dp.shape[1], dp.shape[2]

    def add_taps(taps, out_h, out_w):
        acc = None
        for ty, tx, a, b in taps:
            t = jnp.pad(dp[:, :, :, ty, tx],
                        ((0, 0), (a, out_h - ho - a), (b, out_w - wo - b), (0, 0)))
            acc = t if acc is None else acc + t
        return acc

    if stride == 1:
        return add_taps([(a, b, a, b) for a in range(k) for b in range(k)], h, w)
    h2, w2 = (k - 1) // 2 + ho, (k - 1) // 2 + wo
    phases = [add_taps([(ty, tx, ty // 2, tx // 2) for ty in range(py, k, 2)
                        for tx in range(px, k, 2)], h2, w2)
              for py in range(2) for px in range(2)]
    dx = pixel_shuffle(jnp.concatenate(phases, axis=-1), 2)   # [N, 2·h2, 2·w2, C]
    dx = jnp.pad(dx, ((0, 0), (0, max(h - 2 * h2, 0)), (0, max(w - 2 * w2, 0)), (0, 0)))
    return dx[:, :h, :w]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_im2col(x, kernel, k, stride):
    return _fwd(x, kernel, k, stride)[0]


def _fwd(x, kernel, k, stride):
    n, h, w, c = x.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    p = patches(x, k, stride, ho, wo)
    y = (p @ kernel.reshape(k * k * c, -1)).reshape(n, ho, wo, -1)
    return y, (p, kernel, x.shape)


def _bwd(k, stride, res, dy):
    p, kernel, shape = res
    n, ho, wo, o = dy.shape
    c = shape[3]
    dy2 = dy.reshape(n * ho * wo, o)
    dkernel = (p.T @ dy2).reshape(kernel.shape)
    dp = (dy2 @ kernel.reshape(k * k * c, o).T).reshape(n, ho, wo, k, k, c)
    return _col2im(dp, shape, k, stride), dkernel


_conv_im2col.defvjp(_fwd, _bwd)


def conv_im2col(x: jax.Array, kernel: jax.Array, padding: tuple[tuple[int, int], ...],
                stride: int = 2) -> jax.Array:
    """A stride-1 or stride-2 convolution as one matrix product over the k·k views of the padded
    input ([N·H'·W', k·k·C], in HWIO order, times the kernel [k·k·C, O]).

    Custom VJP: the kernel and input gradients are matrix products too, and the input gradient
    is one sum of the k·k shifted blocks (for stride 2, per space-to-depth phase at half
    resolution). Autodiff's version padded every view gradient to full size, and XLA fused that
    sum into its consumers' loops, bias-gradient reductions included. Where the weights outweigh
    the map (wide layers on small maps, and first layers of few channels) one product runs
    faster on XLA:CPU than its convolutions.
    """
    if stride not in (1, 2):
        raise ValueError(f"im2col convolution supports strides 1 and 2, got {stride}")
    x = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    return _conv_im2col(x, kernel, kernel.shape[0], stride)
