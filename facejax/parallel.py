"""Devices and processes: jax.distributed start-up, the data mesh and its shardings."""

from __future__ import annotations

import os

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

DATA = "data"


def initialize(coordinator: str = "", num_processes: int = 0, process_id: int = -1,
               cpu_collectives: str = "gloo", heartbeat_timeout: int = 60) -> None:
    """Starts jax.distributed. Explicit arguments win; otherwise JAX reads the cluster
    environment (SLURM, Cloud TPU, Kubernetes, ...) or FACEJAX_COORDINATOR etc.

    Must run before anything touches a device. A process whose heartbeats stop for
    `heartbeat_timeout` seconds is taken as lost, and the others stop (see facejax/supervise.py).
    """
    coordinator = coordinator or os.environ.get("FACEJAX_COORDINATOR", "")
    num_processes = num_processes or int(os.environ.get("FACEJAX_NUM_PROCESSES", "0"))
    if process_id < 0:
        process_id = int(os.environ.get("FACEJAX_PROCESS_ID", "-1"))
    if cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    kwargs = {"heartbeat_timeout_seconds": heartbeat_timeout}
    if coordinator:
        kwargs.update(coordinator_address=coordinator, num_processes=num_processes,
                      process_id=process_id)
    jax.distributed.initialize(**kwargs)


def make_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D mesh, axis "data", over `devices` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (DATA,), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=devices)


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
    """Leading (batch) axis split over "data"."""
    return NamedSharding(mesh, P(DATA))


def fetch(tree):
    """Device arrays -> host numpy, whole, on every process (batch-sharded arrays gathered).

    With several processes this is a collective: every process must call it.
    """
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)
