"""Helpers over pytrees of arrays: finiteness, leaf shapes, abstract (shape-only) trees."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def inexact_leaves(tree) -> list:
    """The floating-point (and complex) leaves of `tree`."""
    return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]


def all_finite(tree) -> jax.Array:
    """True when every element of every float leaf is finite: one float sum per leaf (x - x is
    0 for a finite x and NaN otherwise), which XLA reduces far faster than a boolean tree. (Not
    x·0: XLA rewrites a sum of products into a dot and materialises the zeros.)"""
    leaves = [jnp.sum(x.astype(jnp.float32) - x.astype(jnp.float32))
              for x in inexact_leaves(tree)]
    return jnp.isfinite(sum(leaves[1:], leaves[0])) if leaves else jnp.array(True)


def shapes_of(tree) -> dict:
    """{leaf path ("opt/1/0/mu/w"): shape list} of a state, an abstract state or orbax's
    metadata of one (which names a named tuple's fields as dict keys: the plain path is the
    same for both)."""
    return {jax.tree_util.keystr(path, simple=True, separator="/"): list(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def abstract_of(state_shapes, sharding):
    """ShapeDtypeStructs with `sharding` for every leaf (what a checkpoint restore fills)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                        state_shapes)
