"""CycleGAN for faces: G_ab, G_ba, D_a, D_b on unpaired faces of A and B, with the face-swap
seed's additions: face-part attention, the multi-cycle ("1.5 cycle") terms, pixel dropout on the
translated image, and image pools for the discriminators held on device in the state.

Total generator loss (every weight in config.loss):

    c_gan       · [GAN(D_b(G_ab(x))) + GAN(D_a(G_ba(y)))]
    c_cycle     · [L1(x, rec_x) + L1(y, rec_y)]      rec_x = G_ba(drop(G_ab(x)))
    c_attention · [L1 on the face parts of x and y only]
    c_multi     · [L1(G_ab(x), G_ab(rec_x)) + L1(G_ba(y), G_ba(rec_y))]  (CycleLoss_B(G_ab(x)))
    c_multi_gan · [GAN(D_b(G_ab(rec_x))) + GAN(D_a(G_ba(rec_y)))]
                  (G_ab(G_ba(G_ab(x))) and G_ba(G_ab(G_ba(y))), the seed's formula)
    c_identity  · [L1(G_ba(x), x) + L1(G_ab(y), y)]

The generators are updated first, then the discriminators on real images against pooled fakes,
as in pytorch-CycleGAN-and-pix2pix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from facejax import config_check, losses
from facejax.models.layers import compute_dtype
from facejax.models.patchgan import PatchGAN
from facejax.models.resnet import ResnetGenerator, default_blocks
from facejax.tasks import common
from facejax.tasks.protocol import Reference, Task

FIELDS = ("image", "parts")
IDENTITIES = ("a", "b")
NETS = ("g_ab", "g_ba", "d_a", "d_b")


def build(config):
    m = config.model
    dtype = compute_dtype(m)
    blocks = m.n_blocks or default_blocks(m.size)
    g = ResnetGenerator(base=m.g_base, n_blocks=blocks, norm="instance", conv_impl=m.conv_impl,
                        up_impl=m.get("up_impl"), conv1_impl=m.get("conv1_impl"), dtype=dtype)
    d = PatchGAN(base=m.d_base, n_layers=m.d_layers, max_width=m.max_width, norm="instance",
                 conv_impl=m.conv_impl, dtype=dtype)
    return g, d


# ---- image pool (on device, inside the state) ------------------------------------------------

def pool_init(size: int, shape) -> dict:
    """An empty pool of `size` images of `shape` (H, W, C)."""
    return {"images": jnp.zeros((size,) + tuple(shape), jnp.float32),
            "count": jnp.zeros((), jnp.int32)}


def pool_query(pool: dict, images: jax.Array, key: jax.Array) -> tuple[dict, jax.Array]:
    """The image history of Shrivastava et al. (2017), as pytorch-CycleGAN-and-pix2pix's.

    For each incoming image, in order: while the pool is not full, store it and return it;
    once full, with probability 0.5 return a random stored image and store the new one in its
    place, otherwise return the new image. Pure and jittable; deterministic for a key.
    """
    size = pool["images"].shape[0]

    def one(pool, args):
        image, k = args
        k_coin, k_idx = jax.random.split(k)
        full = pool["count"] >= size
        swap = full & (jax.random.uniform(k_coin) < 0.5)
        idx = jnp.where(full, jax.random.randint(k_idx, (), 0, size), pool["count"])
        stored = pool["images"][idx]
        out = jnp.where(swap, stored, image)
        write = (~full) | swap
        images = pool["images"].at[idx].set(jnp.where(write, image, stored))
        return {"images": images, "count": jnp.minimum(pool["count"] + 1, size)}, out

    keys = jax.random.split(key, images.shape[0])
    pool, out = jax.lax.scan(one, pool, (images.astype(jnp.float32), keys))
    return pool, out


# ---- the loss terms, as functions of the networks --------------------------------------------

def pixel_dropout(key: jax.Array, images: jax.Array, p: float) -> jax.Array:
    """Zeroes a random fraction p of the pixels (all channels of a pixel together)."""
    if p <= 0:
        return images
    keep = jax.random.bernoulli(key, 1.0 - p, images.shape[:-1] + (1,))
    return images * keep


def generator_terms(g_ab, g_ba, d_a, d_b, x, y, parts_x, parts_y, drop_x, drop_y, cfg) -> tuple:
    """Generator loss terms of both directions; the networks are plain callables.

    Args:
      g_ab, g_ba: generators A->B, B->A; d_a, d_b: discriminators (logits).
      x, y: faces of A and B in [-1, 1]; parts_x, parts_y: [B, H, W, 1] face-part masks in [0, 1].
      drop_x, drop_y: pixel dropout applied to the translated x and y.
      cfg: config.loss.
    Returns:
      (terms, images): scalar terms, and the images the step needs (fakes, reconstructions).
    """
    mode = cfg.gan_mode
    fake_b, fake_a = g_ab(x), g_ba(y)
    dropped_b, dropped_a = drop_x(fake_b), drop_y(fake_a)
    rec_x, rec_y = g_ba(dropped_b), g_ab(dropped_a)
    cyc_x, cyc_y = losses.l1(rec_x, x), losses.l1(rec_y, y)
    t = {
        "gan": losses.gan_generator(d_b(fake_b), mode).mean()
        + losses.gan_generator(d_a(fake_a), mode).mean(),
        "cycle": cyc_x.mean() + cyc_y.mean(),
        "attention": losses.masked_mean(cyc_x, parts_x) + losses.masked_mean(cyc_y, parts_y),
    }
    images = {"fake_b": fake_b, "fake_a": fake_a, "dropped_b": dropped_b, "dropped_a": dropped_a,
              "rec_x": rec_x, "rec_y": rec_y}
    if cfg.c_multi or cfg.c_multi_gan:
        # The 1.5 cycle: G_ab(G_ba(G_ab(x))) = G_ab(rec_x), compared with G_ab(x)
        # (CycleLoss_B applied to the translated image) and judged by D_b; likewise for y.
        fake_b2, fake_a2 = g_ab(rec_x), g_ba(rec_y)
        t["multi"] = losses.l1(fake_b2, fake_b).mean() + losses.l1(fake_a2, fake_a).mean()
        t["multi_gan"] = (losses.gan_generator(d_b(fake_b2), mode).mean()
                          + losses.gan_generator(d_a(fake_a2), mode).mean())
    else:
        t["multi"] = t["multi_gan"] = jnp.zeros(())
    if cfg.c_identity:
        t["identity"] = losses.l1(g_ba(x), x).mean() + losses.l1(g_ab(y), y).mean()
    else:
        t["identity"] = jnp.zeros(())
    total = (cfg.c_gan * t["gan"] + cfg.c_cycle * t["cycle"] + cfg.c_attention * t["attention"]
             + cfg.c_multi * t["multi"] + cfg.c_multi_gan * t["multi_gan"]
             + cfg.c_identity * t["identity"])
    return dict(t, total=total), images


# ---- task interface ----------------------------------------------------------------------------

def init(rng: jax.Array, config) -> dict:
    g, d = build(config)
    s = config.model.size
    x = jnp.zeros((1, s, s, 3))
    keys = jax.random.split(rng, 4)
    opt = common.adam(config)
    state = {"step": jnp.zeros((), jnp.int32)}
    for name, key in zip(NETS, keys):
        params = (g if name.startswith("g") else d).init(key, x)["params"]
        state[name] = {"params": params, "opt": opt.init(params)}
    for name in ("pool_a", "pool_b"):
        state[name] = pool_init(config.pool_size, (s, s, 3))
    return state


def _inputs(batch, config):
    s = config.model.size
    out = []
    for name in IDENTITIES:
        img = batch[name]["image"].astype(jnp.float32) / 127.5 - 1.0
        parts = jnp.max(batch[name]["parts"], axis=-1, keepdims=True).astype(jnp.float32) / 255.
        if img.shape[1] != s:
            img = jax.image.resize(img, (img.shape[0], s, s, 3), "linear")
            parts = jax.image.resize(parts, (parts.shape[0], s, s, 1), "linear")
        out += [img, parts]
    return out


def _flip(key, *arrays):
    """The same random horizontal flip per example for each array."""
    n = arrays[0].shape[0]
    f = jax.random.bernoulli(key, 0.5, (n, 1, 1, 1))
    return [jnp.where(f, a[:, :, ::-1], a) for a in arrays]


def train_step(state: dict, batch: dict, rng: jax.Array, config):
    rng = jax.random.fold_in(rng, state["step"])
    k_fa, k_fb, k_dx, k_dy, k_pa, k_pb = jax.random.split(rng, 6)
    x, px, y, py = _inputs(batch, config)
    if config.augment.flip:
        x, px = _flip(k_fa, x, px)
        y, py = _flip(k_fb, y, py)
    g, d = build(config)
    cfg = config.loss
    opt = common.adam(config)
    p = config.pixel_dropout

    def g_loss(gp):
        net = lambda m, name: (lambda v: m.apply({"params": gp[name] if name in gp
                                                  else state[name]["params"]}, v))
        terms, images = generator_terms(
            net(g, "g_ab"), net(g, "g_ba"), net(d, "d_a"), net(d, "d_b"), x, y, px, py,
            lambda v: pixel_dropout(k_dx, v, p), lambda v: pixel_dropout(k_dy, v, p), cfg)
        return terms["total"], (terms, images)

    gp = {k: state[k]["params"] for k in ("g_ab", "g_ba")}
    (_, (terms, images)), g_grads = jax.value_and_grad(g_loss, has_aux=True)(gp)
    new = dict(state, step=state["step"] + 1)
    for k in ("g_ab", "g_ba"):
        upd, o = opt.update(g_grads[k], state[k]["opt"], state[k]["params"])
        new[k] = {"params": optax.apply_updates(state[k]["params"], upd), "opt": o}

    pool_a, fake_a = pool_query(state["pool_a"], jax.lax.stop_gradient(images["fake_a"]), k_pa)
    pool_b, fake_b = pool_query(state["pool_b"], jax.lax.stop_gradient(images["fake_b"]), k_pb)
    new["pool_a"], new["pool_b"] = pool_a, pool_b

    def d_loss(dp, real, fake):
        lr, lf = losses.gan_discriminator(d.apply({"params": dp}, real),
                                          d.apply({"params": dp}, fake), cfg.gan_mode)
        return 0.5 * (lr.mean() + lf.mean())

    d_grads, metrics = {}, {}
    for k, real, fake in (("d_a", x, fake_a), ("d_b", y, fake_b)):
        val, d_grads[k] = jax.value_and_grad(d_loss)(state[k]["params"], real, fake)
        upd, o = opt.update(d_grads[k], state[k]["opt"], state[k]["params"])
        new[k] = {"params": optax.apply_updates(state[k]["params"], upd), "opt": o}
        metrics[f"{k}_loss"] = val
    metrics.update({f"g_{k}": v for k, v in terms.items() if k != "total"})
    metrics["loss"] = terms["total"]
    return common.guard_finite(new, metrics, (g_grads, d_grads))


def translate(params: dict, faces: jax.Array, net: str, config) -> jax.Array:
    """Faces in [-1, 1] through generator `net` ("g_ab" or "g_ba")."""
    g, _ = build(config)
    return g.apply({"params": params[net]["params"]}, faces)


def evaluate(state: dict, batch: dict, config) -> dict:
    """Held-out cycle L1 of each side (no dropout, no flip), in [0, 1] units."""
    x, _, y, _ = _inputs(batch, config)
    rec_x = translate(state, translate(state, x, "g_ab", config), "g_ba", config)
    rec_y = translate(state, translate(state, y, "g_ba", config), "g_ab", config)
    return {"val_cycle_a": losses.l1(rec_x, x).mean() / 2,
            "val_cycle_b": losses.l1(rec_y, y).mean() / 2}


def preview(state: dict, batch: dict, config) -> dict:
    """Per side: real | translated | after pixel dropout | reconstructed."""
    x, _, y, _ = _inputs(batch, config)
    key = jax.random.key(0)
    out = {}
    for side, real, fwd, back in (("a", x, "g_ab", "g_ba"), ("b", y, "g_ba", "g_ab")):
        t = translate(state, real, fwd, config)
        dropped = pixel_dropout(key, t, config.pixel_dropout)
        rec = translate(state, dropped, back, config)
        out[side] = (jnp.concatenate([real, t, dropped, rec], axis=2) + 1) / 2
    return out


def swap(state: dict, faces: jax.Array, direction: str, config) -> jax.Array:
    """b2a: faces of B (in [0, 1]) rendered as A through G_ba; a2b through G_ab."""
    net = "g_ba" if direction == "b2a" else "g_ab"
    return (translate(state, faces * 2 - 1, net, config) + 1) / 2


def views(batch, name, config):
    """The model view of identity `name`'s crops (resized to the model size), in [0, 1]."""
    img = batch[name]["image"].astype(jnp.float32) / 255.0
    s = config.model.size
    if img.shape[1] != s:
        img = jax.image.resize(img, (img.shape[0], s, s, 3), "linear")
    return img


