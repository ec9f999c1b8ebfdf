"""Pieces every task's train_step shares."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def guard_finite(old_state, new_state, metrics: dict, grads):
    """Keeps the old state when the loss, a gradient or the new state is not finite, and says so.

    The training loop stops (or rolls back) on `metrics["finite"] == False`; the state it holds
    is then the last good one, so no non-finite value can reach a checkpoint.
    """
    finite = all_finite(metrics) & all_finite(grads) & all_finite(new_state)
    state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_state, old_state)
    return state, dict(metrics, finite=finite)


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
