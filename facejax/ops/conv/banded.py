"""Per-channel filtering by a separable window as two banded-matrix products (CPU form).

XLA:CPU runs a per-channel (depthwise) convolution at a small fraction of a product's speed
(docs/benchmarks.md, "Issue 35: SAEHD df128 profiled; its DSSIM as banded products"), so on the
CPU a window outer(taps, taps) is applied as a product with an [H_out, H] band matrix along H,
then one with a [W_out, W] band along W. Elsewhere `separable_filter` takes XLA's own
per-channel convolutions: a band matrix is O(H²) work and memory where the window is O(k·H),
and XLA's GPU compiler found no Triton tiling for some of these products when compiling for an
H100 without one (docs/benchmarks.md, "Issue 35: pix2pix's step compiles for an H100").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def band(taps: np.ndarray, n: int, pad: tuple[int, int]) -> np.ndarray:
    """The [n_out, n] matrix of a correlation with `taps` along an axis of n samples zero-padded
    by `pad` (before, after)."""
    k, (before, after) = len(taps), pad
    out = np.arange(n + before + after - k + 1)[:, None]
    tap = np.arange(n)[None, :] - out + before  # the tap sample j meets at output i
    return np.where((tap >= 0) & (tap < k), taps[np.clip(tap, 0, k - 1)], 0.0)


def filter_banded(x: jax.Array, taps: np.ndarray, padding) -> jax.Array:
    """x [B, H, W, C] filtered per channel by outer(taps, taps) with explicit ((top, bottom),
    (left, right)) zero padding: the band product along H, then along W."""
    along_h = jnp.asarray(band(taps, x.shape[1], padding[0]), x.dtype)
    along_w = jnp.asarray(band(taps, x.shape[2], padding[1]), x.dtype)
    y = jnp.einsum("ih,bhwc->biwc", along_h, x)
    return jnp.einsum("jw,biwc->bijc", along_w, y)
