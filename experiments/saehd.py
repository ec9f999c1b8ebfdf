"""DeepFaceLab's SAEHD: df or liae networks with a learned mask, DSSIM + MSE in the face mask,
eyes/mouth priority, AdaBelief.

    facejax train --config=saehd \
        --config.data.a=runs/faces_a --config.data.b=runs/faces_b --workdir=runs/saehd
    # archi options as DeepFaceLab's: --config.model.archi=liae-ud (u: pixel-normed code,
    # d: code at R/32 and a depth-to-space output, t: deeper encoder and decoder)

The model sees DeepFaceLab's face type (model.face_type; full face by default): the loader
re-cuts each extracted face to that square grown by 1/augment.region (the margin random
transforms draw on) at data.load_size px, and the model's un-augmented view is the square
itself. Extraction's default --coverage holds full face and narrower; whole face needs
--coverage=0.52 or less, head 0.30 (facejax warns when the crops are too tight).
Augmentation is DeepFaceLab's (augment.kind=dfl): rotation ±10°, scale 1/1.15 to 1.15, shift
±5%, flips of B's faces only (flip_a 0, flip_b 0.4) and its random warp
(--config.augment.random_warp=False turns it off).

Variants (`--config=saehd:VARIANT`):
    df128    (default) 128 px, batch 8 per face, ae 256, e 64, d 64, mask 22 (DeepFaceLab's)
    liae128  the same with liae
    df256    256 px, batch 4 (two DSSIM window sizes from 256 px)
    df64     64 px, batch 16, widths and learning rate sized for a short budget at 64 px (ae 128,
             e/d 32, mask 16, AdaBelief 2e-4 clipped at norm 1): the equal-budget comparison
             with deepfakes_original, whose step it matches in cost
    tiny     32 px and narrow layers, for tests
"""

import ml_collections

from facejax.experiments import common
from facejax import augment


def get_config(variant: str = "df128") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "saehd"
    c.seed = 0
    c.model = ml_collections.ConfigDict(dict(
        archi="df", size=128, ae_dims=256, e_dims=64, d_dims=64, d_mask_dims=22,
        face_type="full",   # half, mid, full, whole or head, framed as DeepFaceLab frames them
        conv_impl="auto", compute_dtype="auto",
        gan_dims=16,        # the U-Net PatchGAN's base width (DeepFaceLab: 16)
        gan_patch_size=0,   # its receptive field in pixels; 0: resolution / 8 (DeepFaceLab's)
        code_d_dims=256))   # the true-face code discriminator's base width (DeepFaceLab: 256)
    c.loss = ml_collections.ConfigDict(dict(
        eyes_mouth_weight=300.0,
        gan_power=0.0,        # DeepFaceLab: 0.1 once the face is trained, random warp off
        true_face_power=0.0))  # df only; DeepFaceLab suggests 0.01
    # DeepFaceLab's view, flips and warp; --config.augment.random_warp=False turns the warp off
    c.augment = augment.default_config("dfl")
    c.data = common.data(load_size=160, mask="hull")
    c.optim = ml_collections.ConfigDict(dict(
        name="adabelief", learning_rate=5e-5, b1=0.9, b2=0.999, decay_steps=0,
        clip_norm=0.0,     # global-norm gradient clipping (DeepFaceLab's clipgrad: 1.0); 0 off
        lr_dropout=1.0,    # share of update elements kept each step (DeepFaceLab's on: 0.3); 1 off
        lr_cos=0))         # period in steps of the rate's cosine cycle (DeepFaceLab's on: 500)
    c.ema = 0.0            # decay of a moving average of the weights for inference; 0 off
    common.loop(c, batch_size=8, num_steps=100_000, log_every=20, every=500, eval_batches=2)
    if variant == "liae128":
        c.model.archi = "liae"
    elif variant == "df256":
        c.model.size, c.data.load_size, c.batch_size = 256, 320, 4
    elif variant == "df64":
        c.model.size, c.data.load_size, c.batch_size = 64, 80, 16
        # DeepFaceLab's widths at 64 px cost 2.6 autoencoder steps each: at an equal budget the
        # narrower model gets as many steps, and a higher rate (clipped) learns in fewer.
        c.model.update(ae_dims=128, e_dims=32, d_dims=32, d_mask_dims=16)
        c.optim.update(learning_rate=2e-4, clip_norm=1.0)
    elif variant == "tiny":
        c.model.update(size=32, ae_dims=32, e_dims=8, d_dims=8, d_mask_dims=4, gan_dims=4,
                       code_d_dims=8)
        c.data.load_size = 40
        c.data.workers = 0  # batches of a few tiny faces: threads, no worker processes
        c.optim.learning_rate = 5e-4
        c.num_steps = 20
        c.log_every, c.eval_every, c.preview_every, c.checkpoint_every = 5, 10, 10, 5
    elif variant != "df128":
        raise ValueError(f"unknown variant {variant!r}; expected df128, liae128, df256, df64 or "
                         "tiny")
    return c
