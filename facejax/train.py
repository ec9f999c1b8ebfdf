"""The one generic training loop: mesh, sharded init, jitted donated step, checkpoints, summaries.

It knows nothing about model families: a Task (facejax/tasks/protocol.py) supplies init,
train_step, evaluate and preview, and declares the record fields and identities it needs.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import signal
import time

import jax
import numpy as np

from facejax import checkpoint as ckpt_lib
from facejax import (augment, config_check, files, inference, parallel, run_info, summaries,
                     tasks, trees)
from facejax.data import pipeline, source, tfds_faces
from facejax.errors import RunError, UserError, warn, write_failed
from facejax.lock import FolderLock
from facejax.progress import format_seconds

CONFIG_FILE = inference.CONFIG_FILE
# Config entries that define the model and its checkpoint layout: a workdir cannot be resumed,
# nor a model initialised from another run, when these differ.
MODEL_KEYS = ("task", "model")


def _say(msg: str) -> None:
    if jax.process_index() == 0:
        print(msg, flush=True)


class Diverged(RunError):
    """Training produced a non-finite loss or gradient."""
    exit_code = 3


def _check_workdir(workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"--workdir {workdir}: not writable ({e.strerror})")


def _model_part(config_dict: dict) -> dict:
    return {k: config_dict.get(k) for k in MODEL_KEYS}


def check_same_model(config, workdir: str, what: str) -> None:
    """Raises UserError when `workdir` holds a run of another model than `config`'s."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    try:
        theirs = files.read_json(path, "the run's config")
        if not isinstance(theirs, dict):
            raise UserError(f"{path}: not a facejax run config")
    except UserError as e:
        raise UserError(f"{e}; the checkpoints beside it are intact: delete {path} and rerun the "
                        "run's own command (it writes the file again from --config; a "
                        "checkpoint of another model is refused on restore)")
    theirs = _model_part(theirs)
    if theirs != _model_part(json.loads(config.to_json_best_effort())):
        raise UserError(f"{what}: holds a run of another model ({json.dumps(theirs)[:200]})")


def save_or_check_config(config, workdir: str) -> None:
    """Writes workdir/config.json, or checks a resumed run trains the same model."""
    path = os.path.join(workdir, CONFIG_FILE)
    mine = json.loads(config.to_json_best_effort())
    check_same_model(config, workdir, f"--workdir {workdir}")
    if jax.process_index() == 0:
        files.write_json(path, mine)


def with_absolute_data(config, task):
    """`config` (a copy) with its identities' data folders as absolute paths, so the saved
    config names them whatever folder a later command runs from."""
    config = copy.deepcopy(config)
    for name in (*task.identities, "pretrain"):
        if config.data.get(name):
            config.data[name] = ",".join(
                os.path.abspath(f) + ("" if w is None else f"@{w:g}")
                for f, w in source.entries(config.data[name], f"--config.data.{name}"))
    return config


def init_from_config(config, workdir: str):
    """The config of the run `--config.init_from` names, checked to train the same model, when
    this run starts fresh from it (None otherwise: no init_from, or resuming).

    Raises:
      UserError: no run there, or one of another model.
    """
    if not config.get("init_from") or ckpt_lib.has_checkpoints(workdir):
        return None
    flag = f"--config.init_from={config.init_from}"
    check_same_model(config, config.init_from, flag)
    return inference.load_config(config.init_from, flag=flag)


def weights_from(source: str, source_config, task, state, sharding):
    """`state` with the weights of the run in `source` (`--config.init_from`, trained with
    `source_config`): the same model, any optimizer or pool settings; its latest checkpoint,
    restored on `sharding`.

    Raises:
      UserError: no checkpoint there, or weights that do not fit.
    """
    flag = f"--config.init_from={source}"
    weights = task.params_of(inference.restore_state(source, source_config, task, sharding,
                                                     flag=flag))
    wanted = task.params_of(state)
    if trees.shapes_of(weights) != trees.shapes_of(wanted):
        raise UserError(f"{flag}: its weights do not fit this model")
    return task.with_params(state, weights)


