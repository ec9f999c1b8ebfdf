"""Start-up validation of an experiment config: every numeric value in its range, every choice
one of its options, before anything slow runs. A bad value is one line naming
`--config.KEY`, the value and what is allowed.

A schema maps a config key (dotted, from the top of the config) to its rule: a `Range` of
numbers, the tuple of allowed strings, or `BOOLEAN`. `COMMON` holds the keys the generic parts
read (the training loop, the data pipeline, augmentation, the optimizer's schedule, the model's
size); each family's task declares the keys only it reads (`Task.config_schema`,
facejax/tasks/), and `check` takes the two together. Every numeric leaf of every experiment
must have a rule (tests/test_config_check.py), so a new setting comes with its range.
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Union

from facejax.errors import UserError

INF = math.inf


class Range(NamedTuple):
    """Numbers from `low` to `high` (inclusive; `low` excluded when `low_open`)."""
    kind: str  # "int" or "float"
    low: float
    high: float = INF
    low_open: bool = False


class NotedRange(Range):
    """A Range whose error message adds `note` (what the value means, where that changed); it
    unpacks as a Range."""

    def __new__(cls, kind: str, low: float, high: float = INF, low_open: bool = False,
                note: str = ""):
        self = super().__new__(cls, kind, low, high, low_open)
        self.note = note
        return self


Rule = Union[Range, tuple, type]  # a tuple of strings: the allowed choices; BOOLEAN
Schema = Mapping[str, Rule]


def integer(low: float, high: float = INF) -> Range:
    """Integers from `low` to `high`, inclusive."""
    return Range("int", low, high)


def number(low: float, high: float = INF, low_open: bool = False, note: str = "") -> Range:
    """Numbers from `low` (excluded when `low_open`) to `high`; `note` is added to the error."""
    return NotedRange("float", low, high, low_open, note) if note else Range(
        "float", low, high, low_open)


FRACTION = number(0, 1)
BOOLEAN = bool  # True or False, nothing else
# The keys each augmentation kind reads beyond the common ones (augment.default_config(kind)
# gives them; a kind without them is refused).
AUGMENT_KINDS = {"deepfakes": ("zoom", "shear", "flip", "warp", "warp_grid", "lightness",
                               "color", "contrast"),
                 "dfl": ("scale", "flip_a", "flip_b")}
WEIGHT = number(0)  # a loss term's weight
COMMON: Schema = {
    "seed": integer(0),
    "batch_size": integer(1),
    "num_steps": integer(0),
    "log_every": integer(1),
    "eval_every": integer(0),
    "eval_batches": integer(1),
    "preview_every": integer(0),
    "quality_every": integer(0),
    "checkpoint_every": integer(1),
    "keep_checkpoints": integer(1),
    "rollback": integer(0),
    "rollback_lr_factor": number(0, 1, low_open=True),
    "optim.learning_rate": number(0, low_open=True),
    "optim.b1": FRACTION,
    "optim.b2": FRACTION,
    "optim.decay_steps": integer(0),
    "model.size": integer(16, 4096),
    "model.compute_dtype": ("auto", "float32", "bfloat16"),
    "data.yaw_bins": integer(0, 4096),
    "data.workers": integer(-1, 256),
    "data.load_size": integer(16, 4096),
    "data.degrade.prob": FRACTION,
    "data.degrade.max_blur": number(0, 100),
    "data.degrade.jpeg_min": integer(1, 100),
    "augment.kind": tuple(AUGMENT_KINDS),
    "augment.random_warp": BOOLEAN,
    "augment.region": number(0, 1, low_open=True),
    "augment.rotation": number(0, 180),
    "augment.zoom": FRACTION,
    "augment.shift": FRACTION,
    "augment.shear": FRACTION,
    "augment.flip": FRACTION,
    "augment.warp": FRACTION,
    "augment.warp_grid": integer(2, 64),
    "augment.lightness": number(0, 100),
    "augment.color": number(0, 128),
    "augment.contrast": FRACTION,
    "augment.scale": number(1, 4),
    "augment.flip_a": FRACTION,
    "augment.flip_b": FRACTION,
    "augment.jitter_scale": number(1, 4),
    "augment.placement": ("auto", "device", "host"),
}


def merged(family: Schema) -> dict:
    """The common schema with a family's keys added; a family may not redefine a common key."""
    both = sorted(set(COMMON) & set(family))
    if both:
        raise ValueError(f"family schema redefines common keys: {', '.join(both)}")
    return {**COMMON, **family}


