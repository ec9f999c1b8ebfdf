"""Stride-1 convolution in Winograd F(m×m, r×r) tiles (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016)."""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

# Winograd minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
# 2016). A stride-1 r×r convolution computed in m×m output tiles: each (m+r-1)² input tile is
# transformed (BT · d · B), multiplied point by point with the transformed kernel (G · g · Gᵀ)
# and transformed back (AT · M · A). Summed over input channels, the pointwise products are
# (m+r-1)² matrix products [tiles, C] × [C, O], so F(2×2, 3×3) does 16 multiplies where direct
# convolution does 36 per 4 outputs, and F(4×4, 3×3) 36 where it does 144. The transforms are
# additions of slices that XLA fuses; the products run at the matrix-multiply peak.
_WINOGRAD_POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))


def supported(m: int, r: int) -> bool:
    """Whether F(m, r) has its interpolation points here (m + r - 2 of them): for 3×3 kernels up
    to F(6×6), for 7×7 up to F(2×2)."""
    return m >= 1 and r >= 1 and m + r - 2 <= len(_WINOGRAD_POINTS)


@functools.lru_cache(maxsize=None)
def winograd_matrices(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AT [m, a], G [a, r], BT [a, a] (a = m + r - 1) of F(m, r): for a tile d of a inputs and
    r taps g, the m outputs of the correlation y[i] = Σ_k g[k]·d[i + k] are AT·((G·g) ⊙ (BT·d)).
    Built exactly (fractions) as the transpose of Toom-Cook linear convolution at the points
    0, ±1, ±2, … and ∞; BT's rows are scaled to integers and G's rows by the inverse."""
    if not supported(m, r):
        raise ValueError(f"Winograd F({m}, {r}) needs {m + r - 2} interpolation points; "
                         f"{len(_WINOGRAD_POINTS)} are defined")
    a = m + r - 1
    points = _WINOGRAD_POINTS[:a - 1]

    def vandermonde(n):  # rows: a polynomial's n coefficients -> its value at each point, ∞
        return [[Fraction(p) ** i for i in range(n)] for p in points] + \
            [[Fraction(int(i == n - 1)) for i in range(n)]]

    # Invert the a×a evaluation matrix (Gauss-Jordan, exact).
    rows = [row + [Fraction(int(i == j)) for j in range(a)] for i, row in enumerate(vandermonde(a))]
    for col in range(a):
        pivot = next(i for i in range(col, a) if rows[i][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = [v / rows[col][col] for v in rows[col]]
        for i in range(a):
            if i != col and rows[i][col] != 0:
                rows[i] = [vi - rows[i][col] * vc for vi, vc in zip(rows[i], rows[col])]
    bt = [[rows[i][a + j] for i in range(a)] for j in range(a)]  # the inverse, transposed
    g = vandermonde(r)
    for j in range(a):
        scale = math.lcm(*(v.denominator for v in bt[j]))
        bt[j] = [v * scale for v in bt[j]]
        g[j] = [v / scale for v in g[j]]
    at = [list(col) for col in zip(*vandermonde(m))]
    return tuple(np.array(x, np.float64) for x in (at, g, bt))


def _combine(parts, coefficients):
    """[Σ_j c[i, j]·parts[j] for each row i of `coefficients`], skipping zero terms."""
    out = []
    for row in coefficients:
        acc = None
        for c, p in zip(row, parts):
            if c == 0:
                continue
            t = p if c == 1 else -p if c == -1 else p * float(c)
            acc = t if acc is None else acc + t
        out.append(acc)
    return out


def _winograd_tiles(x, r, padding, m):
    """The padded input's transformed tiles, a² arrays [N, TH, TW, C] (index u·a + v), and the
    output and tile-grid sizes."""
    n, h, w, _ = x.shape
    (pt, pb), (pl, pr) = padding
    ho, wo = h + pt + pb - r + 1, w + pl + pr - r + 1
    th, tw = -(-ho // m), -(-wo // m)
    a = m + r - 1
    xp = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (pt, th * m + r - 1 - h - pt, 0),
                                                 (pl, tw * m + r - 1 - w - pl, 0), (0, 0, 0)))
    bt = winograd_matrices(m, r)[2]
    rows = [jax.lax.slice_in_dim(xp, i, i + (th - 1) * m + 1, m, axis=1) for i in range(a)]
    tiles = []
    for row in _combine(rows, bt):
        cols = [jax.lax.slice_in_dim(row, j, j + (tw - 1) * m + 1, m, axis=2) for j in range(a)]
        tiles.extend(_combine(cols, bt))
    return tiles, (ho, wo, th, tw)


def _winograd_value(x, kernel, padding, m, adjoint=False):
    """The correlation of x with `kernel` [r, r, C, O]; adjoint: with the kernel flipped in both
    tap axes and its channel axes swapped (the input gradient's kernel), which the products read
    in the stored layout rather than a transposed copy (on small maps of wide layers, a copy of
    the kernel's transforms costs several times the products)."""
    r = kernel.shape[0]
    o = kernel.shape[2] if adjoint else kernel.shape[3]
    a = m + r - 1
    at, g, _ = winograd_matrices(m, r)
    tiles, (ho, wo, th, tw) = _winograd_tiles(x, r, padding, m)
    rows = list(kernel[::-1]) if adjoint else list(kernel)
    u = [t for row in _combine(rows, g)
         for t in _combine(list(row[::-1]) if adjoint else list(row), g)]  # [C, O] each
    contract = 1 if adjoint else 0
    prods = [jax.lax.dot_general(v.reshape(-1, v.shape[-1]), w,
                                 (((1,), (contract,)), ((), ()))).reshape(v.shape[:3] + (o,))
             for v, w in zip(tiles, u)]
    by_v = [_combine(prods[v::a], at) for v in range(a)]                    # [v][p]
    out = [_combine([by_v[v][p] for v in range(a)], at) for p in range(m)]  # [p][q]
    y = jnp.stack([jnp.stack(row, axis=3) for row in out], axis=2)  # [N, TH, p, TW, q, O]
    return y.reshape(x.shape[0], th * m, tw * m, o)[:, :ho, :wo]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_winograd(x: jax.Array, kernel: jax.Array, padding, m: int = 2) -> jax.Array:
    """Stride-1 r×r convolution with explicit `padding` in Winograd F(m×m, r×r) tiles (see
    above). The input gradient is the same algorithm on the output gradient with the flipped,
    transposed kernel; the kernel gradient is a² products [C, tiles] × [tiles, O] in the
    transformed domain, the tiles recomputed rather than kept. Rounding: about 1e-6 of the
    output's scale for m = 2, 2e-5 for m = 4 (float32)."""
    return _winograd_value(x, kernel, padding, m)


def _winograd_fwd(x, kernel, padding, m):
    return _winograd_value(x, kernel, padding, m), (x, kernel)


def _winograd_bwd(padding, m, res, dy):
    x, kernel = res
    r, c, o = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    a = m + r - 1
    at, g, _ = winograd_matrices(m, r)
    (pt, pb), (pl, pr) = padding
    dx = _winograd_value(dy, kernel, ((r - 1 - pt, r - 1 - pb), (r - 1 - pl, r - 1 - pr)), m,
                         adjoint=True)
    tiles, (ho, wo, th, tw) = _winograd_tiles(x, r, padding, m)
    dyt = jnp.pad(dy, ((0, 0), (0, th * m - ho), (0, tw * m - wo), (0, 0)))
    dyt = dyt.reshape(dy.shape[0], th, m, tw, m, o)
    rows = _combine([dyt[:, :, p] for p in range(m)], at.T)               # [u]: [N, TH, TW, q, O]
    dm = [t for row in rows for t in _combine([row[:, :, :, q] for q in range(m)], at.T)]
    du = [jax.lax.dot_general(v.reshape(-1, c), d.reshape(-1, o), (((0,), (0,)), ((), ())))
          for v, d in zip(tiles, dm)]                                     # [C, O] each
    by_v = [_combine(du[v::a], g.T) for v in range(a)]                    # [v][i]
    dk = jnp.stack([jnp.stack(_combine([by_v[v][i] for v in range(a)], g.T)) for i in range(r)])
    return dx, dk.astype(kernel.dtype)


conv_winograd.defvjp(_winograd_fwd, _winograd_bwd)
