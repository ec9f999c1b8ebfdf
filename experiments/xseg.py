"""XSeg: DeepFaceLab's segmentation network, trained to mark the visible face of each crop.

Run (after extracting faces with facejax extract and labelling some of them in masks.jsonl):

    facejax train --config=xseg --config.data.a=runs/faces_a --workdir=runs/xseg

Without labels, the generic model learns the landmark hull with synthetic occluders cut out:

    facejax train --config=xseg:generic --config.data.a=runs/faces_a,runs/faces_b \
        --workdir=runs/xseg_generic

then `facejax xseg apply --model=runs/xseg --faces=runs/faces_a` writes its masks.

Variants (`--config=xseg:VARIANT`):
    default  256 px, base width 32 (DeepFaceLab's), batch 4, trained on the labelled faces of
             data.a (masks.jsonl), DeepFaceLab's augmentations and random pasted occluders
    generic  the same network on every face of data.a, the hull minus pasted occluders as label
             (occluders on 90% of the faces); give it faces of many people: on unseen faces
             it learned more from 13 clips than from 4 (docs/benchmarks.md)
    tiny     64 px, base width 4, for tests (generic labels)
"""

import ml_collections

from facejax.experiments import common
from facejax import augment


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "xseg"
    c.seed = 0
    c.model = ml_collections.ConfigDict(dict(
        size=256,
        base=32,                   # DeepFaceLab's base width (widths B, 2B, 4B, 8B, 8B, 8B)
        dense=512,                 # the bottleneck's width
        conv_impl="auto",
        compute_dtype="auto",
    ))
    c.augment = augment.default_config("dfl")
    c.augment.update(dict(
        region=1.0,         # the model sees the whole extracted crop
        rotation=20.0,      # DeepFaceLab's XSeg draws: rotation ±20°, scale ±15%, shift ±5%
        flip_a=0.5,
        placement="host",   # pasting occluders is numpy work: always in the input pipeline
    ))
    c.augment.occluders = 0.5  # share of faces that get a pasted occluder
    c.augment.colour = 0.5     # share of faces with a colour change
    c.augment.blur = 0.25      # share of faces blurred
    c.augment.max_blur = 2.0   # the largest blur sigma, pixels
    c.data = common.data(load_size=256, identities=("a",))
    # The faces' masks: "labels" trains on the labelled faces of masks.jsonl only, "hull" on
    # every face with its landmark hull (the generic model).
    c.data.labels = "labels"
    c.optim = ml_collections.ConfigDict(dict(learning_rate=1e-4, rho=0.9))
    common.loop(c, batch_size=4, num_steps=100_000, log_every=50, every=1000, eval_batches=2)
    if variant == "generic":
        c.data.labels = "hull"
        c.batch_size = 8
        # Every label is a hull: the occluders are all there is to learn beyond it, so most
        # faces get one (0.9 against 0.5 scored higher on unseen faces: docs/benchmarks.md).
        c.augment.occluders = 0.9
    elif variant == "tiny":
        c.model.update(size=64, base=4, dense=32)
        c.data.load_size = 64
        c.data.labels = "hull"
        c.data.workers = 0
        c.optim.learning_rate = 1e-3
        c.batch_size = 4
        c.num_steps = 20
        c.log_every = 5
        c.eval_every = 10
        c.preview_every = 10
        c.checkpoint_every = 5
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r}; expected default, generic or tiny")
    return c
