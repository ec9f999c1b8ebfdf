"""CycleGAN for faces with face-part attention, 1.5-cycle terms, pixel dropout and image pools.

    facejax train --config=cyclegan_faces \
        --config.data.a=runs/faces_a --config.data.b=runs/faces_b --workdir=runs/cyclegan

Variants (`--config=cyclegan_faces:VARIANT`):
    default  128 px, 6 residual blocks (CPU-friendly)
    256      256 px, 9 residual blocks (pytorch-CycleGAN-and-pix2pix's resnet_9blocks)
    tiny     32 px, narrow, for tests
Swap for conversion: G_ba turns faces of B into A ("b2a").
"""

import ml_collections

from facejax.experiments import common


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "cyclegan"
    c.seed = 0
    c.model = ml_collections.ConfigDict(dict(
        size=128, g_base=64, d_base=64, max_width=512, d_layers=3, n_blocks=0,  # 0: by size
        conv_impl="auto", compute_dtype="auto",
        # The residual 3×3s: "auto" (at most F(3×3) Winograd tiles on CPU, XLA's own
        # elsewhere) or a stride-1 form of facejax/ops/conv/registry.py ("xla": shorter compile).
        conv1_impl="auto"))
    c.loss = ml_collections.ConfigDict(dict(
        gan_mode="lsgan", c_gan=1.0, c_cycle=10.0, c_attention=5.0, c_multi=5.0,
        c_multi_gan=0.5, c_identity=0.0))
    c.pixel_dropout = 0.1
    c.pool_size = 50
    c.augment = ml_collections.ConfigDict(dict(flip=True))
    c.data = common.data(load_size=128)
    c.optim = ml_collections.ConfigDict(dict(learning_rate=2e-4, b1=0.5, b2=0.999,
                                             decay_steps=100_000))
    common.loop(c, batch_size=1, num_steps=200_000, log_every=100, every=2000, eval_batches=4)
    if variant == "256":
        c.model.size = c.data.load_size = 256
    elif variant == "tiny":
        c.model.update(size=32, g_base=8, d_base=8, max_width=32, n_blocks=2)
        c.data.load_size = 32
        c.data.workers = 0  # batches of a few tiny faces: threads, no worker processes
        c.pool_size = 8
        c.batch_size = 4
        c.num_steps = 20
        c.optim.decay_steps = 0
        c.log_every, c.eval_every, c.preview_every, c.checkpoint_every = 5, 10, 10, 5
        c.eval_batches = 2
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r}; expected default, 256 or tiny")
    return c
