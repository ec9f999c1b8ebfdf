"""SAEHD's discriminators (tasks/saehd.py): the U-Net PatchGAN on A's masked faces and, for df,
the true-face discriminator on the inter's codes. The generator's adversarial terms, the
discriminators' own losses, and the figures that show whether the PatchGAN learns.

The PatchGAN's loss (DeepFaceLab's, kept as `d_loss`) is 0.5·(BCE(real, 1) + BCE(fake, 0)) of
its centre and pixel heads, chance 2·ln 2. Its inputs are masked, so outside the blurred mask
real and fake are both zero and the logits there cannot beat chance: `d_loss` moves little even
while the discriminator learns. Its learning shows in the pixel head inside the mask (m > 0):

    d_loss_inside   the pixel head's loss there (chance ln 2)
    d_logit_gap     mean logit on real faces minus mean logit on fakes there
    d_acc           share of those logits on the right side of 0, real and fake together
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from facejax import losses
from facejax.models import saehd as saehd_model
from facejax.models import saehd_discriminators as discriminators


def patch_discriminator(config) -> discriminators.UNetPatchDiscriminator:
    m = config.model
    return discriminators.UNetPatchDiscriminator(
        patch_size=m.gan_patch_size or m.size // 8, base=m.gan_dims,
        conv_impl=m.get("conv_impl", "auto"), dtype=saehd_model.compute_dtype(m))


def code_discriminator(config) -> discriminators.CodeDiscriminator:
    if saehd_model.parse_archi(config.model.archi)[0] != "df":
        raise ValueError("true_face_power needs archi df (liae has no shared code to "
                         "discriminate), as in DeepFaceLab")
    return discriminators.CodeDiscriminator(config.model.code_d_dims,
                                            saehd_model.compute_dtype(config.model))


def bce(logits, label: float) -> jax.Array:
    """Per face: the mean binary cross-entropy of a discriminator's logits against `label`."""
    return losses.per_example_mean(losses.bce_with_logits(logits, label))


def adversarial_terms(state: dict, face, target, inside, codes: dict, config) -> dict:
    """The generator's GAN and true-face terms, per face [B]; `inside` is the blurred mask of
    the target (tasks/saehd.py's module docstring)."""
    terms = {}
    if config.loss.gan_power:
        logits = patch_discriminator(config).apply({"params": state["d"]["params"]},
                                                   face * inside)
        outside = 1.0 - inside
        terms["gan"] = (config.loss.gan_power * sum(bce(x, 1.0) for x in logits)
                        + 1e-6 * losses.total_variation_sq(face)
                        + 0.02 * losses.per_example_mean(
                            jnp.square(face * outside - target * outside)))
    if config.loss.true_face_power:
        logits = code_discriminator(config).apply({"params": state["code_d"]["params"]},
                                                  codes["a"])
        terms["true_face"] = config.loss.true_face_power * bce(logits, 1.0)
    return terms


def pixel_figures(real, fake, inside) -> dict:
    """d_loss_inside, d_logit_gap and d_acc (module docstring) of the pixel head's logits on
    real and fake faces [B, S, S, 1], over the pixels where the blurred mask `inside` > 0."""
    real, fake = jax.lax.stop_gradient((real, fake))
    w = (inside > 0).astype(jnp.float32)
    n = jnp.maximum(w.sum(), 1.0)
    mean = lambda x: (x * w).sum() / n
    loss = 0.5 * (losses.bce_with_logits(real, 1.0) + losses.bce_with_logits(fake, 0.0))
    return {"d_loss_inside": mean(loss), "d_logit_gap": mean(real) - mean(fake),
            "d_acc": 0.5 * (mean((real > 0).astype(jnp.float32))
                            + mean((fake < 0).astype(jnp.float32)))}


def discriminator_losses(d_params: dict, real_a, fake_a, inside, codes: dict, config):
    """(sum over faces, metrics) of the discriminators: real A faces `real_a` against the
    generator's `fake_a` (both unmasked; `inside` is the blurred mask), and B's codes against
    A's."""
    total, metrics = 0.0, {}
    if "d" in d_params:
        net = patch_discriminator(config)
        real = net.apply({"params": d_params["d"]}, real_a * inside)
        fake = net.apply({"params": d_params["d"]}, fake_a * inside)
        per_face = sum(0.5 * (bce(r, 1.0) + bce(f, 0.0)) for r, f in zip(real, fake))
        total, metrics["d_loss"] = total + per_face.sum(), per_face.mean()
        metrics.update(pixel_figures(real[1], fake[1], inside))
    if "code_d" in d_params:
        net = code_discriminator(config)
        real = net.apply({"params": d_params["code_d"]}, codes["b"])
        fake = net.apply({"params": d_params["code_d"]}, codes["a"])
        per_face = 0.5 * (bce(real, 1.0) + bce(fake, 0.0))
        total, metrics["d_code_loss"] = total + per_face.sum(), per_face.mean()
    return total, metrics
