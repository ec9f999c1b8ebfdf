"""The task protocol: what a model family gives the generic training loop and the tools.

A family module builds one `Task` (its `TASK`); nothing outside `facejax/tasks/` knows a family
by name. Required functions serve training; the optional ones are capabilities, None where the
family has none, and the tools check for them:

    swap, reconstruct, views, model_region   convert.py and evaluate.py (face swapping)
    swap_with_mask                           the model's own mask (convert.py --mask learned)
    generate                                 reenact.py (drive a face with landmarks)
    host_augment                             augment.placement "host" (input pipeline)
    segment                                  the visible-face mask of a crop (facejax xseg apply)

Beside its functions a family declares what the tools around it need to know of it: the ranges
of the config keys only it reads (`config_schema`, merged with the common ones by
facejax/config_check.py), its PyTorch reference step (`reference`, timed by `facejax benchmark
train --reference_python`) and the model settings a trained run is loaded with for inference
(`inference_model`, applied by `inference_config`).

States are plain pytrees. `params_of` takes out the weights (everything inference needs,
normalisation statistics included, no optimizer state), `with_params` puts weights into a
state: `--config.init_from` starts a run from another run's weights this way for every family.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from facejax.ops.conv import rules


@dataclasses.dataclass(frozen=True)
class Task:
    """One model family.

    Attributes:
      name: the `config.task` value that selects it.
      fields: record fields each identity's batch carries ("image", "landmark_image", "parts").
      identities: the identities a batch holds, ("a",) or ("a", "b").
      init: (rng, config) -> state, step 0.
      train_step: (state, batch, rng, config) -> (state, metrics); metrics include "loss" and
        "finite" (common.guard_finite); jitted, sharded and donated by facejax.train.
      evaluate: (state, batch, config) -> {name: scalar} on a held-out batch, no augmentation.
      preview: (state, batch, config) -> {name: float32 [N, H, W, 3] in [0, 1]}: per identity,
        panels of the model's size side by side.
      preview_columns: the panels' labels, left to right ("{other}": the other identity).
      params_of: state -> weights.
      with_params: (state, weights) -> state.
      cpu_convolutions: "ynnpack" (XLA:CPU's default) or "eigen": the convolution library the
        family runs faster with on CPU (a process-wide setting, facejax/xla_setup.py).
      swap: (state, faces, direction "a2b" | "b2a", config) -> faces; faces float [N, S, S, 3]
        in [0, 1] at the model size.
      reconstruct: (state, faces, identity "a" | "b", config) -> faces through their own path.
      views: (batch, identity, config) -> the model's un-augmented view of that identity's
        crops, in [0, 1] (training-time quality figures).
      model_region: config -> fraction of the extracted crop's side the model sees.
      generate: (state, landmark drawings uint8 [N, S, S, 3], config) -> faces in [0, 1].
      host_augment: (batch, numpy Generator, config) -> batch, the step's augmentation done in
        the input pipeline instead of the step.
      swap_with_mask: (state, faces, direction, config) -> (faces, learned mask [N, S, S, 1]),
        for a family whose model predicts its own mask (convert.py's --mask learned).
      segment: (state, faces, config) -> the visible-face mask [N, S, S, 1] in [0, 1] of faces
        float [N, S, S, 3] in [0, 1] at the model size, for a segmentation family (occluders
        left out; `facejax xseg apply`, convert.py's --mask xseg).
      resumed: (state, added part names) -> state, for a family whose options add top-level
        state parts that are not simply initialised (a weight average starts at the
        weights): a resumed run's parts that its checkpoint lacked, put right; the others
        start from the config's initial state (facejax.train.restore_run).
      config_schema: {dotted config key: rule} of the keys only this family reads
        (config_check.integer / number ranges, or a tuple of allowed strings).
      reference: the family's PyTorch reference training step, or None.
      inference_model: model config keys a trained run is loaded with for inference, where it
        let the rules pick its layers' forms (conv_impl "auto"); the same parameters either way.
    """
    name: str
    fields: tuple
    identities: tuple
    init: Callable
    train_step: Callable
    evaluate: Callable
    preview: Callable
    params_of: Callable
    with_params: Callable
    preview_columns: tuple = ()
    cpu_convolutions: str = "ynnpack"
    swap: Optional[Callable] = None
    reconstruct: Optional[Callable] = None
    views: Optional[Callable] = None
    model_region: Optional[Callable] = None
    generate: Optional[Callable] = None
    host_augment: Optional[Callable] = None
    swap_with_mask: Optional[Callable] = None
    segment: Optional[Callable] = None
    resumed: Optional[Callable] = None
    config_schema: dict = dataclasses.field(default_factory=dict, compare=False)
    reference: Optional[Reference] = None
    inference_model: dict = dataclasses.field(default_factory=lambda: dict(rules.INFERENCE),
                                              compare=False)

    def __post_init__(self):
        swapping = (self.swap, self.reconstruct, self.views, self.model_region)
        if any(f is not None for f in swapping) and any(f is None for f in swapping):
            raise TypeError(f"task {self.name}: swap, reconstruct, views and model_region "
                            "come together")
        if self.cpu_convolutions not in ("ynnpack", "eigen"):
            raise TypeError(f"task {self.name}: cpu_convolutions {self.cpu_convolutions!r}")

    @property
    def swaps(self) -> bool:
        """Whether the family turns one identity's faces into the other's."""
        return self.swap is not None

    def inference_config(self, config):
        """A copy of `config` set up for inference (`inference_model`) when its model lets the
        rules pick its layers' forms."""
        config = config.copy_and_resolve_references()
        if config.model.get("conv_impl") == "auto":
            with config.unlocked():
                config.model.update(self.inference_model)
        return config


@dataclasses.dataclass(frozen=True)
class Reference:
    """A family's PyTorch reference training step: a script of the reference folder
    (../shared/bench) that prints one JSON line with its median `step_ms`.

    Attributes:
      script: the script's file name.
      args: config -> the script's arguments for the config's batch, size and model; None:
        `--batch B --size S` (per identity and model side) followed by `extra`.
      extra: arguments after those.
    """
    script: str
    args: Optional[Callable] = None
    extra: tuple = ()

    def arguments(self, config) -> list[str]:
        """The script's arguments for `config`."""
        if self.args is not None:
            return list(self.args(config))
        return ["--batch", str(config.batch_size), "--size", str(config.model.size),
                *self.extra]
