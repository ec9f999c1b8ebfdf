"""Model families behind one protocol (facejax/tasks/protocol.py). `get(name)` is the only way
in; adding a family is a module here that builds a `Task` and one entry in TASKS."""

from __future__ import annotations

import importlib

from facejax.errors import UserError
from facejax.tasks.protocol import Task

TASKS = ("autoencoder", "pix2pix", "cyclegan", "saehd", "xseg")


def get(name: str) -> Task:
    """The task called `name` (`config.task`)."""
    if name not in TASKS:
        raise UserError(f"--config.task={name}: unknown task; expected one of {', '.join(TASKS)}")
    return importlib.import_module(f"facejax.tasks.{name}").TASK
