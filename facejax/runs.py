"""A run's workdir as every later command reads it: the config it was trained with
(WORKDIR/config.json) and the state of its checkpoints. Training writes them (facejax/train.py);
inference, `--config.init_from` and the tests read them here."""

from __future__ import annotations

import functools
import os

import jax
import ml_collections

from facejax import checkpoint as ckpt_lib
from facejax import files, run_info, trees
from facejax.errors import UserError
from facejax.faces import face_types

CONFIG_FILE = "config.json"


def load_config(workdir: str, flag: str = "--model") -> ml_collections.ConfigDict:
    """The config a run was trained with (WORKDIR/config.json).

    Raises:
      UserError: no such workdir, no config in it, or one that is not a facejax run's.
    """
    if not os.path.isdir(workdir):
        raise UserError(f"{flag} {workdir}: no such workdir")
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{flag} {workdir}: no {CONFIG_FILE}; not a facejax workdir or incomplete")
    config = files.read_json(path, "the run's config")
    if not isinstance(config, dict) or "task" not in config:
        raise UserError(f"{path}: not a facejax run config")
    return ml_collections.ConfigDict(config)


def restore_state(workdir: str, config, task, sharding=None, step: int | None = None,
                  flag: str = "--model"):
    """The state of a run's latest (or given) checkpoint, on `sharding` (default: this
    process's first device, whatever layout saved it): the parts of it that the run's config
    has (an option switched on or off between a run's sessions adds or removes a part, such as
    a discriminator; the weights are in every checkpoint).

    Raises:
      UserError: no checkpoint, or one that does not fit the config.
      DamagedCheckpoint: the checkpoint reads back damaged; its line names the earlier
        checkpoints, to be chosen with `--step` (never taken without being asked).
    """
    shapes = jax.eval_shape(functools.partial(task.init, config=config), jax.random.key(0))
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    ck = ckpt_lib.Checkpointer(workdir, read_only=True)
    try:
        if ck.latest_step() is None and step is None:
            raise UserError(f"{flag} {workdir}: holds no checkpoint yet")
        try:
            return ck.restore(trees.abstract_of(shapes, sharding), step, partial=True)
        except ckpt_lib.DamagedCheckpoint as e:
            earlier = [s for s in ck.all_steps() if s < e.step]
            advice = (f"pass --step={earlier[-1]} to use the checkpoint before it" if earlier
                      else "no earlier checkpoint to use instead")
            raise ckpt_lib.DamagedCheckpoint(e.path, e.step, e.reason, advice) from e
    finally:
        ck.close()


def framing(config, task, info: dict) -> face_types.Framing:
    """Where the crop of a run with this config, task and record (run_info) sits on a face: its
    face type (config.model.face_type), or for families without one the extraction's coverage
    over the task's model region."""
    face_type = config.model.get("face_type", "")
    if face_type:
        return face_types.Framing(face_type)
    return face_types.Framing("", run_info.coverage(info) / task.model_region(config))
