"""Start-up validation of an experiment config: every numeric value in its range, every choice
one of its options, before anything slow runs. A bad value is one line naming
`--config.KEY`, the value and what is allowed.

`RULES` maps a config key (dotted; a key under any prefix matches its last parts, so
`model.size` covers every family's model block) to (type, low, high, low_open) bounds, or to
the tuple of allowed strings. Every numeric leaf of every experiment must have a rule
(tests/test_config_check.py), so a new setting comes with its range.
"""

from __future__ import annotations

import math

from facejax.errors import UserError

INF = math.inf
# key: ("int" | "float", low, high, low is exclusive)
NUMBERS = {
    "seed": ("int", 0, INF, False),
    "batch_size": ("int", 1, INF, False),
    "num_steps": ("int", 0, INF, False),
    "log_every": ("int", 1, INF, False),
    "eval_every": ("int", 0, INF, False),
    "eval_batches": ("int", 1, INF, False),
    "preview_every": ("int", 0, INF, False),
    "quality_every": ("int", 0, INF, False),
    "checkpoint_every": ("int", 1, INF, False),
    "keep_checkpoints": ("int", 1, INF, False),
    "rollback": ("int", 0, INF, False),
    "rollback_lr_factor": ("float", 0, 1, True),
    "pool_size": ("int", 1, INF, False),
    "pixel_dropout": ("float", 0, 1, False),
    "optim.learning_rate": ("float", 0, INF, True),
    "optim.b1": ("float", 0, 1, False),
    "optim.b2": ("float", 0, 1, False),
    "optim.decay_steps": ("int", 0, INF, False),
    "model.size": ("int", 16, 4096, False),
    "model.latent": ("int", 1, INF, False),
    "model.code_channels": ("int", 1, INF, False),
    "model.encoder_widths": ("int", 1, INF, False),
    "model.decoder_widths": ("int", 1, INF, False),
    "model.g_base": ("int", 1, INF, False),
    "model.d_base": ("int", 1, INF, False),
    "model.max_width": ("int", 1, INF, False),
    "model.d_layers": ("int", 1, 8, False),
    "model.n_blocks": ("int", 0, 64, False),
    "model.dropout": ("float", 0, 1, False),
    "model.ae_dims": ("int", 1, INF, False),
    "model.e_dims": ("int", 1, INF, False),
    "model.d_dims": ("int", 1, INF, False),
    "model.d_mask_dims": ("int", 1, INF, False),
    "optim.clip_norm": ("float", 0, INF, False),
    "optim.lr_dropout": ("float", 0, 0.99, False),
    "ema": ("float", 0, 0.9999, False),
    "loss.eyes_mouth_weight": ("float", 0, INF, False),
    "loss.gan_power": ("float", 0, 5, False),
    "loss.true_face_power": ("float", 0, 1, False),
    "model.gan_dims": ("int", 1, 512, False),
    "model.gan_patch_size": ("int", 0, 640, False),
    "model.code_d_dims": ("int", 1, INF, False),
    "data.yaw_bins": ("int", 0, 4096, False),
    "data.workers": ("int", -1, 256, False),
    "data.load_size": ("int", 16, 4096, False),
    "data.degrade.prob": ("float", 0, 1, False),
    "data.degrade.max_blur": ("float", 0, 100, False),
    "data.degrade.jpeg_min": ("int", 1, 100, False),
    "augment.region": ("float", 0, 1, True),
    "augment.rotation": ("float", 0, 180, False),
    "augment.zoom": ("float", 0, 1, False),
    "augment.shift": ("float", 0, 1, False),
    "augment.shear": ("float", 0, 1, False),
    "augment.flip": ("float", 0, 1, False),
    "augment.warp": ("float", 0, 1, False),
    "augment.warp_grid": ("int", 2, 64, False),
    "augment.lightness": ("float", 0, 100, False),
    "augment.color": ("float", 0, 128, False),
    "augment.contrast": ("float", 0, 1, False),
    "augment.jitter_scale": ("float", 1, 4, False),
    "loss.l1_weight": ("float", 0, INF, False),
    "loss.c_gan": ("float", 0, INF, False),
    "loss.c_cycle": ("float", 0, INF, False),
    "loss.c_attention": ("float", 0, INF, False),
    "loss.c_multi": ("float", 0, INF, False),
    "loss.c_multi_gan": ("float", 0, INF, False),
    "loss.c_identity": ("float", 0, INF, False),
}
CHOICES = {
    "model.compute_dtype": ("float32", "bfloat16"),
    "model.g_norm": ("batch", "instance", "none"),
    "model.d_norm": ("batch", "instance", "none"),
    "loss.gan_mode": ("vanilla", "lsgan", "hinge", "l1"),
    "augment.placement": ("auto", "device", "host"),
    "optim.name": ("adabelief", "adam"),
}


def _leaves(node, prefix=""):
    """(dotted key, value) of every leaf of a ConfigDict or dict."""
    for k in node.keys():
        v = node[k]
        key = f"{prefix}{k}"
        if hasattr(v, "keys"):
            yield from _leaves(v, key + ".")
        else:
            yield key, v


def rule_of(key: str, table: dict):
    """The rule of `key` in `table`: an exact key, or the longest suffix of its dotted parts."""
    parts = key.split(".")
    for i in range(len(parts)):
        if ".".join(parts[i:]) in table:
            return table[".".join(parts[i:])]
    return None


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


def check(config) -> None:
    """Raises UserError for the first value of `config` outside its rule."""
    for key, value in _leaves(config):
        rule = rule_of(key, NUMBERS)
        if rule is not None:
            many = isinstance(value, (tuple, list))
            values = value if many else (value,)
            if not values or not all(_number_ok(v, *rule) for v in values):
                raise UserError(f"--config.{key}={_show(value)}: must be "
                                f"{_describe(*rule)}{' each' if many else ''}")
            continue
        choices = rule_of(key, CHOICES)
        if choices is not None and value not in choices:
            raise UserError(f"--config.{key}={_show(value)}: expected one of "
                            f"{', '.join(choices)}")


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
