"""DeepFaceLab's SAEHD swap family: df or liae networks (models/saehd.py) with a learned mask,
trained on warped faces with DSSIM + MSE inside the blurred face mask, eyes/mouth priority and a
mask loss, as Model_SAEHD does; AdaBelief (or Adam), optional gradient clipping, DeepFaceLab's
learning-rate dropout and cosine cycle, and an exponential moving average of the weights for
inference.

Per side and face, with m the blurred hull mask (DeepFaceLab's: blur σ = max(1, S/32), clipped
at 0.5, doubled) and em the eyes and mouth masks:

    10·DSSIM(t·m, p·m) (S < 256; above, 5·DSSIM at two window sizes)   window int(S/11.6)
  + 10·mean((t·m - p·m)²)
  + eyes_mouth_weight · mean(|t·em - p·em|)                            (DeepFaceLab: 300)
  + 10·mean((mask - predicted mask)²)

Options, off by default as in DeepFaceLab:
  optim.lr_dropout  the share of each weight tensor's update elements kept, a fresh random mask
                    per tensor and step, not rescaled (DeepFaceLab's "on": 0.3; 1.0 off).
  optim.lr_cos      the period in steps of a cosine cycle of the learning rate, factor
                    (cos(2π·t/lr_cos) + 1)/2 on the optimizer's own step count t (kept in its
                    state, so a resumed run continues the cycle; DeepFaceLab's "on": 500).
  augment.random_warp False, with liae: inter_AB is frozen (no gradient, update or change of
                    its optimizer moments), as DeepFaceLab trains it only on warped faces.
  gan_power         a U-Net PatchGAN (models/saehd_discriminators.py) on A's masked faces:
                    gan_power · (BCE of its centre and pixel logits against "real"), plus
                    1e-6·total variation of the face and 0.02·MSE outside the mask; the
                    discriminator learns real A faces from reconstructions
                    (tasks/saehd_gan.py, with the figures that show it learning).
  true_face_power   (df) a discriminator on the inter's codes: B's codes are "real", A's
                    "fake", and the generator is pushed to make A's codes look like B's ones
                    (true_face_power · BCE), so swaps keep more of A's look.
Both discriminators train in the same step with the generator's optimizer settings; the
PatchGAN judges A's faces re-rendered by the updated generator (DeepFaceLab's order), the code
discriminator that step's codes.

The gradient is that of the sum over the batch (DeepFaceLab's), the metrics are batch means.
Identity "a" is DeepFaceLab's src (the face put into videos), "b" its dst.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import optax

from facejax import augment, config_check, losses
from facejax.errors import UserError
from facejax.faces.parts import FACE_TYPES
from facejax.models import saehd as saehd_model
from facejax.tasks import common, saehd_gan
from facejax.tasks.protocol import Reference, Task

FIELDS = ("image", "mask", "eyes_mouth")
IDENTITIES = ("a", "b")


def optimizer(config):
    """AdaBelief (DeepFaceLab's default; eps outside the root as there) or Adam, after optional
    global-norm clipping. Optax's AdaBelief corrects its moments' bias, DeepFaceLab's does not
    (its first steps are larger). Learning-rate dropout and the cosine cycle are `_apply`'s."""
    o = config.optim
    lr = common.learning_rate(config)
    if o.name == "adabelief":
        opt = optax.adabelief(lr, b1=o.b1, b2=o.b2, eps=1e-6, eps_root=1e-16)
    elif o.name == "adam":
        opt = optax.adam(lr, b1=o.b1, b2=o.b2)
    else:
        raise ValueError(f"optimizer {o.name!r}: expected adabelief or adam")
    return optax.chain(optax.clip_by_global_norm(o.clip_norm), opt) if o.clip_norm else opt


def init(rng: jax.Array, config) -> dict:
    model = saehd_model.build(config)
    s = config.model.size
    k_d, k_c = (jax.random.fold_in(rng, i) for i in (1, 2))  # the autoencoder's stays rng
    faces = jnp.zeros((1, s, s, 3))
    params = model.init(rng, faces, method=saehd_model.SAEHD.init_all)["params"]
    state = {"params": params, "opt": optimizer(config).init(params),
             "step": jnp.zeros((), jnp.int32)}
    if config.ema:
        state["ema"] = params
    if config.loss.gan_power:
        d = saehd_gan.patch_discriminator(config).init(k_d, faces)["params"]
        state["d"] = {"params": d, "opt": optimizer(config).init(d)}
    if config.loss.true_face_power:
        f = model.apply({"params": params}, faces, method=saehd_model.SAEHD.encode)
        code = model.apply({"params": params}, f, "a", method=saehd_model.SAEHD.code)
        c = saehd_gan.code_discriminator(config).init(k_c, code)["params"]
        state["code_d"] = {"params": c, "opt": optimizer(config).init(c)}
    return state


def _warp(rng, batch, config):
    """Per identity: (warped input, target face, target hull mask, eyes+mouth mask); the
    eyes/mouth mask (the loader's DeepFaceLab mask) is divided by its maximum in the target's
    view, as DeepFaceLab does, where that is above 0."""
    out = {}
    for name, key in zip(IDENTITIES, jax.random.split(rng, len(IDENTITIES))):
        b = batch[name]
        stacked = jnp.stack([b["mask"], b["eyes_mouth"]], -1)
        keys = jax.random.split(key, b["image"].shape[0])
        fn = lambda k, im, m: augment.warp_with_masks(
            k, im, m, config.model.size, config.augment, identity=name)
        warped, target, m = jax.vmap(fn)(keys, b["image"], stacked)
        em = m[..., 1:]
        peak = em.max(axis=(1, 2, 3), keepdims=True)
        out[name] = (warped, target, m[..., :1], jnp.where(peak > 0, em / peak, em))
    return out


def mask_blur(mask, size: int):
    return jnp.clip(losses.gaussian_blur(mask, max(1, size // 32)), 0.0, 0.5) * 2.0


def side_loss(target, pred, target_mask, pred_mask, em, config) -> dict:
    """The per-face loss terms of one side (see the module docstring): {term: [B]}."""
    s = config.model.size
    m = jax.lax.stop_gradient(mask_blur(target_mask, s))
    t, p = target * m, pred * m
    if s < 256:
        structure = 10.0 * losses.dssim(t, p, int(s / 11.6)).mean(-1)
    else:
        structure = 5.0 * (losses.dssim(t, p, int(s / 11.6)).mean(-1)
                           + losses.dssim(t, p, int(s / 23.2)).mean(-1))
    terms = {"dssim": structure,
             "mse": 10.0 * losses.per_example_mean(losses.l2(p, t)),
             "mask": 10.0 * losses.per_example_mean(losses.l2(pred_mask, target_mask))}
    if config.loss.eyes_mouth_weight:
        terms["eyes_mouth"] = config.loss.eyes_mouth_weight * losses.per_example_mean(
            losses.l1(pred * em, target * em))
    return terms


def _forward(params, warped: dict, config):
    """(face, mask) and the code of each side through its own path; the shared encoder runs
    once over both sides' faces, interleaved so a sharded batch stays on its devices."""
    model = saehd_model.build(config)
    a, b = warped["a"], warped["b"]
    x = jnp.stack([a, b], axis=1).reshape((-1,) + a.shape[1:])
    f = model.apply({"params": params}, x, method=saehd_model.SAEHD.encode)
    f = f.reshape((a.shape[0], 2) + f.shape[1:])
    out, codes = {}, {}
    for i, name in enumerate(IDENTITIES):
        codes[name] = model.apply({"params": params}, f[:, i], name,
                                  method=saehd_model.SAEHD.code)
        out[name] = model.apply({"params": params}, codes[name], name,
                                method=saehd_model.SAEHD.decode)
    return out, codes


def loss_fn(params, state: dict, sides: dict, config):
    preds, codes = _forward(params, {n: sides[n][0] for n in IDENTITIES}, config)
    metrics, total = {}, 0.0
    for name in IDENTITIES:
        _, target, mask, em = sides[name]
        face, pmask = preds[name]
        terms = side_loss(target, face, mask, pmask, em, config)
        if name == "a":  # DeepFaceLab's discriminators judge the src side
            inside = jax.lax.stop_gradient(mask_blur(mask, config.model.size))
            terms.update(saehd_gan.adversarial_terms(state, face, target, inside, codes,
                                                     config))
        per_face = sum(terms.values())
        total = total + per_face.sum()
        metrics[f"loss_{name}"] = per_face.mean()
        metrics.update({f"{k}_{name}": v.mean() for k, v in terms.items()})
    metrics["loss"] = metrics["loss_a"] + metrics["loss_b"]
    return total, (metrics, {"face_a": preds["a"][0], "codes": codes})


def _count(opt_state):
    """The optimizer's own step count before this update (AdaBelief's or Adam's `count`)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
        if path and getattr(path[-1], "name", None) == "count":
            return leaf
    raise ValueError("optimizer state without a step count")


def lr_cos_factor(count, period: int):
    """DeepFaceLab's cosine cycle of the learning rate: 1 at count 0, period, …; 0 half-way."""
    return (jnp.cos(2.0 * jnp.pi * count / period) + 1.0) / 2.0


def _under(path, names) -> bool:
    return any(getattr(k, "key", None) in names for k in path)


def _apply(params, opt_state, grads, key, config, frozen=()):
    """One optimizer update, then DeepFaceLab's cosine cycle (`optim.lr_cos`) and learning-rate
    dropout (`optim.lr_dropout`: each update element kept with that probability, a fresh mask
    per tensor, no rescale), which it uses late in a run to sharpen. The top-level parameter
    groups in `frozen` keep their weights and optimizer moments (their gradients must already be
    zero, so the global-norm clip leaves them out); the step count advances."""
    o = config.optim
    updates, new_opt = optimizer(config).update(grads, opt_state, params)
    period = int(o.get("lr_cos", 0))
    if period:
        factor = lr_cos_factor(_count(opt_state), period)
        updates = jax.tree.map(lambda u: u * factor.astype(u.dtype), updates)
    keep = float(o.get("lr_dropout", 1.0))
    if keep < 1.0:
        leaves, tree = jax.tree.flatten(updates)
        keys = jax.random.split(key, len(leaves))
        updates = jax.tree.unflatten(tree, [u * jax.random.bernoulli(k, keep, u.shape)
                                            for k, u in zip(keys, leaves)])
    if frozen:
        # Masking with optax.masked instead would change the state's structure with the
        # switch, and a run could not resume across it.
        updates = {k: jax.tree.map(jnp.zeros_like, v) if k in frozen else v
                   for k, v in updates.items()}
        new_opt = jax.tree_util.tree_map_with_path(
            lambda path, new, old: old if _under(path, frozen) else new, new_opt, opt_state)
    return optax.apply_updates(params, updates), new_opt


def frozen_groups(config) -> tuple:
    """The parameter groups a step leaves as they are: liae's inter_AB while random warp is off
    (DeepFaceLab trains it only on warped faces)."""
    liae = saehd_model.parse_archi(config.model.archi)[0] == "liae"
    return ("inter_ab",) if liae and not config.augment.get("random_warp", True) else ()


def _render_a(params, warped_a, config):
    """A's faces through A's path (the training forward of one side)."""
    model = saehd_model.build(config)
    f = model.apply({"params": params}, warped_a, method=saehd_model.SAEHD.encode)
    code = model.apply({"params": params}, f, "a", method=saehd_model.SAEHD.code)
    return model.apply({"params": params}, code, "a", method=saehd_model.SAEHD.decode)[0]


def _train_discriminators(state, new, sides, rendered, key, config):
    """Updates the discriminators in `state` into `new`; returns (metrics, gradients)."""
    nets = [n for n in ("d", "code_d") if n in state]
    _, target, mask, _ = sides["a"]
    fake = rendered["face_a"]
    if "d" in nets:  # DeepFaceLab's order: the faces of the generator just updated
        fake = _render_a(new["params"], sides["a"][0], config)
    fake, codes = jax.lax.stop_gradient((fake, rendered["codes"]))
    inside = mask_blur(mask, config.model.size)
    (_, metrics), grads = jax.value_and_grad(saehd_gan.discriminator_losses, has_aux=True)(
        {n: state[n]["params"] for n in nets}, target, fake, inside, codes, config)
    for n, k in zip(nets, jax.random.split(key, len(nets))):
        p, o = _apply(state[n]["params"], state[n]["opt"], grads[n], k, config)
        new[n] = {"params": p, "opt": o}
    return metrics, grads


def train_step(state: dict, batch: dict, rng: jax.Array, config):
    rng = jax.random.fold_in(rng, state["step"])
    k_warp, k_drop, k_d = jax.random.split(rng, 3)
    sides = _warp(k_warp, batch, config)
    (_, (metrics, rendered)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"], state, sides, config)
    frozen = frozen_groups(config)
    grads = {k: jax.tree.map(jnp.zeros_like, v) if k in frozen else v for k, v in grads.items()}
    params, opt = _apply(state["params"], state["opt"], grads, k_drop, config, frozen)
    new = {"params": params, "opt": opt, "step": state["step"] + 1}
    if config.ema:
        new["ema"] = optax.incremental_update(params, state["ema"], 1.0 - config.ema)
    all_grads = {"g": grads}
    if "d" in state or "code_d" in state:
        d_metrics, d_grads = _train_discriminators(state, new, sides, rendered, k_d, config)
        metrics.update(d_metrics)
        all_grads.update(d_grads)
    return common.guard_finite(new, metrics, all_grads)


views = common.views


def _mask_views(batch, name, config):
    return common.centre_views(batch[name]["mask"][..., None], config)


def render(state: dict, faces, target: str, config):
    """Faces (float [N, S, S, 3] in [0, 1]) as `target` would look: (face, learned mask)."""
    model = saehd_model.build(config)
    return model.apply({"params": params_of(state)}, faces, target)


def evaluate(state: dict, batch: dict, config) -> dict:
    """Held-out reconstruction loss of each side (no augmentation) and the learned mask's IoU
    with the hull mask (both thresholded at 0.5)."""
    out = {}
    for name in IDENTITIES:
        x, m = views(batch, name, config), _mask_views(batch, name, config)
        face, pmask = render(state, x, name, config)
        terms = side_loss(x, face, m, pmask, jnp.zeros_like(m), config)
        out[f"val_loss_{name}"] = sum(v.mean() for k, v in terms.items() if k != "eyes_mouth")
        hard, phard = m > 0.5, pmask > 0.5
        out[f"val_mask_iou_{name}"] = ((hard & phard).sum() / jnp.maximum((hard | phard).sum(), 1))
    return out


def preview(state: dict, batch: dict, config) -> dict:
    """Per side: input | reconstruction | swap to the other identity | learned mask."""
    out = {}
    for name, other in (("a", "b"), ("b", "a")):
        x = views(batch, name, config)
        rec, mask = render(state, x, name, config)
        swapped, _ = render(state, x, other, config)
        out[name] = jnp.concatenate([x, rec, swapped, jnp.repeat(mask, 3, -1)], axis=2)
    return out


def swap_with_mask(state: dict, faces, direction: str, config):
    """b2a: faces of B rendered as A, with the learned mask; a2b the reverse. In [0, 1]."""
    return render(state, faces, "a" if direction == "b2a" else "b", config)


def swap(state: dict, faces, direction: str, config):
    return swap_with_mask(state, faces, direction, config)[0]


def reconstruct(state: dict, faces, identity: str, config):
    return render(state, faces, identity, config)[0]


def model_region(config) -> float:
    return float(config.augment.region)


def params_of(state: dict) -> dict:
    """The weights inference uses (the moving average where the run keeps one)."""
    return state["ema"] if "ema" in state else state["params"]


def _copy(tree):
    """New buffers: the train step donates the state, and a buffer that stood for both the
    weights and their average would be handed over twice (a crash, not an error)."""
    return jax.tree.map(lambda x: x.copy(), tree)


def resumed(state: dict, added: list) -> dict:
    """A resumed run that switched the weight average on starts it at the weights."""
    return dict(state, ema=_copy(state["params"])) if "ema" in added else state


def with_params(state: dict, params: dict) -> dict:
    return dict(state, params=params, **({"ema": _copy(params)} if "ema" in state else {}))


def reference_args(config) -> list[str]:
    """torch_saehd.py's arguments for the config's archi, size, batch and widths (3 timed steps:
    seconds each on a CPU)."""
    m = config.model
    archi = m.archi.split("-")[0]
    if archi != m.archi:
        raise UserError(f"--config.model.archi={m.archi}: the reference has plain df and liae "
                        "only")
    return ["--archi", archi, "--resolution", str(m.size), "--batch", str(config.batch_size),
            "--ae_dims", str(m.ae_dims), "--e_dims", str(m.e_dims), "--d_dims", str(m.d_dims),
            "--d_mask_dims", str(m.d_mask_dims), "--steps", "3", "--warmup", "1",
            "--threads", str(os.cpu_count() or 1)] + (
                [] if config.loss.eyes_mouth_weight else ["--no-eyes_mouth_prio"])


CONFIG_SCHEMA = {
    **{f"model.{key}": config_check.integer(1) for key in (
        "ae_dims", "e_dims", "d_dims", "d_mask_dims", "code_d_dims")},
    "model.gan_dims": config_check.integer(1, 512),
    "model.gan_patch_size": config_check.integer(0, 640),  # 0: resolution / 8
    "model.face_type": FACE_TYPES,
    "data.mask": ("hull", "xseg"),  # the learned mask and the loss follow it
    "loss.eyes_mouth_weight": config_check.number(0),
    "loss.gan_power": config_check.number(0, 5),
    "loss.true_face_power": config_check.number(0, 1),
    "optim.name": ("adabelief", "adam"),
    "optim.clip_norm": config_check.number(0),
    "optim.lr_dropout": config_check.number(
        0, 1, low_open=True, note="the share of update elements kept, 1.0 off, DeepFaceLab's on "
        "0.3; before issue 31 it was the share dropped, 0.0 off"),
    "optim.lr_cos": config_check.integer(0),
    "ema": config_check.number(0, 0.9999),
}

TASK = Task(
    name="saehd", fields=FIELDS, identities=IDENTITIES, init=init, train_step=train_step,
    evaluate=evaluate, preview=preview,
    preview_columns=("input", "reconstruction", "swap to {other}", "learned mask"),
    params_of=params_of, with_params=with_params,
    swap=swap, reconstruct=reconstruct, views=views, model_region=model_region,
    swap_with_mask=swap_with_mask, resumed=resumed, config_schema=CONFIG_SCHEMA,
    reference=Reference("torch_saehd.py", args=reference_args),
    cpu_convolutions="ynnpack")  # faster than Eigen for these layers (docs/benchmarks.md)
