"""Process-wide XLA:CPU settings, applied before JAX starts its backend.

XLA:CPU hands every convolution to YNNPACK by default. For some model families (the CycleGAN
ResNet's layers) XLA's Eigen convolutions run several times faster, for others (the autoencoder,
the U-Net) YNNPACK's; figures in docs/benchmarks.md. The setting is one per process, so each
family names its choice (`Task.cpu_convolutions`) and the tools apply it; an XLA_FLAGS that
already names it wins. Matrix products stay with YNNPACK either way.

`use_huge_pages` is the one setting below XLA: the C library's allocator (see there);
`use_compilation_cache` keeps compiled programs on disk between processes.
"""

from __future__ import annotations

import os
import sys

_FLAG = "xla_cpu_experimental_ynn_fusion_type"
EIGEN_CONVOLUTIONS = f"--{_FLAG}=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
_CPU_FLAGS = {"ynnpack": None, "eigen": EIGEN_CONVOLUTIONS}


def configure(cpu_convolutions: str) -> None:
    """Adds the XLA_FLAGS of a family's CPU convolution library ("ynnpack", XLA's default, or
    "eigen"). Call before the first JAX computation (flags are read once per process); other
    backends ignore them."""
    extra = _CPU_FLAGS[cpu_convolutions]
    current = os.environ.get("XLA_FLAGS", "")
    if extra and _FLAG not in current:
        os.environ["XLA_FLAGS"] = f"{current} {extra}".strip()


CACHE_DIR = "JAX_COMPILATION_CACHE_DIR"
CACHE_SWITCH = "FACEJAX_XLA_CACHE"  # "off": no compilation cache
CACHE_MAX_BYTES = 4 << 30


def compilation_cache_dir(environ=os.environ) -> str | None:
    """Where compiled programs are kept: a JAX_COMPILATION_CACHE_DIR the user set, else
    $XDG_CACHE_HOME/facejax/xla (~/.cache/facejax/xla); None with FACEJAX_XLA_CACHE=off."""
    if environ.get(CACHE_SWITCH) == "off":
        return None
    if environ.get(CACHE_DIR):
        return environ[CACHE_DIR]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "facejax", "xla")


def use_compilation_cache(environ=os.environ) -> dict:
    """Turns on JAX's persistent compilation cache (compilations over a second, at most
    CACHE_MAX_BYTES, least recently used dropped first): a resumed run, or an evaluate or
    convert of it, loads the step compiled before instead of compiling it again (minutes on a
    CPU for the large families). Set in the environment, so JAX reads it when it starts. The
    cache runs what it holds, so it lives in the user's own cache folder (JAX's advice: never
    a folder others can write). Returns {JAX config name: value} for a JAX that has already
    started (this module never imports JAX), or {} with the cache off."""
    path = compilation_cache_dir(environ)
    if path is None:
        return {}
    environ[CACHE_DIR] = path
    environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(CACHE_MAX_BYTES))
    return {"jax_compilation_cache_dir": path,
            "jax_compilation_cache_max_size": int(environ["JAX_COMPILATION_CACHE_MAX_SIZE"])}


def no_compilation_cache(environ=os.environ) -> dict:
    """Compiles everything afresh, in the processes this one starts; returns the JAX config
    that does it in this one (benchmarks time compilations and measure their memory)."""
    environ[CACHE_SWITCH] = "off"
    environ.pop(CACHE_DIR, None)
    return {"jax_enable_compilation_cache": False}


# XLA:CPU allocates each execution's temporaries as one block (close to a GB for the
# autoencoder's step) and frees it after; glibc serves a block that size with mmap, so every step
# faults its pages in one 4 KiB page at a time. With huge pages (2 MiB) for such blocks it takes
# a few hundred times fewer faults, and the steps run faster (docs/benchmarks.md). glibc reads the
# setting only at process start.
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
