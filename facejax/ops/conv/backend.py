"""When the CPU-specific forms apply: on the CPU backend, outside `plain_forms()`."""

from __future__ import annotations

import contextlib

import jax

_plain = False


@contextlib.contextmanager
def plain_forms():
    """Within it, every convolution takes XLA's own form, whatever its impl: a model traced here
    is the textbook one, whose cost analysis counts the model's multiply-adds (the Winograd and
    phase forms count fewer, im2col's patches more)."""
    global _plain
    previous, _plain = _plain, True
    try:
        yield
    finally:
        _plain = previous


def plain() -> bool:
    """Whether the caller is inside `plain_forms()`."""
    return _plain


def cpu_forms() -> bool:
    """Whether the CPU-specific forms apply: the default backend is the CPU, outside
    `plain_forms()`."""
    return not _plain and jax.default_backend() == "cpu"
