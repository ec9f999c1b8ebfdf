"""DeepFaceLab's training augmentation (`augment.kind` "dfl", SAEHD's): a random similarity view
and flip, and a random warp of the view on a coarse grid whose border stays put
(docs/deepfacelab_saehd.md, section 3).

All coordinates here are in view units: the model's view spans [-0.5, 0.5] on each axis, pixel
centres at (i + 0.5) / size - 0.5. `augment` turns them into coordinates of the loaded crop and
samples it once. As in `augment`, a random draw of a few parameters (`params` with jax.random,
`params_np` with numpy, the same distributions) is followed by a deterministic function of them
written once for numpy and jax.numpy (`view_coords`).

The warp, as DeepFaceLab draws it:
- the cell is a half, a quarter or an eighth of the side, uniformly; nodes sit at 0, cell, ...,
  side, and the border nodes do not move;
- an interior node moves by 0.24·cell·(N1[r, c] + N2[c, r]) in x and by the transpose of that
  in y, where N1 and N2 are normals truncated to |z| <= 2.5 and divided by 2.5. DeepFaceLab's
  y map is a transposed view of its x map, so both of its draws land in one array: this
  replicates the distribution that aliasing gives (per axis std 0.1294·cell, at most
  0.48·cell);
- between nodes the displacement is bilinear; pixel i reads the node grid at (i + 0.5) / cell.
In view units the displacement does not depend on the side (DeepFaceLab works at 64 px below
64 and scales back, which is the same in view units). DeepFaceLab's identity map is half a pixel
off (its warped input sits half a pixel from its target); that is not copied: zero noise is zero
displacement. DeepFaceLab rotates and scales about pixel side//2, half a pixel from the centre;
this rotates about the true centre.

Every cell size is drawn and evaluated on the finest grid (9 × 9 nodes), so shapes are static
under jit: a coarser grid's bilinear field is exactly the bilinear field of its values at the
finer nodes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

NODES = 9              # nodes per side of the finest grid (cell = side / 8)
CELLS = (2, 4, 8)      # the side divided by the cell, each drawn with probability 1/3
NOISE = 0.24           # node displacement per unit of noise, in cells
TRUNCATE = 2.5         # the normal's truncation, and its divisor


def params(key: jax.Array, cfg, flip: float) -> dict:
    """One face's view and warp parameters, drawn with jax.random; `flip` is the probability
    of a horizontal flip (DeepFaceLab's differs between src and dst)."""
    k = jax.random.split(key, 7)
    lo = np.float32(1.0 / cfg.scale)
    return {
        "theta": jnp.deg2rad(jax.random.uniform(k[0], (), minval=-cfg.rotation,
                                                maxval=cfg.rotation)),
        "scale": jax.random.uniform(k[1], (), minval=lo, maxval=np.float32(cfg.scale)),
        "shift": jax.random.uniform(k[2], (2,), minval=-cfg.shift, maxval=cfg.shift),
        "flip": jnp.where(jax.random.uniform(k[3]) < flip, -1.0, 1.0),
        "cell": jax.random.randint(k[4], (), 0, len(CELLS)),
        "n1": jax.random.truncated_normal(k[5], -TRUNCATE, TRUNCATE, (NODES, NODES)) / TRUNCATE,
        "n2": jax.random.truncated_normal(k[6], -TRUNCATE, TRUNCATE, (NODES, NODES)) / TRUNCATE,
    }


def truncated_normal_np(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard normals truncated to |z| <= TRUNCATE, by rejection (1.2% redrawn)."""
    z = rng.standard_normal(shape)
    while (bad := np.abs(z) > TRUNCATE).any():
        z[bad] = rng.standard_normal(int(bad.sum()))
    return z.astype(np.float32)


def params_np(rng: np.random.Generator, cfg, flip: float) -> dict:
    """The parameters of `params`, with the same distributions, drawn with numpy."""
    u = lambda lo, hi, *shape: rng.uniform(lo, hi, shape).astype(np.float32)
    return {"theta": np.float32(np.deg2rad(u(-cfg.rotation, cfg.rotation))),
            "scale": u(1.0 / cfg.scale, cfg.scale),
            "shift": u(-cfg.shift, cfg.shift, 2),
            "flip": np.float32(-1.0 if rng.uniform() < flip else 1.0),
            "cell": np.int32(rng.integers(0, len(CELLS))),
            "n1": truncated_normal_np(rng, (NODES, NODES)) / np.float32(TRUNCATE),
            "n2": truncated_normal_np(rng, (NODES, NODES)) / np.float32(TRUNCATE)}


def _refine(n: int) -> np.ndarray:
    """[NODES, n] weights that interpolate an n-node grid linearly at the finest grid's nodes
    (both span the side, ends on ends)."""
    pos = np.arange(NODES) * (n - 1) / (NODES - 1)
    return np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(n)[None, :])).astype(np.float32)


def nodes(xp, p: dict):
    """The drawn grid's node displacements on the finest grid, [NODES, NODES, 2] (x, y) in view
    units, row = y and column = x."""
    fields = []
    for per_side in CELLS:
        stride = (NODES - 1) // per_side
        n1, n2 = p["n1"][::stride, ::stride], p["n2"][::stride, ::stride]
        inner = np.zeros((per_side + 1,) * 2, np.float32)
        inner[1:-1, 1:-1] = NOISE / per_side  # the cell in view units, times 0.24
        dx = (n1 + n2.T) * inner
        r = xp.asarray(_refine(per_side + 1))
        fields.append(xp.stack([r @ dx @ r.T, r @ dx.T @ r.T], -1))
    return xp.stack(fields)[p["cell"]]


def displacement(xp, p: dict, u):
    """The warp's displacement (view units) [..., 2] at view points u [..., 2]: the nodes'
    displacement interpolated bilinearly; zero outside the view."""
    grid = nodes(xp, p)
    g = xp.clip((u + 0.5) * (NODES - 1), 0, NODES - 1)
    g0 = xp.minimum(xp.floor(g), NODES - 2)
    f = g - g0
    i = g0.astype(xp.int32)
    x0, y0, fx, fy = i[..., 0], i[..., 1], f[..., :1], f[..., 1:]
    top = grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx
    bot = grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


def view_coords(xp, p: dict, out_size: int, random_warp: bool = True):
    """(target, warped) view-unit source points [out, out, 2] of each output pixel: the flip,
    then the inverse of the view's similarity M (rotation and scale about the centre, then the
    shift; scale > 1 zooms in, as DeepFaceLab's), then, for the warped input, the warp's
    displacement at that point: DeepFaceLab warps the view first, then applies M and the flip,
    so output p reads warp(M⁻¹(flip(p)))."""
    t = ((xp.arange(out_size, dtype=xp.float32) + 0.5) / out_size - 0.5).astype(xp.float32)
    gx, gy = xp.meshgrid(t, t)
    v = xp.stack([gx * p["flip"], gy], -1) - p["shift"]
    c, s = xp.cos(p["theta"]), xp.sin(p["theta"])
    m = xp.stack([xp.stack([c, -s]), xp.stack([s, c])])
    u = (v @ m.T / p["scale"]).astype(xp.float32)
    if not random_warp:
        return u, u
    return u, u + displacement(xp, p, u)
