"""XSeg: DeepFaceLab's face segmentation, trained to mark the visible face (occluders out).

A batch holds identity "a"'s crops ("image") and face masks ("mask": the rasterised labels of
masks.jsonl, or the landmark hull for the generic model). The input pipeline augments them
(tasks/xseg_augment.py: pasted occluders, DeepFaceLab's warp, flip, colour, blur) into
"input" and "target"; the loss is DeepFaceLab's, the per-pixel sigmoid cross-entropy, with its
RMSprop. A batch that was not augmented on the host (a fixed test batch) trains on the model's
plain view of the crops and their masks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from facejax import augment, config_check
from facejax.models import xseg as xseg_model
from facejax.tasks import common, xseg_augment
from facejax.tasks.protocol import Task

FIELDS = ("image", "mask")
IDENTITIES = ("a",)


def optimizer(config):
    """RMSprop with the config's decay and learning-rate schedule (DeepFaceLab's: 1e-4, 0.9)."""
    return optax.rmsprop(common.learning_rate(config), decay=config.optim.rho, eps=1e-7)


def init(rng: jax.Array, config) -> dict:
    s = config.model.size
    params = xseg_model.build(config).init(rng, jnp.zeros((1, s, s, 3), jnp.float32))["params"]
    return {"params": params, "opt": optimizer(config).init(params),
            "step": jnp.zeros((), jnp.int32)}


def logits(params: dict, faces: jax.Array, config) -> jax.Array:
    """Faces [N, S, S, 3] in [0, 1] -> logits [N, S, S, 1] of the visible face."""
    return xseg_model.build(config).apply({"params": params}, faces)


def predict(state: dict, faces: jax.Array, config) -> jax.Array:
    """Faces [N, S, S, 3] in [0, 1] -> the visible-face mask [N, S, S, 1] in [0, 1]."""
    return jax.nn.sigmoid(logits(state["params"], faces, config))


def plain_view(batch: dict, config) -> tuple[jax.Array, jax.Array]:
    """(faces, 0/1 masks [N, S, S, 1]): the un-augmented model view of identity a's crops."""
    region = config.augment.region
    view = lambda im: augment.centre_view(im, config.model.size, region)
    faces = jax.vmap(view)(batch["a"]["image"])
    masks = jax.vmap(view)(batch["a"]["mask"][..., None])
    return faces, (masks >= 0.5).astype(jnp.float32)


def host_augment(batch: dict, rng: np.random.Generator, config) -> dict:
    """The augmentation, in the input pipeline (xseg_augment.batch)."""
    return {"a": xseg_augment.batch(rng, batch["a"]["image"], batch["a"]["mask"],
                                    config.model.size, config.augment)}


def _pair(batch: dict, config):
    if "input" in batch["a"]:
        return batch["a"]["input"], batch["a"]["target"]
    return plain_view(batch, config)


def loss_fn(params, batch, config):
    x, y = _pair(batch, config)
    out = logits(params, x, config)
    loss = optax.sigmoid_binary_cross_entropy(out, y).mean()
    return loss, {"loss": loss, "iou": iou(out > 0, y > 0.5)}


def iou(pred: jax.Array, truth: jax.Array) -> jax.Array:
    """Mean over the batch of each face's intersection over union (1 where both are empty)."""
    axes = tuple(range(1, pred.ndim))
    inter = jnp.sum(pred & truth, axes)
    union = jnp.sum(pred | truth, axes)
    return jnp.mean(jnp.where(union > 0, inter / jnp.maximum(union, 1), 1.0))


def train_step(state: dict, batch: dict, rng: jax.Array, config):
    del rng  # the augmentation is drawn on the host, seeded by (seed, step)
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch,
                                                                    config)
    updates, opt = optimizer(config).update(grads, state["opt"], state["params"])
    new = {"params": optax.apply_updates(state["params"], updates), "opt": opt,
           "step": state["step"] + 1}
    return common.guard_finite(new, metrics, grads)


def evaluate(state: dict, batch: dict, config) -> dict:
    """Held-out cross-entropy and IoU against the faces' own masks (no occluders)."""
    x, y = plain_view(batch, config)
    out = logits(state["params"], x, config)
    return {"val_bce": optax.sigmoid_binary_cross_entropy(out, y).mean(),
            "val_iou": iou(out > 0, y > 0.5)}


def preview(state: dict, batch: dict, config) -> dict:
    """input | predicted mask | the face inside it."""
    x, _ = plain_view(batch, config)
    mask = predict(state, x, config)
    return {"a": jnp.concatenate([x, jnp.repeat(mask, 3, -1), x * mask], axis=2)}


CONFIG_SCHEMA = {
    "model.base": config_check.integer(1),
    "model.dense": config_check.integer(1),
    "optim.rho": config_check.number(0, 1, low_open=True),
    "augment.occluders": config_check.number(0, 1),
    "augment.colour": config_check.number(0, 1),
    "augment.blur": config_check.number(0, 1),
    "augment.max_blur": config_check.number(0.3, 64),
    "data.labels": ("labels", "hull"),
}

TASK = Task(
    name="xseg", fields=FIELDS, identities=IDENTITIES, init=init, train_step=train_step,
    evaluate=evaluate, preview=preview, preview_columns=("input", "mask", "masked"),
    params_of=lambda state: state["params"],
    with_params=lambda state, params: dict(state, params=params),
    host_augment=host_augment, segment=predict, config_schema=CONFIG_SCHEMA)
