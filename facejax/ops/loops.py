"""`scan`: `jax.lax.scan`, written out step by step inside `unrolled()`.

XLA's cost analysis counts a loop's body once, whatever its trip count, so a program that runs
a layer stack as a scan (models.resnet's residual blocks) is lowered inside `unrolled()` where
its FLOPs are counted (facejax benchmark train); everywhere else the loop stays a loop, which
compiles its body once.
"""

from __future__ import annotations

import contextlib

import jax

_unrolled = False


@contextlib.contextmanager
def unrolled():
    """Within it, every `scan` is traced written out, one copy of its body per step."""
    global _unrolled
    previous, _unrolled = _unrolled, True
    try:
        yield
    finally:
        _unrolled = previous


def scan(step, init, xs):
    """`jax.lax.scan(step, init, xs)`; written out inside `unrolled()`."""
    return jax.lax.scan(step, init, xs, unroll=True if _unrolled else 1)
