"""Pieces the tasks share: the finite-step guard, the optimizer, the model's view of a crop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from facejax import augment, config_check, losses
from facejax.trees import all_finite, inexact_leaves

# The config keys of the GAN families' generator and PatchGAN (pix2pix, CycleGAN).
GAN_SCHEMA = {
    "model.g_base": config_check.integer(1),
    "model.d_base": config_check.integer(1),
    "model.max_width": config_check.integer(1),
    "model.d_layers": config_check.integer(1, 8),
    "loss.gan_mode": losses.GAN_MODES,
}


def _not_moments(path) -> bool:
    return not any(getattr(k, "key", None) == "opt" for k in path)


def guard_finite(new_state, metrics: dict, grads):
    """Adds `finite` to the metrics: the loss, every gradient and the new state are finite.

    Checked cheaply: a gradient is finite with a finite square (Σg² finite also means g² did
    not overflow), and then Adam's moments stay finite (convex combinations of finite values),
    so of the new state only the non-optimizer leaves are summed. The state is returned as
    computed: the training loop never keeps or saves one that is not finite; it stops or
    reloads the last checkpoint (train.py), so no non-finite value reaches a checkpoint.
    """
    g2 = [jnp.sum(jnp.square(g.astype(jnp.float32))) for g in inexact_leaves(grads)]
    rest = [x for path, x in jax.tree_util.tree_flatten_with_path(new_state)[0]
            if _not_moments(path)]
    finite = all_finite(metrics) & jnp.isfinite(sum(g2[1:], g2[0])) & all_finite(rest)
    return new_state, dict(metrics, finite=finite)


def learning_rate(config):
    """Constant `optim.learning_rate`, then linear decay to 0 over the last `optim.decay_steps`."""
    o = config.optim
    decay = int(o.get("decay_steps", 0))
    if decay <= 0:
        return o.learning_rate
    hold = max(config.num_steps - decay, 0)
    return optax.join_schedules(
        [optax.constant_schedule(o.learning_rate),
         optax.linear_schedule(o.learning_rate, 0.0, decay)], [hold])


def adam(config):
    """Adam with the config's betas and learning-rate schedule."""
    o = config.optim
    return optax.adam(learning_rate(config), b1=o.b1, b2=o.b2)


def centre_views(crops, config) -> jax.Array:
    """The un-augmented model view (`config.model.size`, `config.augment.region`) of uint8
    crops [N, L, L, C], in [0, 1]."""
    region = config.augment.region
    return jax.vmap(lambda crop: augment.centre_view(crop, config.model.size, region))(crops)


def views(batch, name, config) -> jax.Array:
    """The un-augmented model view of identity `name`'s crops, in [0, 1] (`Task.views`)."""
    return centre_views(batch[name]["image"], config)
