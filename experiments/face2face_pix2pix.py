"""face2face with pix2pix: A's landmark drawing -> A's face (U-Net + conditional PatchGAN).

    facejax extract --input=a.mp4 --output=runs/faces_a --size=256
    facejax train --config=face2face_pix2pix \
        --config.data.a=runs/faces_a --workdir=runs/f2f
    facejax reenact --model=runs/f2f --driver=someone_else.mp4 --output=runs/f2f.mp4

Variants (`--config=face2face_pix2pix:VARIANT`):
    default  256 px, batch 1, λ = 100, vanilla GAN, Adam 2e-4 β1 0.5 (the paper's setting)
    small    64 px, batch 4: trains on 2 CPU cores
    tiny     32 px and narrow layers, for tests
"""

import ml_collections

from facejax.experiments import common


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "pix2pix"
    c.seed = 0
    c.model = ml_collections.ConfigDict(dict(
        size=256, g_base=64, d_base=64, max_width=512, d_layers=3, dropout=0.5,
        g_norm="batch", d_norm="batch", conv_impl="auto", compute_dtype="auto"))
    c.loss = ml_collections.ConfigDict(dict(gan_mode="vanilla", l1_weight=100.0))
    c.augment = ml_collections.ConfigDict(dict(
        jitter_scale=286 / 256, flip=0.5,
        placement="auto"))  # "device" (in the train step), "host" (input pipeline) or per backend
    c.data = common.data(load_size=256, identities=("a",))
    c.optim = ml_collections.ConfigDict(dict(learning_rate=2e-4, b1=0.5, b2=0.999,
                                             decay_steps=0))
    common.loop(c, batch_size=1, num_steps=200_000, log_every=100, every=2000, eval_batches=4)
    if variant == "small":
        c.model.size = c.data.load_size = 64
        c.batch_size = 4
        c.num_steps = 2000
        c.log_every, c.eval_every, c.preview_every, c.checkpoint_every = 20, 200, 200, 200
    elif variant == "tiny":
        c.model.update(size=32, g_base=8, d_base=8, max_width=32)
        c.data.load_size = 32
        c.data.workers = 0  # batches of a few tiny faces: threads, no worker processes
        c.batch_size = 4
        c.num_steps = 20
        c.log_every, c.eval_every, c.preview_every, c.checkpoint_every = 5, 10, 10, 5
        c.eval_batches = 2
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r}; expected default, small or tiny")
    return c