def reconstruct(state: dict, faces: jax.Array, identity: str, config) -> jax.Array:
    """Faces of `identity` through their cycle: A -> G_ab -> G_ba (B the reverse). In [0, 1]."""
    first, second = ("g_ab", "g_ba") if identity == "a" else ("g_ba", "g_ab")
    y = translate(state, faces * 2 - 1, first, config)
    return (translate(state, y, second, config) + 1) / 2


def model_region(config) -> float:
    """The model sees the whole extracted crop."""
    return 1.0


CONFIG_SCHEMA = {
    **common.GAN_SCHEMA,
    "model.n_blocks": config_check.integer(0, 64),
    **{f"loss.{term}": config_check.number(0) for term in (
        "c_gan", "c_cycle", "c_attention", "c_multi", "c_multi_gan", "c_identity")},
    "pool_size": config_check.integer(1),
    "pixel_dropout": config_check.number(0, 1),
}

TASK = Task(
    name="cyclegan", fields=FIELDS, identities=IDENTITIES, init=init, train_step=train_step,
    evaluate=evaluate, preview=preview,
    preview_columns=("real", "translated to {other}", "pixel dropout", "cycled back"),
    params_of=lambda state: {n: state[n]["params"] for n in NETS},
    with_params=lambda state, params: dict(state, **{n: dict(state[n], params=params[n])
                                                     for n in NETS}),
    # XLA:CPU's Eigen convolutions run the ResNet's layers several times faster than YNNPACK's.
    cpu_convolutions="eigen",
    swap=swap, reconstruct=reconstruct, views=views, model_region=model_region,
    config_schema=CONFIG_SCHEMA,
    # Fewer timed steps than the script's default: seconds per step on a CPU at 256 px.
    reference=Reference("torch_cyclegan.py", extra=("--steps", "3", "--warmup", "1")))
