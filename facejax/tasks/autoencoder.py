"""The original deepfakes task: shared encoder, decoder_a and decoder_b, L1 on warped faces.

Swap: a face of B -> encoder -> decoder_a gives A's face with B's expression and pose.
With --config.data.mask=hull or xseg the L1 is taken inside that mask of the target view (the
batch then carries "mask"; training/inputs.fields), so what covers the face is not learned.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from facejax import augment, config_check, losses
from facejax.models import autoencoder as ae_model
from facejax.tasks import common
from facejax.tasks.protocol import Reference, Task

FIELDS = ("image",)
IDENTITIES = ("a", "b")


def init(rng: jax.Array, config) -> dict:
    enc, dec = ae_model.build(config)
    s = config.model.size
    x = jnp.zeros((1, s, s, 3), jnp.float32)
    k_enc, k_a, k_b = jax.random.split(rng, 3)
    enc_params = enc.init(k_enc, x)["params"]
    code = enc.apply({"params": enc_params}, x)
    params = {"encoder": enc_params,
              "decoder_a": dec.init(k_a, code)["params"],
              "decoder_b": dec.init(k_b, code)["params"]}
    return {"params": params, "opt": common.adam(config).init(params),
            "step": jnp.zeros((), jnp.int32)}


def forward(params: dict, images: jax.Array, decoder: str, config) -> jax.Array:
    """Faces [B, S, S, 3] in [0, 1] -> encoder -> `decoder` ("decoder_a" or "decoder_b")."""
    enc, dec = ae_model.build(config)
    code = enc.apply({"params": params["encoder"]}, images)
    return dec.apply({"params": params[decoder]}, code)


def _augment(rng, faces: dict, config) -> tuple:
    """(warped, target, target mask or None) of one identity's batch, on device."""
    keys = jax.random.split(rng, faces["image"].shape[0])
    if "mask" not in faces:
        fn = lambda k, im: augment.warp_pair(k, im, config.model.size, config.augment)
        return jax.vmap(fn)(keys, faces["image"]) + (None,)
    fn = lambda k, im, m: augment.warp_with_masks(k, im, m[..., None], config.model.size,
                                                  config.augment)
    return jax.vmap(fn)(keys, faces["image"], faces["mask"])


def host_augment(batch: dict, rng: np.random.Generator, config) -> dict:
    """The host path of the random warp (augment.placement "host"), in the input pipeline."""
    out = {}
    for name in IDENTITIES:
        views = augment.warp_batch_np(rng, batch[name]["image"], config.model.size,
                                      config.augment, identity=name,
                                      masks=batch[name].get("mask"))
        out[name] = dict(zip(("warped", "target", "target_mask"), views))
    return out


def encode_pair(params: dict, a: jax.Array, b: jax.Array, config) -> tuple[jax.Array, jax.Array]:
    """The shared encoder on the faces of A and of B in one pass of twice the batch (its matrix
    products fill the machine better than two of one batch each). The pair is interleaved
    (a0, b0, a1, b1, ...) so each device's rows stay on that device when the batch is sharded."""
    enc, _ = ae_model.build(config)
    x = jnp.stack([a, b], axis=1).reshape((-1,) + a.shape[1:])
    code = enc.apply({"params": params["encoder"]}, x)
    code = code.reshape((a.shape[0], 2) + code.shape[1:])
    return code[:, 0], code[:, 1]


def loss_fn(params, batch, rng, config):
    ka, kb = jax.random.split(rng)
    metrics, total = {}, 0.0
    warped, target, mask = {}, {}, {}
    for name, key in (("a", ka), ("b", kb)):
        if "warped" in batch[name]:  # augmented on the host
            warped[name], target[name] = batch[name]["warped"], batch[name]["target"]
            mask[name] = batch[name].get("target_mask")
        else:
            warped[name], target[name], mask[name] = _augment(key, batch[name], config)
    _, dec = ae_model.build(config)
    codes = dict(zip(IDENTITIES, encode_pair(params, warped["a"], warped["b"], config)))
    for name in IDENTITIES:
        recon = dec.apply({"params": params[f"decoder_{name}"]}, codes[name])
        if mask[name] is not None:  # inside the face's mask only (--config.data.mask)
            recon, target[name] = recon * mask[name], target[name] * mask[name]
        loss = losses.l1(recon, target[name]).mean()
        metrics[f"loss_{name}"] = loss
        total = total + loss
    metrics["loss"] = total
    return total, metrics


def train_step(state: dict, batch: dict, rng: jax.Array, config):
    rng = jax.random.fold_in(rng, state["step"])
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch, rng,
                                                                    config)
    updates, opt = common.adam(config).update(grads, state["opt"], state["params"])
    new = {"params": optax.apply_updates(state["params"], updates), "opt": opt,
           "step": state["step"] + 1}
    return common.guard_finite(new, metrics, grads)


views = common.views


def evaluate(state: dict, batch: dict, config) -> dict:
    """Held-out L1 of each face through its own decoder (no augmentation)."""
    out = {}
    for name in IDENTITIES:
        x = views(batch, name, config)
        out[f"val_l1_{name}"] = losses.l1(forward(state["params"], x, f"decoder_{name}", config),
                                          x).mean()
    return out


def preview(state: dict, batch: dict, config) -> dict:
    """Per side: input | reconstruction | swap to the other identity."""
    out = {}
    for name, other in (("a", "b"), ("b", "a")):
        x = views(batch, name, config)
        out[name] = jnp.concatenate([
            x, forward(state["params"], x, f"decoder_{name}", config),
            forward(state["params"], x, f"decoder_{other}", config)], axis=2)
    return out


def swap(state: dict, faces: jax.Array, direction: str, config) -> jax.Array:
    """b2a: faces of B rendered as A (decoder_a); a2b the reverse. Faces in [0, 1]."""
    return forward(state["params"], faces, "decoder_a" if direction == "b2a" else "decoder_b",
                   config)


def reconstruct(state: dict, faces: jax.Array, identity: str, config) -> jax.Array:
    """Faces of `identity` ("a" or "b") through their own decoder. Faces in [0, 1]."""
    return forward(state["params"], faces, f"decoder_{identity}", config)


def model_region(config) -> float:
    """Fraction of the extracted crop's side that the model sees (for conversion)."""
    return float(config.augment.region)


CONFIG_SCHEMA = {**{key: config_check.integer(1) for key in (
    "model.latent", "model.code_channels", "model.encoder_widths", "model.decoder_widths")},
    "data.mask": ("", "hull", "xseg")}

TASK = Task(
    name="autoencoder", fields=FIELDS, identities=IDENTITIES, init=init, train_step=train_step,
    evaluate=evaluate, preview=preview,
    preview_columns=("input", "reconstruction", "swap to {other}"),
    params_of=lambda state: state["params"],
    with_params=lambda state, params: dict(state, params=params),
    swap=swap, reconstruct=reconstruct, views=views, model_region=model_region,
    host_augment=host_augment, config_schema=CONFIG_SCHEMA,
    reference=Reference("torch_autoencoder.py"))
