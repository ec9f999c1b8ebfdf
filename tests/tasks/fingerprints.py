"""Fingerprints of every experiment's model: the init state's tree and values, and the metrics
of two train steps on a fixed batch. `fingerprints.json` holds them as computed before the
architecture refactor (issue 18); `test_fingerprints.py` checks the code still gives them.

Regenerate only for a change that is meant to alter a model's init or losses, and say so in
its commit:

    JAX_NUM_CPU_DEVICES=1 .venv/bin/python -m tests.tasks.fingerprints --write
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FILE = os.path.join(HERE, "fingerprints.json")

VARIANTS = {
    "deepfakes_original": ("default", "128", "quick", "tiny"),
    "face2face_pix2pix": ("default", "small", "tiny"),
    "cyclegan_faces": ("default", "256", "tiny"),
    "saehd": ("df128", "liae128", "df256", "df64", "tiny"),
    "xseg": ("default", "generic", "tiny"),
}
# Values (not only the tree) and two train steps' metrics: the variants cheap enough to compile
# in the suite. Their layer shapes take im2col, subpixel, taps, mixed, thin and XLA's forms.
STEPPED = (("deepfakes_original", "tiny"), ("face2face_pix2pix", "tiny"), ("xseg", "tiny"))
# Slow tests: real widths, whose layers take the Winograd, space-to-depth and phase forms, and
# the CycleGAN and SAEHD steps (their loss terms are checked against numpy and the reference's
# formula in tests/tasks/test_cyclegan.py and test_saehd.py).
STEPPED_SLOW = (("deepfakes_original", "quick"), ("face2face_pix2pix", "small"),
                ("cyclegan_faces", "tiny"), ("saehd", "tiny"))


def config_of(experiment: str, variant: str):
    return importlib.import_module(f"facejax.experiments.{experiment}").get_config(variant)


def _task(config):
    from facejax import tasks
    return tasks.get(config.task)


def tree(experiment: str, variant: str) -> dict:
    """{leaf path: [shape, dtype]} of the init state (no computation)."""
    import jax
    config = config_of(experiment, variant)
    task = _task(config)
    shapes = jax.eval_shape(lambda k: task.init(k, config), jax.random.key(0))
    return {jax.tree_util.keystr(p): [list(x.shape), str(x.dtype)]
            for p, x in jax.tree_util.tree_flatten_with_path(shapes)[0]}


def fixed_batch(config, task, batch: int = 4) -> dict:
    """A batch of every field the task reads, from a seeded numpy generator."""
    rng = np.random.default_rng(7)
    s = config.data.load_size
    make = {"image": lambda: rng.integers(0, 256, (batch, s, s, 3), np.uint8),
            "landmark_image": lambda: rng.integers(0, 256, (batch, s, s, 3), np.uint8),
            "mask": lambda: rng.integers(0, 256, (batch, s, s), np.uint8),
            "parts": lambda: rng.integers(0, 256, (batch, s, s, 4), np.uint8),
            "eyes_mouth": lambda: rng.integers(0, 256, (batch, s, s), np.uint8)}
    return {n: {f: make[f]() for f in task.fields} for n in task.identities}


def stepped(experiment: str, variant: str) -> dict:
    """Per-leaf sum and absolute sum of the init state, and two steps' metrics."""
    import jax
    config = config_of(experiment, variant)
    task = _task(config)
    key = jax.random.key(0)
    state = jax.jit(lambda k: task.init(k, config))(key)
    values = {jax.tree_util.keystr(p): [float(np.sum(np.asarray(x, np.float64))),
                                        float(np.sum(np.abs(np.asarray(x, np.float64))))]
              for p, x in jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]
              if np.issubdtype(x.dtype, np.floating)}
    batch = fixed_batch(config, task)
    step = jax.jit(lambda s, b, k: task.train_step(s, b, k, config))
    metrics = []
    for _ in range(2):
        state, m = step(state, batch, key)
        metrics.append({k: float(v) for k, v in jax.device_get(m).items() if k != "finite"})
    return {"values": values, "metrics": metrics}


def compute() -> dict:
    out = {"trees": {}, "stepped": {}}
    for experiment, variants in VARIANTS.items():
        for v in variants:
            out["trees"][f"{experiment}:{v}"] = tree(experiment, v)
    for experiment, v in STEPPED + STEPPED_SLOW:
        out["stepped"][f"{experiment}:{v}"] = stepped(experiment, v)
    return out


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.tasks.fingerprints --write")
    data = compute()
    tmp = FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=0, sort_keys=True)
    os.replace(tmp, FILE)
    print(f"wrote {FILE}")
