"""The one generic training loop: mesh, sharded init, jitted donated step, checkpoints, summaries.

It knows nothing about model families: a Task (facejax/tasks/protocol.py) supplies init,
train_step, evaluate and preview, and declares the record fields and identities it needs. The
loop's parts live in facejax/training/: the workdir's files, the inputs, the periodic actions.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import signal
import time

import jax
import ml_collections
import numpy as np

from facejax import checkpoint as ckpt_lib
from facejax import config_check, errors, parallel, run_info, runs, summaries, tasks, trees
from facejax.data import pipeline
from facejax.errors import RunError, UserError, stopped_before_training, warn, write_failed
from facejax.lock import FolderLock
from facejax.training import inputs as inputs_lib
from facejax.training import periodic
from facejax.training import run_files


def _say(msg: str) -> None:
    if jax.process_index() == 0:
        print(msg, flush=True)


class Diverged(RunError):
    """Training produced a non-finite loss or gradient."""
    exit_code = 3


def restore_run(ckpt, abstract: dict, task, fresh) -> dict:
    """The latest checkpoint's state, for this run's config. Options that add a part to the
    state (SAEHD's discriminators, its weight average) may be switched on or off between
    runs, as DeepFaceLab's users do late in training: a part the checkpoint lacks starts from
    `fresh()` (this config's initial state), or as the task's `resumed` says; a part this
    config has no use for is left out. Either is said on one line. A damaged checkpoint is
    passed over for the latest intact one, as _restore_intact says."""
    state, step = _restore_intact(ckpt, abstract)
    added = sorted(set(abstract) - set(state))
    dropped = sorted(set(ckpt.saved_parts(step)) - set(abstract))
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


def _restore_intact(ckpt, abstract: dict):
    """(state, step) of the latest checkpoint that reads back intact. Each damaged one after it
    is said on one line and moved aside, out of the way of the saves to come (never deleted).

    Raises:
      RunError: no checkpoint is intact (all are left where they are).
    """
    damaged = []
    for step in sorted(ckpt.all_steps(), reverse=True):
        try:
            state = ckpt.restore(abstract, step=step, partial=True)
        except ckpt_lib.DamagedCheckpoint as e:
            damaged.append(e)
            continue
        for e in damaged:
            kept = ckpt.move_aside(e.step)
            if jax.process_index() == 0:
                warn(f"checkpoint {e.step} at {e.path} is damaged ({e.reason}): resuming from "
                     f"step {step}; it is kept for inspection at {kept}")
        return state, step
    raise RunError(f"{ckpt.directory}: no intact checkpoint to resume from: "
                   + "; ".join(f"step {e.step} is damaged ({e.reason})" for e in damaged)
                   + "; move them aside to start afresh")


def scaled_lr(config, scale: float):
    """`config` with its learning rate multiplied by `scale` (a copy; the same when 1)."""
    if scale == 1.0:
        return config
    c = copy.deepcopy(config)
    c.optim.learning_rate = float(c.optim.learning_rate) * scale
    return c


@dataclasses.dataclass
class _Session:
    """What stays fixed while one `train` call runs: the run, its mesh and its inputs."""
    config: ml_collections.ConfigDict
    task: tasks.Task
    workdir: str
    key: jax.Array
    rep: jax.sharding.Sharding            # the state's sharding (replicated)
    data_sharding: jax.sharding.Sharding  # the batches' (split over the "data" axis)
    abstract: dict                        # the state's shapes and shardings
    example: dict                         # the first batch: the step is compiled for its shapes
    ckpt: ckpt_lib.Checkpointer
    inputs: inputs_lib.Inputs
    workers: int

    def to_global(self, batch):
        return pipeline.to_global(batch, self.data_sharding)

    def fresh(self):
        """This config's initial state, on the mesh."""
        init_fn = functools.partial(self.task.init, config=self.config)
        return jax.jit(init_fn, out_shardings=self.rep)(self.key)

    def compile_step(self, lr_scale: float):
        """The train step compiled ahead of time for this run's shapes and shardings: a
        changed shape or layout later is an error, never a silent recompilation."""
        t = time.monotonic()
        fn = jax.jit(functools.partial(self.task.train_step,
                                       config=scaled_lr(self.config, lr_scale)),
                     in_shardings=(self.rep, self.data_sharding, self.rep),
                     out_shardings=(self.rep, self.rep), donate_argnums=0)
        compiled = fn.lower(self.abstract, self.example, self.key).compile()
        _say(f"train step compiled in {time.monotonic() - t:.1f} s")
        return compiled

    def loader(self, step: int) -> pipeline.Loader:
        """The training batches of `step` onwards, prepared ahead."""
        return pipeline.Loader(self.inputs.train, step, self.config.num_steps, self.workers)


class _Stop:
    """SIGTERM/SIGINT's handler. Once the data is open (`training`): finish the step, save a
    checkpoint, exit cleanly. Before: end the run at once (errors.Stopped), one line, exit 0;
    nothing was trained that a checkpoint could keep."""

    def __init__(self):
        self.requested = False
        self.training = False

    def __call__(self, signum, frame):
        del frame
        if not self.training:
            raise stopped_before_training(signum)
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
      errors.Stopped: SIGTERM or SIGINT before the data was open: while a dataset was being
        prepared or waited for (tfds_faces.PreparationStopped, nothing of it kept) or before.
    """
    config_check.require(config)
    task = tasks.get(config.task)
    config_check.check(config, task.config_schema)
    config = inputs_lib.with_absolute_data(config, task)
    if config.quality_every and not task.swaps:
        raise UserError(f"--config.quality_every={config.quality_every}: the task {config.task} "
                        "has no swap to measure; set it to 0")
    run_files.check_writable(workdir)
    # One writer per workdir: process 0 holds its lock for the whole run (the processes of a
    # multi-host job share one workdir).
    lock = FolderLock(workdir, what="training workdir") if jax.process_index() == 0 else None
    # From here a stop request ends the run cleanly: before the data is open at once
    # (errors.Stopped), later at the next step, after a checkpoint.
    stop, old = _Stop(), {}
    try:
        old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        if errors.STOPS_RAISED:  # a start-up stop whose exception Python dropped
            raise stopped_before_training(errors.STOPS_RAISED[-1])
        return _train(config, workdir, task, stop)
    except OSError as e:  # a summary, preview or record that could not be written
        raise write_failed(e, workdir, "the checkpoints written so far")
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if lock is not None:
            lock.release()


def _train(config, workdir: str, task, stop: _Stop) -> dict:
    """train()'s session, in a locked workdir."""
    run_files.save_or_check_config(config, workdir)
    source_config = run_files.init_from_config(config, workdir)  # before anything slow
    mesh = parallel.make_mesh()
    if config.batch_size % jax.device_count():
        raise UserError(f"--config.batch_size={config.batch_size}: must divide by the "
                        f"{jax.device_count()} devices")
    key = jax.random.key(config.seed)
    try:  # the model's shapes, before any data is read
        shapes = jax.eval_shape(functools.partial(task.init, config=config), key)
    except ValueError as e:  # a model that cannot be built from these settings
        raise UserError(f"--config.model: {e}")
    rep, data_sharding = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    inputs = inputs_lib.open_inputs(config, task, workdir)
    stop.training = True  # from here a stop waits for the step and its checkpoint
    session = _Session(
        config=config, task=task, workdir=workdir, key=key, rep=rep,
        data_sharding=data_sharding, abstract=trees.abstract_of(shapes, rep),
        example=pipeline.to_global(inputs.train(0), data_sharding),
        ckpt=ckpt_lib.Checkpointer(workdir, keep=config.keep_checkpoints), inputs=inputs,
        workers=inputs_lib.data_workers(config))
    try:
        with jax.set_mesh(mesh):
            state = _start_state(session, source_config)
            rollback = run_files.RollbackState.load(workdir)
            step_fn = session.compile_step(rollback.lr_scale)
            if config.rollback and session.ckpt.latest_step() is None:
                session.ckpt.save(int(state["step"]), state)  # something good to roll back to
            if rollback.lr_scale != 1.0:
                _say(f"learning rate x{rollback.lr_scale:g} after {rollback.count} rollback(s)")
            return _run(session, state, step_fn, rollback, stop)
    finally:
        session.ckpt.close()


def _start_state(session: _Session, source_config):
    """The state training starts from: the latest checkpoint's, else a fresh one (with the
    weights of `--config.init_from`'s run when `source_config` is its config)."""
    ckpt, config = session.ckpt, session.config
    if ckpt.latest_step() is not None:
        state = restore_run(ckpt, session.abstract, session.task, session.fresh)
        _say(f"resumed from {ckpt.directory} at step {int(state['step'])}")
        return state
    state = session.fresh()
    if source_config is not None:
        state = run_files.weights_from(config.init_from, source_config, session.task, state,
                                       session.rep)
        _say(f"initialised weights from {config.init_from}")
    return state


def _actions(session: _Session, writer) -> list:
    """The periodic actions of this run, in the order they run after a step."""
    config, task = session.config, session.task
    held_out_batch = session.to_global(session.inputs.held_out(0))
    actions = [
        periodic.Log(config.log_every, writer, config.num_steps,
                     config.batch_size * len(task.identities)),
        periodic.Evaluate(config.eval_every,
                          jax.jit(functools.partial(task.evaluate, config=config)),
                          session.inputs.held_out, session.to_global, config.eval_batches,
                          writer, session.workdir)]
    if config.quality_every:
        from facejax.quality import HeldOutQuality
        quality = HeldOutQuality(task, config, runs.framing(config, task, session.inputs.info))
        actions.append(periodic.Quality(config.quality_every, quality, held_out_batch, writer,
                                        session.workdir))
    actions += [
        periodic.Preview(config.preview_every,
                         jax.jit(functools.partial(task.preview, config=config)),
                         held_out_batch, writer, task.preview_columns),
        periodic.Checkpoint(config.checkpoint_every, session.ckpt)]
    return actions


def _run(session: _Session, state, step_fn, rollback, stop: _Stop) -> dict:
    """Trains from `state` to the last step or a stop request; saves the final state (after a
    stop, with its preview and held-out metrics)."""
    config = session.config
    writer = summaries.Writer(session.workdir, enabled=jax.process_index() == 0)
    try:
        loader = session.loader(int(state["step"]))  # its workers start during what follows
        try:
            actions = _actions(session, writer)
            if config.eval_every and int(state["step"]) == 0:  # the metrics before training
                next(a for a in actions if isinstance(a, periodic.Evaluate))(0, state, {})
        except BaseException:
            loader.close()
            raise
        start = int(state["step"])
        state, step, metrics = _loop(session, state, step_fn, rollback, actions, stop, loader)
        if step < config.num_steps and step > start:  # stopped: what the user can look at
            periodic.run_at_stop(actions, step, config.num_steps, state, metrics)
        if session.ckpt.latest_step() != step:  # a stop request can land right after a save
            session.ckpt.save(step, state)
        if step < config.num_steps:
            _say(f"stopped at step {step} on request; checkpoint saved")
    finally:
        writer.close()
    metrics["step"] = step
    return metrics


def _loop(session: _Session, state, step_fn, rollback, actions, stop, loader):
    """The steps from `loader`, each followed by the actions due; closes the loader it ends
    with. Returns (state, step, the last step's metrics)."""
    log = next(a for a in actions if isinstance(a, periodic.Log))
    start = step = int(state["step"])
    log.begin(start)
    metrics = {}
    try:
        while step < session.config.num_steps:
            # Every process must stop at the same step: agree on it every 10 steps.
            if (jax.process_count() == 1 or step % 10 == 0) and _any_process(stop.requested):
                break
            _, local = loader.next()
            state, m = step_fn(state, session.to_global(local), session.key)
            m = jax.device_get(m)
            step += 1
            if not m.pop("finite"):
                state, step, step_fn, loader = roll_back(session, rollback, step,
                                                         m.get("loss"), loader)
                continue
            metrics = {k: float(v) for k, v in m.items()}
            if step == start + 1 and not rollback.count:
                log.first_step_done(step)
            periodic.run_due(actions, step, session.config.num_steps, state, metrics)
    finally:
        loader.close()
    return state, step, metrics


def roll_back(session: _Session, rollback, step: int, loss, loader):
    """After a non-finite `step`: the last checkpoint's state, its step, a step function at the
    reduced learning rate and a loader from that step (`loader` closed), in place of the
    loop's. The rollback is recorded in rollback.json.

    Raises:
      Diverged: no rollback left (or none configured), or no checkpoint to roll back to.
    """
    config, ckpt = session.config, session.ckpt
    last = ckpt.latest_step()
    if rollback.count >= config.rollback or last is None:
        why = ("" if not config.rollback else
               "; no checkpoint to roll back to" if last is None else
               f"; {rollback.count} rollback(s) used")
        raise Diverged(f"non-finite loss or gradient at step {step} (loss {loss}){why}; the "
                       "last checkpoint is kept")
    rollback.record(session.workdir, step, last, config.rollback_lr_factor)
    _say(f"non-finite loss or gradient at step {step}: rolled back to step {last}, learning "
         f"rate x{rollback.lr_scale:g} (rollback {rollback.count} of {config.rollback})")
    state = restore_run(ckpt, session.abstract, session.task, session.fresh)
    step = int(state["step"])
    step_fn = session.compile_step(rollback.lr_scale)
    loader.close()
    return state, step, step_fn, session.loader(step)