def restore_run(ckpt, abstract: dict, task, fresh) -> dict:
    """The latest checkpoint's state, for this run's config. Options that add a part to the
    state (SAEHD's discriminators, its weight average) may be switched on or off between
    runs, as DeepFaceLab's users do late in training: a part the checkpoint lacks starts from
    `fresh()` (this config's initial state), or as the task's `resumed` says; a part this
    config has no use for is left out. Either is said on one line."""
    state = ckpt.restore(abstract, partial=True)
    added = sorted(set(abstract) - set(state))
    dropped = sorted(set(ckpt.saved_parts()) - set(abstract))
    if added:
        new = fresh()
        state = dict(state, **{part: new[part] for part in added})
        if task.resumed is not None:
            state = task.resumed(state, added)
        _say(f"state part(s) {', '.join(added)} not in the checkpoint (an option switched on "
             "since): started fresh")
    if dropped:
        _say(f"state part(s) {', '.join(dropped)} of the checkpoint unused by this config (an "
             "option switched off): left out, and fresh if it is switched on again")
    return state


def open_sources(config, task, split: str, per_process: bool):
    """{identity: FaceSource} of `split` for this process."""
    sources = {}
    for name in task.identities:
        spec, flag = source.setting(config.data, name)
        folders = source.folders(spec, flag)
        if jax.process_count() > 1:
            # One process prepares the TFDS datasets; the others wait and read them.
            from jax.experimental import multihost_utils
            if jax.process_index() == 0:
                for directory in folders:
                    tfds_faces.builder(directory, config.data.get("data_dir") or None)
            multihost_utils.sync_global_devices(f"tfds {name} {split}")
        sources[name] = pipeline.FaceSource(
            folders, split, config.data.load_size,
            process_index=jax.process_index(), process_count=jax.process_count(),
            per_process=per_process, data_dir=config.data.get("data_dir") or None,
            weights=source.weights(spec, flag) if split == "train" else None)
    if not config.data.get("pretrain"):
        _check_distinct(config, sources)
    return sources


def data_workers(config) -> int:
    """Input worker processes: --config.data.workers, or pipeline.default_workers() for -1."""
    workers = config.data.get("workers", -1)
    return pipeline.default_workers() if workers < 0 else workers


def host_augment(config, task):
    """The task's host augmentation if this run places augmentation on the host, else None."""
    if (task.host_augment is not None and "augment" in config
            and augment.placement(config.augment) == "host"):
        return functools.partial(task.host_augment, config=config)
    return None


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


def scaled_lr(config, scale: float):
    """`config` with its learning rate multiplied by `scale` (a copy; the same when 1)."""
    if scale == 1.0:
        return config
    import copy
    c = copy.deepcopy(config)
    c.optim.learning_rate = float(c.optim.learning_rate) * scale
    return c


class RollbackState:
    """How often a run rolled back after a non-finite step, and the learning-rate scale that
    followed; kept in workdir/rollback.json so a resumed run keeps the reduced rate."""

    FILE = "rollback.json"

    def __init__(self, count: int = 0, lr_scale: float = 1.0, events=()):
        self.count, self.lr_scale, self.events = count, lr_scale, list(events)

    @classmethod
    def load(cls, workdir: str) -> "RollbackState":
        path = os.path.join(workdir, cls.FILE)
        if not os.path.exists(path):
            return cls()
        try:
            with open(path) as f:
                d = json.load(f)
            return cls(int(d["count"]), float(d["lr_scale"]), d.get("events", []))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path}: unreadable ({e}); delete it to train at the configured "
                            "learning rate")

    def record(self, workdir: str, bad_step: int, to_step: int, factor: float) -> None:
        self.count += 1
        self.lr_scale *= factor
        self.events.append({"non_finite_at": bad_step, "rolled_back_to": to_step,
                            "lr_scale": self.lr_scale})
        if jax.process_index() == 0:
            files.write_json(os.path.join(workdir, self.FILE),
                             {"count": self.count, "lr_scale": self.lr_scale,
                              "events": self.events})


