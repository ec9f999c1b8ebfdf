"""pix2pix for face2face: landmark drawing of A -> A's face (U-Net G, conditional PatchGAN D).

One jitted step updates D on (input, target) vs (input, G(input)), then G with GAN + λ·L1 against
the updated D (the order of pytorch-CycleGAN-and-pix2pix). G is run forward once: its VJP is kept
and fed the gradient with respect to the generated image. Batch-norm statistics live in the
state ("batch_stats"); evaluation and inference use the running statistics, without dropout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from facejax import augment, config_check, losses
from facejax.models.layers import compute_dtype
from facejax.models.patchgan import PatchGAN
from facejax.models.unet import UNet
from facejax.tasks import common
from facejax.tasks.protocol import Reference, Task

FIELDS = ("image", "landmark_image")
IDENTITIES = ("a",)


def build(config):
    m = config.model
    dtype = compute_dtype(m)
    g = UNet(size=m.size, base=m.g_base, max_width=m.max_width, dropout=m.dropout,
             norm=m.g_norm, conv_impl=m.conv_impl, up_impl=m.get("up_impl"), dtype=dtype)
    d = PatchGAN(base=m.d_base, n_layers=m.d_layers, max_width=m.max_width, norm=m.d_norm,
                 conv_impl=m.conv_impl, dtype=dtype)
    return g, d


def _variables(net_state):
    return {"params": net_state["params"], **({"batch_stats": net_state["batch_stats"]}
                                             if net_state.get("batch_stats") else {})}


def init(rng: jax.Array, config) -> dict:
    g, d = build(config)
    s = config.model.size
    x = jnp.zeros((1, s, s, 3))
    kg, kd = jax.random.split(rng)
    state = {"step": jnp.zeros((), jnp.int32)}
    for name, net, inp in (("g", g, x), ("d", d, jnp.zeros((1, s, s, 6)))):
        v = net.init({"params": kg if name == "g" else kd, "dropout": kg}, inp, train=False)
        params = v["params"]
        state[name] = {"params": params, "batch_stats": v.get("batch_stats", {}),
                       "opt": common.adam(config).init(params)}
    return state


def to_unit(x):
    """uint8 images -> float32 in [-1, 1]."""
    return x.astype(jnp.float32) / 127.5 - 1.0


def jitter(rng, inputs, targets, config):
    """Random jitter, identical for input and target: resize to 286/256 of the size, random
    crop back to the size, random mirror (pix2pix). Returns float32 in [-1, 1]."""
    s, big = config.model.size, _big(config)
    both = jnp.concatenate([to_unit(inputs), to_unit(targets)], axis=-1)

    def one(key, im):
        p = augment.jitter_params(key, big, s, config.augment.flip)
        return augment.jitter_image(p, im, big, s)

    out = jax.vmap(one)(jax.random.split(rng, both.shape[0]), both)
    return out[..., :3], out[..., 3:]


def _big(config) -> int:
    return int(round(config.model.size * config.augment.jitter_scale))


def host_augment(batch: dict, rng: np.random.Generator, config) -> dict:
    """The host path of `jitter` (augment.placement "host"), in the input pipeline."""
    s, big = config.model.size, _big(config)
    a = batch["a"]
    both = np.concatenate([a["landmark_image"], a["image"]], -1).astype(np.float32)
    both = both / np.float32(127.5) - 1
    out = np.stack([augment.jitter_image(
        augment.jitter_params_np(rng, big, s, config.augment.flip), im, big, s, np) for im in both])
    return {"a": {"input": out[..., :3], "target": out[..., 3:]}}


def _plain(batch, config):
    """Inputs and targets without jitter, at the model size, in [-1, 1]."""
    s = config.model.size
    x, y = to_unit(batch["a"]["landmark_image"]), to_unit(batch["a"]["image"])
    if x.shape[1] != s:
        x = jax.image.resize(x, (x.shape[0], s, s, 3), "linear")
        y = jax.image.resize(y, (y.shape[0], s, s, 3), "linear")
    return x, y


def train_step(state: dict, batch: dict, rng: jax.Array, config):
    rng = jax.random.fold_in(rng, state["step"])
    k_jit, k_drop = jax.random.split(rng)
    g, d = build(config)
    mode, lam = config.loss.gan_mode, config.loss.l1_weight
    if "input" in batch["a"]:  # augmented on the host
        x, y = batch["a"]["input"], batch["a"]["target"]
    else:
        x, y = jitter(k_jit, batch["a"]["landmark_image"], batch["a"]["image"], config)
    opt = common.adam(config)

    def g_forward(params):
        out, mut = g.apply(_variables(dict(state["g"], params=params)), x, train=True,
                           rngs={"dropout": k_drop}, mutable=["batch_stats"])
        return out, mut.get("batch_stats", {})

    fake, g_vjp, g_stats = jax.vjp(g_forward, state["g"]["params"], has_aux=True)

    def d_apply(params, stats, inputs):
        out, mut = d.apply(_variables({"params": params, "batch_stats": stats}), inputs,
                           train=True, mutable=["batch_stats"])
        return out, mut.get("batch_stats", {})

    def d_loss(params):
        real, stats = d_apply(params, state["d"]["batch_stats"], jnp.concatenate([x, y], -1))
        fake_logits, stats = d_apply(params, stats,
                                     jnp.concatenate([x, jax.lax.stop_gradient(fake)], -1))
        lr, lf = losses.gan_discriminator(real, fake_logits, mode)
        return 0.5 * (lr.mean() + lf.mean()), (stats, lr.mean(), lf.mean())

    (d_total, (d_stats, d_real, d_fake)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(
        state["d"]["params"])
    d_updates, d_opt = opt.update(d_grads, state["d"]["opt"], state["d"]["params"])
    d_params = optax.apply_updates(state["d"]["params"], d_updates)

    def g_loss(generated):
        logits, stats = d_apply(d_params, d_stats, jnp.concatenate([x, generated], -1))
        gan = losses.gan_generator(logits, mode).mean()
        l1 = losses.l1(generated, y).mean()
        return gan + lam * l1, (stats, gan, l1)

    (g_total, (d_stats, g_gan, g_l1)), d_fake_img = jax.value_and_grad(g_loss, has_aux=True)(fake)
    (g_grads,) = g_vjp(d_fake_img)
    g_updates, g_opt = opt.update(g_grads, state["g"]["opt"], state["g"]["params"])
    new = {
        "g": {"params": optax.apply_updates(state["g"]["params"], g_updates),
              "batch_stats": g_stats, "opt": g_opt},
        "d": {"params": d_params, "batch_stats": d_stats, "opt": d_opt},
        "step": state["step"] + 1,
    }
    metrics = {"loss": g_total, "g_gan": g_gan, "g_l1": g_l1, "d_loss": d_total,
               "d_real": d_real, "d_fake": d_fake}
    return common.guard_finite(new, metrics, (g_grads, d_grads))


def generate(state: dict, landmark_images: jax.Array, config) -> jax.Array:
    """Inference: uint8 landmark drawings [B, S, S, 3] -> faces in [0, 1] (running statistics,
    no dropout)."""
    g, _ = build(config)
    return (g.apply(_variables(state["g"]), to_unit(landmark_images), train=False) + 1.0) / 2.0


def evaluate(state: dict, batch: dict, config) -> dict:
    """Held-out L1 (in [0, 1] units) between generated and real faces."""
    g, _ = build(config)
    x, y = _plain(batch, config)
    out = g.apply(_variables(state["g"]), x, train=False)
    return {"val_l1": losses.l1(out, y).mean() / 2.0}


def preview(state: dict, batch: dict, config) -> dict:
    """landmark image | target | generated."""
    g, _ = build(config)
    x, y = _plain(batch, config)
    out = g.apply(_variables(state["g"]), x, train=False)
    return {"a": (jnp.concatenate([x, y, out], axis=2) + 1.0) / 2.0}


def params_of(state: dict) -> dict:
    """G's and D's weights with their batch-norm statistics."""
    return {n: {"params": state[n]["params"], "batch_stats": state[n]["batch_stats"]}
            for n in ("g", "d")}


def with_params(state: dict, params: dict) -> dict:
    return dict(state, **{n: dict(state[n], **params[n]) for n in ("g", "d")})


CONFIG_SCHEMA = {
    **common.GAN_SCHEMA,
    "model.dropout": config_check.number(0, 1),
    "model.g_norm": ("batch", "instance", "none"),  # models.layers.norm_layer's kinds
    "model.d_norm": ("batch", "instance", "none"),
    "loss.l1_weight": config_check.number(0),
}

TASK = Task(
    name="pix2pix", fields=FIELDS, identities=IDENTITIES, init=init, train_step=train_step,
    evaluate=evaluate, preview=preview,
    preview_columns=("landmarks", "target", "generated"),
    params_of=params_of, with_params=with_params,
    generate=generate, host_augment=host_augment, config_schema=CONFIG_SCHEMA,
    reference=Reference("torch_pix2pix.py"))
