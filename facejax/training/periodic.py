"""The work a training run does every N steps besides training: log, evaluate on held-out
batches, measure swap quality, write previews, save a checkpoint. Each is an action with its
own cadence; one rule (`due`) says when it runs: every `every` steps and at the last step
(big_vision's `itstime`, clu's periodic actions)."""

from __future__ import annotations

import time

import jax

from facejax import parallel
from facejax.progress import format_seconds
from facejax.training import run_files


def due(step: int, every: int, last: int) -> bool:
    """Whether work done every `every` steps (0: never) runs after `step` of a run that ends
    at `last`."""
    return every > 0 and (step % every == 0 or step == last)


def evaluate_held_out(eval_fn, state, val_batches, to_global, num_batches: int) -> dict:
    """Mean of the task's evaluation metrics over fixed held-out batches."""
    totals = {}
    for i in range(num_batches):
        for k, v in jax.device_get(eval_fn(state, to_global(val_batches(i)))).items():
            totals[k] = totals.get(k, 0.0) + float(v) / num_batches
    return totals


class Log:
    """The progress line and the step's metrics to TensorBoard, with steps/s and images/s
    since the last line."""

    def __init__(self, every: int, writer, num_steps: int, images_per_step: int):
        self.every, self.writer = every, writer
        self.num_steps, self.images_per_step = num_steps, images_per_step
        self.t_start = self.t_log = time.monotonic()
        self.step_log = 0

    def begin(self, step: int) -> None:
        """Training starts (or resumes) at `step`."""
        self.t_start = self.t_log = time.monotonic()
        self.step_log = step

    def first_step_done(self, step: int) -> None:
        """Reports the first step's time (compilation, the first batches) and leaves it out
        of the rate."""
        if jax.process_index() == 0:
            print(f"first step took {time.monotonic() - self.t_start:.1f} s", flush=True)
        self.t_log, self.step_log = time.monotonic(), step

    def __call__(self, step: int, state, metrics: dict) -> None:
        del state
        now = time.monotonic()
        steps = step - self.step_log
        rate = steps / max(now - self.t_log, 1e-9) if steps > 0 else 0.0
        self.t_log, self.step_log = now, step
        metrics.update(steps_per_s=rate, images_per_s=rate * self.images_per_step)
        eta = format_seconds((self.num_steps - step) / rate) if rate else "?"
        line = " ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))
        if jax.process_index() == 0:
            print(f"step {step}/{self.num_steps} {line} ETA {eta}", flush=True)
        self.writer.scalars(step, metrics)


class Evaluate:
    """The task's held-out metrics: to the step's metrics, metrics.jsonl and TensorBoard."""

    def __init__(self, every: int, eval_fn, val_batches, to_global, num_batches: int,
                 writer, workdir: str):
        self.every, self.eval_fn, self.writer, self.workdir = every, eval_fn, writer, workdir
        self.val_batches, self.to_global, self.num_batches = val_batches, to_global, num_batches

    def __call__(self, step: int, state, metrics: dict) -> None:
        ev = evaluate_held_out(self.eval_fn, state, self.val_batches, self.to_global,
                               self.num_batches)
        metrics.update(ev)
        run_files.record(self.workdir, step, ev)
        self.writer.scalars(step, ev)

    def at_stop(self, step: int, state, metrics: dict) -> None:
        """The metrics of the state a stop request saves, on one held-out batch (quick, so
        the stop stays prompt); its metrics.jsonl line says so (stopped, eval_batches)."""
        ev = evaluate_held_out(self.eval_fn, state, self.val_batches, self.to_global, 1)
        metrics.update(ev)
        run_files.record(self.workdir, step, dict(ev, stopped=1, eval_batches=1))
        self.writer.scalars(step, ev)


class Quality:
    """Swap quality on a held-out batch (facejax/quality.py), recorded as Evaluate's."""

    def __init__(self, every: int, quality, batch, writer, workdir: str):
        self.every, self.quality, self.batch = every, quality, batch
        self.writer, self.workdir = writer, workdir

    def __call__(self, step: int, state, metrics: dict) -> None:
        q = self.quality(state, self.batch, parallel.fetch)
        metrics.update(q)
        run_files.record(self.workdir, step, q)
        self.writer.scalars(step, q)


class Preview:
    """The task's preview of a held-out batch: TensorBoard and previews/*.png."""

    def __init__(self, every: int, preview_fn, batch, writer, columns):
        self.every, self.preview_fn, self.batch = every, preview_fn, batch
        self.writer, self.columns = writer, columns

    def __call__(self, step: int, state, metrics: dict) -> None:
        del metrics
        self.writer.images(step, jax.device_get(self.preview_fn(state, self.batch)),
                           self.columns)

    at_stop = __call__  # one batch already


class Checkpoint:
    """Saves the state (orbax, in the background: facejax/checkpoint.py)."""

    def __init__(self, every: int, ckpt):
        self.every, self.ckpt = every, ckpt

    def __call__(self, step: int, state, metrics: dict) -> None:
        del metrics
        self.ckpt.save(step, state)


def run_due(actions, step: int, last: int, state, metrics: dict) -> None:
    """Runs the actions due after `step`, in order (a later one sees the metrics an earlier one
    added)."""
    for action in actions:
        if due(step, action.every, last):
            action(step, state, metrics)


def run_at_stop(actions, step: int, last: int, state, metrics: dict) -> None:
    """After a stop request at `step`: the actions with an `at_stop` (the held-out metrics and
    the preview), unless turned off or already run after this step."""
    for action in actions:
        if hasattr(action, "at_stop") and action.every > 0 and not due(step, action.every, last):
            action.at_stop(step, state, metrics)