class _Stop:
    """Set by SIGTERM/SIGINT: finish the step, save a checkpoint, exit cleanly."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):
        del frame
        warn(f"signal {signum}: saving a checkpoint and stopping")
        self.requested = True


def _any_process(flag: bool) -> bool:
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.array(flag))))


def train(config, workdir: str) -> dict:
    """Trains `config` in `workdir`, resuming from its latest checkpoint. Returns final metrics.

    Raises:
      UserError: bad config, data or workdir (before any training).
      Diverged: a non-finite loss or gradient; no checkpoint of it is written.
    """
    task = tasks.get(config.task)
    config_check.check(config, task.config_schema)
    config = with_absolute_data(config, task)
    if config.get("quality_every") and not task.swaps:
        raise UserError(f"--config.quality_every={config.quality_every}: a {config.task} run "
                        "has no swap to measure; set it to 0")
    _check_workdir(workdir)
    # One writer per workdir: process 0 holds its lock for the whole run (the processes of a
    # multi-host job share one workdir).
    lock = FolderLock(workdir, what="training workdir") if jax.process_index() == 0 else None
    try:
        return _train(config, workdir, task)
    except OSError as e:  # a summary, preview or record that could not be written
        raise write_failed(e, workdir, "the checkpoints written so far")
    finally:
        if lock is not None:
            lock.release()


def _train(config, workdir: str, task) -> dict:
    """train()'s loop, in a locked workdir."""
    save_or_check_config(config, workdir)
    source_config = init_from_config(config, workdir)  # before anything slow
    is_main = jax.process_index() == 0
    mesh = parallel.make_mesh()
    rep, data_sharding = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    if config.batch_size % jax.device_count():
        raise UserError(f"--config.batch_size={config.batch_size}: must divide by the "
                        f"{jax.device_count()} devices")

    key = jax.random.key(config.seed)
    init_fn = functools.partial(task.init, config=config)
    try:  # the model's shapes, before any data is read
        shapes = jax.eval_shape(init_fn, key)
    except ValueError as e:  # a model that cannot be built from these settings
        raise UserError(f"--config.model: {e}")

    per_process = config.data.get("per_process", True)
    train_sources = open_sources(config, task, "train", per_process)
    info = run_info.from_data(config, task.identities)  # what inference will need
    if is_main:
        run_info.write(workdir, info)
    degrade = dict(config.data.degrade) if config.data.degrade.prob > 0 else None
    batches = pipeline.FaceBatches(train_sources, config.batch_size, config.seed, task.fields,
                                   jax.process_index(), jax.process_count(), per_process, degrade,
                                   host_augment(config, task), config.data.get("yaw_bins", 0))
    val_sources = open_sources(config, task, "validation", per_process)
    val_batches = pipeline.FaceBatches(val_sources, config.batch_size, config.seed + 1,
                                       task.fields, jax.process_index(), jax.process_count(),
                                       per_process)
    to_global = functools.partial(pipeline.to_global, sharding=data_sharding)

    example = to_global(batches(0))
    abstract = trees.abstract_of(shapes, rep)
    ckpt = ckpt_lib.Checkpointer(workdir, keep=config.keep_checkpoints)
    with jax.set_mesh(mesh):
        fresh = lambda: jax.jit(init_fn, out_shardings=rep)(key)
        if ckpt.latest_step() is not None:
            state = restore_run(ckpt, abstract, task, fresh)
            _say(f"resumed from {ckpt.directory} at step {int(state['step'])}")
        else:
            state = fresh()
            if source_config is not None:
                state = weights_from(config.init_from, source_config, task, state, rep)
                _say(f"initialised weights from {config.init_from}")

        rollback = RollbackState.load(workdir)

        def make_step(lr_scale: float):
            """The train step compiled ahead of time for this run's shapes and shardings: a
            changed shape or layout later is an error, never a silent recompilation."""
            t = time.monotonic()
            fn = jax.jit(functools.partial(task.train_step, config=scaled_lr(config, lr_scale)),
                         in_shardings=(rep, data_sharding, rep), out_shardings=(rep, rep),
                         donate_argnums=0)
            compiled = fn.lower(abstract, example, key).compile()
            _say(f"train step compiled in {time.monotonic() - t:.1f} s")
            return compiled

        step_fn = make_step(rollback.lr_scale)
        if config.get("rollback") and ckpt.latest_step() is None:
            ckpt.save(int(state["step"]), state)  # something good to roll back to
        if rollback.lr_scale != 1.0:
            _say(f"learning rate x{rollback.lr_scale:g} after {rollback.count} rollback(s)")
        eval_fn = jax.jit(functools.partial(task.evaluate, config=config))
        preview_fn = jax.jit(functools.partial(task.preview, config=config))

        writer = summaries.Writer(workdir, enabled=is_main)
        start = int(state["step"])
        num_steps = config.num_steps
        stop = _Stop()
        old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        workers = data_workers(config)
        prefetch = pipeline.Loader(batches, start, num_steps, workers)
        images_per_step = config.batch_size * len(task.identities)
        preview_batch = to_global(val_batches(0))
        metrics = {}
        quality = None
        if config.get("quality_every"):
            from facejax.quality import HeldOutQuality
            quality = HeldOutQuality(task, config,
                                     run_info.coverage(info) / task.model_region(config))
        if config.eval_every and start == 0:
            ev = evaluate_held_out(eval_fn, state, val_batches, to_global, config.eval_batches)
            _record(workdir, 0, ev)
            writer.scalars(0, ev)
        t_start = time.monotonic()
        t_log, step_log = t_start, start
        step = start
        try:
            while step < num_steps:
                # Every process must stop at the same step: agree on it every 10 steps.
                if (jax.process_count() == 1 or step % 10 == 0) and _any_process(stop.requested):
                    break
                _, local = prefetch.next()
                state, m = step_fn(state, to_global(local), key)
                m = jax.device_get(m)
                step += 1
                if not m.pop("finite"):
                    last = ckpt.latest_step()
                    if rollback.count >= config.get("rollback", 0) or last is None:
                        why = ("" if not config.get("rollback") else
                               "; no checkpoint to roll back to" if last is None else
                               f"; {rollback.count} rollback(s) used")
                        raise Diverged(f"non-finite loss or gradient at step {step} "
                                       f"(loss {m.get('loss')}){why}; the last checkpoint "
                                       "is kept")
                    rollback.record(workdir, step, last, config.get("rollback_lr_factor", 0.5))
                    _say(f"non-finite loss or gradient at step {step}: rolled back to step "
                         f"{last}, learning rate x{rollback.lr_scale:g} "
                         f"(rollback {rollback.count} of {config.rollback})")
                    state = restore_run(ckpt, abstract, task, fresh)
                    step = int(state["step"])
                    step_fn = make_step(rollback.lr_scale)
                    prefetch.close()
                    prefetch = pipeline.Loader(batches, step, num_steps, workers)
                    continue
                metrics = {k: float(v) for k, v in m.items()}
                if step == start + 1 and not rollback.count:
                    _say(f"first step took {time.monotonic() - t_start:.1f} s")
                    t_log, step_log = time.monotonic(), step
                if step % config.log_every == 0 or step == num_steps:
                    now = time.monotonic()
                    rate = (step - step_log) / max(now - t_log, 1e-9) if step > step_log else 0.0
                    t_log, step_log = now, step
                    metrics.update(steps_per_s=rate, images_per_s=rate * images_per_step)
                    eta = format_seconds((num_steps - step) / rate) if rate else "?"
                    line = " ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))
                    if is_main:
                        print(f"step {step}/{num_steps} {line} ETA {eta}", flush=True)
                    writer.scalars(step, metrics)
                if config.eval_every and (step % config.eval_every == 0 or step == num_steps):
                    ev = evaluate_held_out(eval_fn, state, val_batches, to_global,
                                           config.eval_batches)
                    metrics.update(ev)
                    _record(workdir, step, ev)
                    writer.scalars(step, ev)
                if quality and (step % config.quality_every == 0 or step == num_steps):
                    q = quality(state, preview_batch, parallel.fetch)
                    metrics.update(q)
                    _record(workdir, step, q)
                    writer.scalars(step, q)
                if config.preview_every and (step % config.preview_every == 0
                                             or step == num_steps):
                    writer.images(step, jax.device_get(preview_fn(state, preview_batch)),
                                  task.preview_columns)
                if step % config.checkpoint_every == 0 and step < num_steps:
                    ckpt.save(step, state)
            if ckpt.latest_step() != step:  # a stop request can land right after a save
                ckpt.save(step, state)
            if step < num_steps:
                _say(f"stopped at step {step} on request; checkpoint saved")
        finally:
            prefetch.close()
            writer.close()
            ckpt.close()
            for s, h in old.items():
                signal.signal(s, h)
    metrics["step"] = step
    return metrics


def _record(workdir: str, step: int, values: dict) -> None:
    """Appends held-out metrics to workdir/metrics.jsonl (process 0), a readable history."""
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(dict(step=step, **{k: float(v) for k, v in values.items()})) + "\n")


def read_history(workdir: str) -> list[dict]:
    """The held-out metrics recorded so far (a line cut by a kill is skipped)."""
    out = []
    path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(path):
        for line in open(path):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def evaluate_held_out(eval_fn, state, val_batches, to_global, num_batches: int) -> dict:
    """Mean of the task's evaluation metrics over fixed held-out batches."""
    totals = {}
    for i in range(num_batches):
        for k, v in jax.device_get(eval_fn(state, to_global(val_batches(i)))).items():
            totals[k] = totals.get(k, 0.0) + float(v) / num_batches
    return totals
