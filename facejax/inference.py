"""Loading a trained run for inference: its config, its record (run_info), its checkpoint, and
the batched swap function conversion and evaluation call."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from facejax import run_info, runs, tasks, xla_setup
from facejax.errors import UserError
from facejax.faces import face_types


def configure_xla(workdir: str) -> None:
    """The process-wide XLA:CPU settings of the run in `workdir` (xla_setup), for the tools that
    load a model; call before JAX computes anything. A missing or unreadable run changes
    nothing here: loading the model reports it."""
    try:
        task = tasks.get(runs.load_config(workdir).task)
    except UserError:
        return
    xla_setup.configure(task.cpu_convolutions)


@dataclasses.dataclass
class Run:
    """A trained run, loaded."""
    workdir: str
    config: ml_collections.ConfigDict
    task: tasks.Task
    state: Any
    info: dict  # run_info's record

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def size(self) -> int:
        return int(self.config.model.size)

    @property
    def framing(self) -> face_types.Framing:
        """Where the model's crop sits on a face: its face type, or for families without one
        the extraction's coverage over the task's model region."""
        return runs.framing(self.config, self.task, self.info)


def load_run(workdir: str, step: int | None = None, flag: str = "--model") -> Run:
    """A workdir's config, record and latest (or given) checkpoint.

    Raises:
      UserError: missing or incomplete workdir, or a checkpoint that does not fit its config
        (the message names the workdir as `flag`).
    """
    config = runs.load_config(workdir, flag=flag)
    task = tasks.get(config.task)
    state = runs.restore_state(workdir, config, task, step=step, flag=flag)
    return Run(workdir, config, task, state, run_info.read(workdir))


def load_swapper(workdir: str, step: int | None = None) -> Run:
    """A trained run of a family that swaps faces (its latest or given checkpoint), its layers
    set up for inference."""
    config = runs.load_config(workdir)
    task = tasks.get(config.task)
    if not task.swaps:
        raise UserError(f"--model {workdir}: its task {config.task} has no swap direction "
                        "(face2face models reenact: use facejax reenact)")
    run = load_run(workdir, step)
    return dataclasses.replace(run, config=task.inference_config(run.config))


@dataclasses.dataclass
class SwapModel:
    """A batched face function and the crop geometry it expects."""
    # uint8 [N, S, S, 3] -> float [N, S, S, 3] in [0, 1]; may return a jax.Array still being
    # computed (it is read only when pasted).
    fn: Callable[[np.ndarray], Any]
    size: int
    framing: face_types.Framing  # where the crop sits on the face


def batched(fn, batch: int):
    """uint8 crops [n, S, S, 3] -> fn(crops) for any n, compiled for one batch size."""
    def run(crops: np.ndarray):
        n = len(crops)
        if n < batch:
            crops = np.concatenate([crops, np.zeros((batch - n,) + crops.shape[1:], crops.dtype)])
        return fn(crops)[:n]
    return run


def swap_function(run: Run, direction: str, batch: int, with_mask: bool = False) -> Callable:
    """uint8 crops -> swapped faces in [0, 1], `direction` "a2b" or "b2a", one compiled batch;
    with_mask: with the model's learned mask as a fourth channel."""
    task, config, state = run.task, run.config, run.state
    if with_mask:
        def swap(s, x):
            face, mask = task.swap_with_mask(s, x, direction, config)
            return jax.numpy.concatenate([face, mask], axis=-1)
    else:
        swap = lambda s, x: task.swap(s, x, direction, config)
    fn = jax.jit(lambda s, x: swap(s, x.astype(np.float32) / 255.0))
    return batched(lambda x: fn(state, x), batch)


def swap_model(run: Run, direction: str, batch: int, with_mask: bool = False) -> SwapModel:
    """The swap function of a loaded run (load_swapper), compiled once for a fixed batch size.

    Raises:
      UserError: `with_mask` for a family that predicts no mask.
    """
    if with_mask and run.task.swap_with_mask is None:
        raise UserError(f"--mask: the run's task {run.config.task} predicts no mask of its own; use "
                        "hull or crop (SAEHD runs learn one)")
    return SwapModel(swap_function(run, direction, batch, with_mask), run.size, run.framing)


def load_swap_model(workdir: str, direction: str, batch: int,
                    with_mask: bool = False, step: int | None = None) -> SwapModel:
    """The swap function of a trained run, compiled once for a fixed batch size."""
    return swap_model(load_swapper(workdir, step), direction, batch, with_mask)


def segmentation_task(workdir: str, flag: str = "--model") -> tasks.Task:
    """The task of run `workdir`, read from its config alone (no weights).

    Raises:
      UserError: not a run, or a run of a family that segments no faces (named as `flag`).
    """
    config = runs.load_config(workdir, flag=flag)
    task = tasks.get(config.task)
    if task.segment is None:
        raise UserError(f"{flag}={workdir}: its task {config.task} predicts no face mask; give "
                        "an XSeg run (facejax train --config=xseg)")
    return task


def load_segmenter(workdir: str, batch: int, step: int | None = None,
                   flag: str = "--model") -> Callable:
    """The mask function of a trained segmentation run (`Task.segment`, its latest or given
    checkpoint): uint8 crops [n, L, L, 3] of any side L -> uint8 masks [n, L, L] (0..255), the
    crops resized to the model's side and the masks back, one compiled batch. The function's
    `side` attribute is the model's side.

    Raises:
      UserError: the run is not a segmentation model, or cannot be loaded (the message names
        it as `flag`).
    """
    task = segmentation_task(workdir, flag)
    run = load_run(workdir, step, flag)
    config, size = task.inference_config(run.config), run.size
    fn = jax.jit(lambda s, x: task.segment(s, x.astype(np.float32) / 255.0, config))
    model = batched(lambda x: fn(run.state, x), batch)

    def segment(crops: np.ndarray) -> np.ndarray:
        side = crops.shape[1]
        x = crops if side == size else np.stack([_resize(c, size) for c in crops])
        masks = np.asarray(model(x))[..., 0]
        out = masks if side == size else np.stack([_resize(m, side) for m in masks])
        return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)
    segment.side = size
    return segment


def _resize(image: np.ndarray, side: int) -> np.ndarray:
    import cv2  # OpenCV's area average going down, cubic going up, as extraction resizes
    shrink = image.shape[0] > side
    return cv2.resize(image, (side, side),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
