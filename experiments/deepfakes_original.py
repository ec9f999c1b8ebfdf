"""The original deepfakes autoencoder: 64 px, shared encoder, decoders A and B, L1, Adam 5e-5.

Run (after extracting two people with facejax extract):

    facejax train --config=deepfakes_original \
        --config.data.a=runs/faces_a --config.data.b=runs/faces_b --workdir=runs/deepfakes

Variants (`--config=deepfakes_original:VARIANT`):
    default  64 px, batch 16 per face, 100k steps (a real run)
    128      128 px, same widths (no new code)
    quick    the README's main job: 64 px, batch 8, 200 steps (about 10 minutes on 2 CPU cores)
    tiny     32 px and narrow layers, for tests
"""

import ml_collections

from facejax.experiments import common
from facejax import augment


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "autoencoder"
    c.seed = 0
    c.model = ml_collections.ConfigDict(dict(
        size=64,
        encoder_widths=(128, 256, 512, 1024),
        latent=1024,
        code_channels=512,
        decoder_widths=(256, 128, 64),
        conv_impl="auto",          # strided form: "auto" or one of facejax/ops/conv/registry.py
        compute_dtype="auto",      # bfloat16 on a GPU, float32 on the CPU; params stay float32
    ))
    c.augment = augment.default_config()
    # The model sees augment.region of the crop; the original's loss takes the whole view.
    c.data = common.data(load_size=80, mask="")
    c.optim = ml_collections.ConfigDict(dict(learning_rate=5e-5, b1=0.5, b2=0.999))
    common.loop(c, batch_size=16, num_steps=100_000, log_every=50, every=1000, eval_batches=2)
    if variant == "128":
        c.model.size = 128
        c.data.load_size = 160
    elif variant == "quick":
        c.batch_size = 8
        c.num_steps = 200
        c.log_every = 10
        c.eval_every = 50
        c.preview_every = 50
        c.checkpoint_every = 50
    elif variant == "tiny":
        c.model.update(size=32, encoder_widths=(16, 32, 64, 128), latent=64, code_channels=64,
                       decoder_widths=(32, 16, 8))
        c.data.load_size = 40
        c.data.workers = 0  # batches of a few tiny faces: threads, no worker processes
        c.optim.learning_rate = 5e-4
        c.batch_size = 8
        c.num_steps = 20
        c.log_every = 5
        c.eval_every = 10
        c.preview_every = 10
        c.checkpoint_every = 5
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r}; expected default, 128, quick or tiny")
    return c
