"""Process-wide XLA:CPU settings chosen per model family, applied before JAX starts its backend.

XLA:CPU hands every convolution to YNNPACK by default. On this project's measurements (2-core
Zen 5, jax 0.10.2, fwd + both gradients) that is 2-6× slower than XLA's Eigen convolutions for
the CycleGAN ResNet's layers (3×3, 256 -> 256 channels on 64×64 maps: 155 against 79 ms; its
7×7 -> 3-channel output layer: 340 against 127 ms; the 256 px step 22 s against 13.5 s), while
the autoencoder and the U-Net run faster with YNNPACK (2.8 against 3.3 s; 0.92 against 1.02 s).
The setting is one per process, so it is picked per family; an XLA_FLAGS that already names it
wins. Matrix products stay with YNNPACK either way.
"""

from __future__ import annotations

import json
import os

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
