"""A training run's data: each identity's extraction folders opened for this process, the
training and held-out batches drawn from them, and the run record (run_info) inference will
read instead of them."""

from __future__ import annotations

import copy
import dataclasses
import functools
import os

import jax

from facejax import augment, run_info
from facejax.data import labelled, pipeline, run_record, source, tfds_faces
from facejax.errors import UserError


def with_absolute_data(config, task):
    """`config` (a copy) with its identities' data folders as absolute paths, so the saved
    config names them whatever folder a later command runs from."""
    config = copy.deepcopy(config)
    for name in (*task.identities, "pretrain"):
        if config.data[name]:
            config.data[name] = ",".join(
                os.path.abspath(f) + ("" if w is None else f"@{w:g}")
                for f, w in source.entries(config.data[name], f"--config.data.{name}"))
    return config


def open_sources(config, task, split: str, per_process: bool):
    """{identity: FaceSource} of `split` for this process."""
    data_dir = config.data.data_dir or None
    sources = {}
    for name in task.identities:
        spec, flag = source.setting(config.data, name)
        folders = source.folders(spec, flag)
        if config.data.get("labels") == "labels":  # the hand-labelled faces of masks.jsonl
            sources[name] = labelled.LabelledSource(folders, config.data.load_size)
            continue
        if jax.process_count() > 1:
            # One process prepares the TFDS datasets; the others wait and read them.
            from jax.experimental import multihost_utils
            if jax.process_index() == 0:
                for directory in folders:
                    tfds_faces.builder(directory, data_dir)
            multihost_utils.sync_global_devices(f"tfds {name} {split}")
        sources[name] = pipeline.FaceSource(
            folders, split, config.data.load_size,
            process_index=jax.process_index(), process_count=jax.process_count(),
            per_process=per_process, data_dir=data_dir,
            weights=source.weights(spec, flag) if split == "train" else None,
            mask=config.data.get("mask", ""), **loaded_framing(config))
    if split == "train" and not config.data.pretrain:  # the same folders give both splits
        _check_distinct(config, sources)
    return sources


def fields(config, task) -> tuple:
    """The record fields each batch carries: the task's, and "mask" where the config trains
    inside one (--config.data.mask, for a family that reads it and wants no mask otherwise)."""
    if config.data.get("mask") and "mask" not in task.fields:
        return tuple(task.fields) + ("mask",)
    return tuple(task.fields)


def loaded_framing(config) -> dict:
    """The FaceSource settings of a config's loaded crops: with a face type
    (config.model.face_type), each face's square of that type with a margin that makes the
    model's view (augment.region of the loaded crop) the square itself; without one, the
    extracted crops whole."""
    face_type = config.model.get("face_type", "")
    if not face_type:
        return {}
    return {"face_type": face_type, "grow": 1.0 / float(config.augment.region)}


def _check_distinct(config, sources) -> None:
    """Refuses one person's data given for two identities (a shared folder, the same extracted
    inputs, or the same non-empty identity label)."""
    names = list(sources)
    folders = {n: [part.folder for part in sources[n].parts] for n in names}
    prints = {n: {tfds_faces.fingerprint(d) for d in folders[n]} for n in names}
    real = {n: {os.path.realpath(d) for d in folders[n]} for n in names}
    for i, p in enumerate(names):
        for q in names[i + 1:]:
            same = (real[p] & real[q] or prints[p] & prints[q]
                    or (sources[p].identity and sources[p].identity == sources[q].identity))
            if same:
                raise UserError(f"--config.data.{q}={config.data[q]}: the same faces as "
                                f"--config.data.{p}={config.data[p]}; this experiment needs "
                                "two people")


def data_workers(config) -> int:
    """Input worker processes: --config.data.workers, or pipeline.default_workers() for -1."""
    workers = config.data.workers
    return pipeline.default_workers() if workers < 0 else workers


def host_augment(config, task):
    """The task's host augmentation if this run places augmentation on the host, else None."""
    if (task.host_augment is not None and "augment" in config
            and augment.placement(config.augment) == "host"):
        return functools.partial(task.host_augment, config=config)
    return None


@dataclasses.dataclass
class Inputs:
    """The batches a run trains and evaluates on, and the record of its data."""
    train: pipeline.FaceBatches
    held_out: pipeline.FaceBatches  # the validation split, with a seed of its own
    info: dict                      # run_info's record


def open_inputs(config, task, workdir: str) -> Inputs:
    """The run's batches; writes workdir/inference.json (process 0) on the way.

    Raises:
      UserError: a data folder unusable, or one person's faces given for two identities.
    """
    per_process = config.data.per_process
    common = dict(global_batch=config.batch_size, fields=fields(config, task),
                  process_index=jax.process_index(), process_count=jax.process_count(),
                  per_process=per_process)
    train_sources = open_sources(config, task, "train", per_process)
    info = run_record.from_data(config, task.identities)  # what inference will need
    if jax.process_index() == 0:
        run_info.write(workdir, info)
    degrade = dict(config.data.degrade) if config.data.degrade.prob > 0 else None
    train = pipeline.FaceBatches(train_sources, seed=config.seed, degrade=degrade,
                                 augment=host_augment(config, task),
                                 yaw_bins=config.data.yaw_bins, **common)
    held_out = pipeline.FaceBatches(open_sources(config, task, "validation", per_process),
                                    seed=config.seed + 1, **common)
    return Inputs(train, held_out, info)
