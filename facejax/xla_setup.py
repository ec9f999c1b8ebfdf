"""Process-wide XLA:CPU settings chosen per model family, applied before JAX starts its backend.

XLA:CPU hands every convolution to YNNPACK by default. On this project's measurements (2-core
Zen 5, jax 0.10.2, fwd + both gradients) that is 2-6× slower than XLA's Eigen convolutions for
the CycleGAN ResNet's layers (3×3, 256 -> 256 channels on 64×64 maps: 155 against 79 ms; its
7×7 -> 3-channel output layer: 340 against 127 ms; the 256 px step 22 s against 13.5 s), while
the autoencoder and the U-Net run faster with YNNPACK (2.8 against 3.3 s; 0.92 against 1.02 s).
The setting is one per process, so it is picked per family; an XLA_FLAGS that already names it
wins. Matrix products stay with YNNPACK either way.

`use_huge_pages` is the one setting below XLA: the C library's allocator (see there).
"""

from __future__ import annotations

import json
import os
import sys

_FLAG = "xla_cpu_experimental_ynn_fusion_type"
EIGEN_CONVOLUTIONS = f"--{_FLAG}=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
_EIGEN_TASKS = ("cyclegan",)
RUN_CONFIG = "config.json"  # facejax.inference.CONFIG_FILE; that module starts JAX


def cpu_flags(config) -> str | None:
    """The XLA_FLAGS addition for `config`'s family on CPU, or None for XLA's defaults."""
    return EIGEN_CONVOLUTIONS if config.task in _EIGEN_TASKS else None


def configure(config) -> None:
    """Adds the family's CPU flags to XLA_FLAGS. Call before the first JAX computation (flags
    are read once per process); other backends ignore them."""
    _add(cpu_flags(config))


def configure_for_run(workdir: str) -> None:
    """`configure` for the trained run in `workdir`, from its saved config, for the tools that
    load a model (convert, evaluate). The CycleGAN generator's forward pass at 256 px, batch 8,
    takes 5.6 s with Eigen convolutions against 17.9 s without. A missing or unreadable config
    changes nothing: the model loader reports it."""
    try:
        with open(os.path.join(workdir, RUN_CONFIG)) as f:
            task = json.load(f).get("task")
    except (OSError, ValueError, AttributeError):
        return
    _add(EIGEN_CONVOLUTIONS if task in _EIGEN_TASKS else None)


def _add(extra: str | None) -> None:
    current = os.environ.get("XLA_FLAGS", "")
    if extra and _FLAG not in current:
        os.environ["XLA_FLAGS"] = f"{current} {extra}".strip()


# XLA:CPU allocates each execution's temporaries as one block (974 MB for the autoencoder's step)
# and frees it after; glibc serves a block that size with mmap, so every step faults its pages in
# one 4 KiB page at a time (238,000 faults per step). With huge pages (2 MiB) for such blocks it
# takes about 1,000, and the step runs faster (autoencoder 2.7-2.9 s -> 2.35 s; pix2pix batch 4
# 3.03 -> 2.83 s; CycleGAN within noise). glibc reads the setting only at process start.
HUGE_PAGES = "glibc.malloc.hugetlb=1"
_TUNABLES = "GLIBC_TUNABLES"
ORIGINAL_TUNABLES = "FACEJAX_GLIBC_TUNABLES_BEFORE"  # what a reference run should see


def _glibc_version() -> tuple[int, ...] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        return tuple(int(v) for v in version.split(".")[:2]) if name == "glibc" else None
    except (AttributeError, ValueError, OSError):
        return None


def use_huge_pages(execv=os.execv) -> None:
    """Restarts this process (same pid, arguments and interpreter options) with glibc's
    transparent-huge-page tunable added to GLIBC_TUNABLES, unless it is already there (a user's
    own glibc.malloc.hugetlb wins), the C library is not glibc 2.35+, or the restart fails.
    Call it first in a tool's main, before anything slow."""
    current = os.environ.get(_TUNABLES, "")
    version = _glibc_version()
    if "glibc.malloc.hugetlb" in current or version is None or version < (2, 35):
        return
    os.environ[ORIGINAL_TUNABLES] = current
    os.environ[_TUNABLES] = ":".join(t for t in (current, HUGE_PAGES) if t)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    except OSError:  # run on without it
        os.environ[_TUNABLES] = current


def without_huge_pages(env: dict) -> dict:
    """`env` as it was before `use_huge_pages` (for timing a reference as its users run it)."""
    env = dict(env)
    if ORIGINAL_TUNABLES in env:
        original = env.pop(ORIGINAL_TUNABLES)
        if original:
            env[_TUNABLES] = original
        else:
            env.pop(_TUNABLES, None)
    return env