def _leaves(node, prefix=""):
    """(dotted key, value) of every leaf of a ConfigDict or dict."""
    for k in node.keys():
        v = node[k]
        key = f"{prefix}{k}"
        if hasattr(v, "keys"):
            yield from _leaves(v, key + ".")
        else:
            yield key, v


def _number_ok(value, kind: str, low, high, low_open: bool) -> bool:
    # A float setting may be a bool (False/True as 0/1: CycleGAN's flip); an integer may not.
    if (isinstance(value, bool) and kind == "int") or not isinstance(value, (int, float)):
        return False
    if kind == "int" and not float(value).is_integer():
        return False
    if not math.isfinite(value):
        return False
    above = value > low if low_open else value >= low
    return above and value <= high


def _describe(kind: str, low, high, low_open: bool) -> str:
    what = "an integer" if kind == "int" else "a number"
    lo = f"{'>' if low_open else '>='} {low:g}"
    return f"{what} {lo}" if high == INF else f"{what} {lo} and <= {high:g}"


# The keys the training loop reads (experiments/common.py's loop() and data() set them all):
# a config without one is refused before anything runs.
TRAINING_KEYS = ("task", "seed", "batch_size", "num_steps", "log_every", "eval_every",
                 "eval_batches", "preview_every", "quality_every", "checkpoint_every",
                 "keep_checkpoints", "rollback", "rollback_lr_factor", "init_from",
                 "data.load_size", "data.pretrain", "data.per_process", "data.data_dir",
                 "data.workers", "data.yaw_bins", "data.degrade.prob")


def require(config, keys=TRAINING_KEYS) -> None:
    """Raises UserError naming the first of `keys` (dotted) that `config` lacks."""
    for key in keys:
        node = config
        for part in key.split("."):
            if part not in node:
                raise UserError(f"--config: no {key} (an experiment's config sets every key "
                                "the training loop reads: experiments/common.py's loop() and "
                                "data() give them all)")
            node = node[part]


def check(config, family: Schema) -> None:
    """Raises UserError for the first value of `config` outside its rule in the common schema
    and `family`'s (the config's task's `config_schema`); keys of neither go unchecked."""
    schema = merged(family)
    for key, value in _leaves(config):
        rule = schema.get(key)
        if isinstance(rule, Range):
            many = isinstance(value, (tuple, list))
            values = value if many else (value,)
            if not values or not all(_number_ok(v, *rule) for v in values):
                note = getattr(rule, "note", "")
                raise UserError(f"--config.{key}={_show(value)}: must be "
                                f"{_describe(*rule)}{' each' if many else ''}"
                                f"{f' ({note})' if note else ''}")
        elif rule is BOOLEAN:
            if not isinstance(value, bool):
                raise UserError(f"--config.{key}={_show(value)}: must be True or False")
        elif rule is not None and value not in rule:
            shown = ", ".join(option or '""' for option in rule)
            raise UserError(f"--config.{key}={_show(value)}: expected one of {shown}")
    _augment_kind(config)



def _augment_kind(config) -> None:
    """A config's augmentation must hold the keys its kind reads (a kind set on the command line
    cannot add them: they come with augment.default_config(kind))."""
    aug = config.get("augment")
    if aug is None or aug.get("kind") not in AUGMENT_KINDS:
        return
    missing = [k for k in AUGMENT_KINDS[aug["kind"]] if k not in aug]
    if missing:
        raise UserError(f"--config.augment.kind={aug['kind']}: this experiment's augment has no "
                        f"{', '.join(missing)} (an experiment picks the kind with "
                        "augment.default_config(kind))")

def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
