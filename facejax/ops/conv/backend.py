"""When the CPU-specific forms apply: when the program is traced for the CPU, outside
`plain_forms()`.

The platform a program is traced for is its mesh's: a step traced under `jax.set_mesh(mesh)`
(as facejax.train and the benchmarks trace theirs) takes the platform of the mesh's devices, so
a step compiled ahead of time for a GPU on a machine whose own backend is the CPU
(facejax/gpu_aot.py) gets the GPU's forms. Without a mesh in context, the default backend's.
"""

from __future__ import annotations

import contextlib

import jax

_plain = False

# The modules of facejax/ops/conv that hold only CPU-specific forms: code from them in a program
# compiled for another platform is a CPU form leaking into it (facejax/gpu_aot.py checks).
CPU_FORM_MODULES = ("banded", "im2col", "space_to_depth", "thin", "transposed", "valid",
                    "winograd")


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


def target_platform() -> str:
    """The platform the program being traced is for: that of the devices of the mesh in
    context (`jax.set_mesh`), else the default backend ("cpu", "gpu", "tpu")."""
    device = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
    return device.platform if device is not None else jax.default_backend()


def cpu_forms() -> bool:
    """Whether the CPU-specific forms apply: the program is traced for the CPU
    (`target_platform`), outside `plain_forms()`."""
    return not _plain and target_platform() == "cpu"
