"""Model families. Each module exports FIELDS, init, train_step, evaluate and preview.

    init(rng, example_batch, config) -> state          # plain pytree: params, opt, step
    train_step(state, batch, rng, config) -> (state, metrics)
    evaluate(state, batch, config) -> metrics           # held-out batch, no augmentation
    preview(state, batch, config) -> {name: images}     # float32 [N, H, W, 3] in [0, 1]
    host_augment(batch, rng, config) -> batch           # optional: the step's augmentation in
                                                        # numpy, for augment.placement "host"
"""

import importlib

from facejax.errors import UserError

TASKS = ("autoencoder", "pix2pix", "cyclegan")


def get(name: str):
    """The task module called `name`."""
    if name not in TASKS:
        raise UserError(f"--config.task={name}: unknown task; expected one of {', '.join(TASKS)}")
    return importlib.import_module(f"facejax.tasks.{name}")
