"""Loading a trained run for inference: its config and latest checkpoint."""

from __future__ import annotations

import functools
import json
import os

import jax
import ml_collections

from facejax import checkpoint as ckpt_lib
from facejax import tasks
from facejax.errors import UserError

CONFIG_FILE = "config.json"


def load_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isdir(workdir):
        raise UserError(f"--model {workdir}: no such workdir")
    if not os.path.isfile(path):
        raise UserError(f"--model {workdir}: no {CONFIG_FILE}; not a facejax workdir or incomplete")
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except (json.JSONDecodeError, OSError) as e:
        raise UserError(f"{path}: unreadable config ({e})")


def load_run(workdir: str, step: int | None = None):
    """Returns (config, task module, state) of a workdir's latest (or given) checkpoint.

    Raises:
      UserError: missing or incomplete workdir, or a checkpoint that does not fit its config.
    """
    config = load_config(workdir)
    task = tasks.get(config.task)
    shapes = jax.eval_shape(functools.partial(task.init, config=config), jax.random.key(0), None)
    ck = ckpt_lib.Checkpointer(workdir, read_only=True)
    try:
        if ck.latest_step() is None and step is None:
            raise UserError(f"--model {workdir}: holds no checkpoint yet")
        state = ck.restore_local(shapes, step)
    finally:
        ck.close()
    return config, task, state
