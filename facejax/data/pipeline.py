"""Input pipeline: faces streamed from disk -> batches as a pure function of (seed, step).

Each identity's faces are a `source.FaceSource`: the ArrayRecord files of the prepared dataset,
read at random and decoded on demand, so memory does not grow with the dataset. Every batch is
drawn by `indices(seed, step)`: the sample order of an epoch is a permutation seeded by (seed,
epoch), so a resumed run sees exactly the batches an uninterrupted run would, with nothing to
replay and no iterator state to checkpoint. `Loader` has Grain prepare the coming steps' batches
(decode, resize, degrade, host augmentation) in worker processes, or in threads of this process
(`workers=0`), in step order; `to_global` turns each process's part into global jax.Arrays
sharded on the mesh's "data" axis.

Two modes for several processes:
- per-process slices (default): each process reads its own disjoint slice of each split and
  draws its part of the global batch from it;
- full (`per_process=False`): every process reads the whole split and takes its part of one
  global batch, so results are the same for any process count.

JAX is imported only where arrays go to devices: the worker processes that unpickle the batch
function load it only when the task's host augmentation they run does.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from facejax.data.source import FaceSource
from facejax.errors import UserError

__all__ = ["FaceSource", "EpochSampler", "YawSampler", "WeightedSampler", "FaceBatches", "Loader",
           "to_global"]


class EpochSampler:
    """Sample indices as a pure function of (seed, step): epochs of seeded permutations."""

    def __init__(self, n: int, batch: int, seed):
        """seed: an int or a tuple of ints (the stream's identity)."""
        if n <= 0:
            raise ValueError("empty table")
        self.n, self.batch = n, batch
        self.seed = tuple(seed) if isinstance(seed, (tuple, list)) else (seed,)
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([*self.seed, epoch]).permutation(self.n)
        return self._perms[epoch]

    def indices(self, step: int) -> np.ndarray:
        pos = step * self.batch + np.arange(self.batch)
        epochs, offsets = pos // self.n, pos % self.n
        return np.array([self._perm(int(e))[o] for e, o in zip(epochs, offsets)])


def degrade(images: np.ndarray, rng: np.random.Generator, prob: float, max_blur: float,
            jpeg_min: int) -> np.ndarray:
    """Random Gaussian blur and JPEG re-encoding, each with probability `prob` per image.

    Makes face sets of different quality look alike (the seeds' answer to mismatched sources).
    """
    out = images.copy()
    for i in range(len(out)):
        if max_blur > 0 and rng.random() < prob:
            out[i] = cv2.GaussianBlur(out[i], (0, 0), rng.uniform(0.3, max_blur))
        if jpeg_min < 100 and rng.random() < prob:
            quality = int(rng.integers(jpeg_min, 101))
            ok, buf = cv2.imencode(".jpg", out[i], [cv2.IMWRITE_JPEG_QUALITY, quality])
            out[i] = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


class YawSampler:
    """Sample indices spread evenly over head yaw (DeepFaceLab's uniform_yaw): each example
    draws one of the non-empty yaw bins, then one record of that bin, both uniformly, as a pure
    function of (seed, step). Bins split [-span, span] radians evenly; yaws beyond fall in the
    end bins. Rare poses are seen as often as common ones."""

    def __init__(self, yaws: np.ndarray, batch: int, seed, bins: int = 128, span: float = 1.2):
        if len(yaws) == 0:
            raise ValueError("empty table")
        edges = np.linspace(-span, span, bins)
        which = np.clip(np.searchsorted(edges, yaws, side="right") - 1, 0, bins - 1)
        self.groups = [np.flatnonzero(which == k) for k in np.unique(which)]
        self.batch = batch
        self.seed = tuple(seed) if isinstance(seed, (tuple, list)) else (seed,)

    def indices(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([*self.seed, step])
        groups = rng.integers(len(self.groups), size=self.batch)
        return np.array([self.groups[g][rng.integers(len(self.groups[g]))] for g in groups])


class WeightedSampler:
    """Sample indices over a source's folders in given shares: each example draws a folder with
    probability proportional to its weight, then one of its records uniformly, both as a pure
    function of (seed, step). A small folder of rare poses or a pretraining set weighs what
    the run says, not what its record count says."""

    def __init__(self, sizes, weights, batch: int, seed):
        self.starts = np.cumsum([0] + list(sizes))[:-1]
        self.sizes = np.asarray(sizes)
        self.p = np.asarray(weights, np.float64) / np.sum(weights)
        self.batch = batch
        self.seed = tuple(seed) if isinstance(seed, (tuple, list)) else (seed,)

    def indices(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([*self.seed, step])
        part = rng.choice(len(self.p), size=self.batch, p=self.p)
        return self.starts[part] + rng.integers(self.sizes[part])


def sampler(source: FaceSource, batch: int, seed, yaw_bins: int = 0):
    """The index sampler of a source: epochs of permutations, in the folders' given shares
    (`source.weights`), or even over yaw (yaw_bins > 0)."""
    if yaw_bins and source.weights:
        raise UserError("--config.data.yaw_bins: draws evenly over yaw, which folder weights "
                        "(@WEIGHT) would override; use one of them")
    if source.weights:
        return WeightedSampler(source.part_sizes(), source.weights, batch, seed)
    if yaw_bins:
        from facejax.faces import landmarks  # dlib: not in the worker processes
        yaws = landmarks.head_yaw(source.landmarks, source.size)
        return YawSampler(yaws, batch, seed, yaw_bins)
    return EpochSampler(len(source), batch, seed)


class FaceBatches:
    """Batches of one or more identities, e.g. {"a": {...}, "b": {...}}, for a given step.

    Args (all but `sources` by keyword):
      sources: name -> FaceSource (this process's slice, or the whole split in full mode).
      global_batch: examples per identity per step, over all processes.
      seed: data seed.
      fields: record fields put in each batch ("image", "mask", "parts", "landmarks", ...).
      process_index, process_count, per_process: see the module docstring.
      degrade: optional dict(prob, max_blur, jpeg_min) applied to "image".
      augment: optional host augmentation, augment(batch, rng) -> batch, with a numpy Generator
        seeded by (seed, step, process), so a resumed run draws the same augmentations. Each
        process draws for its own part, so in full mode the augmentations (unlike the samples)
        depend on the process count; the device placement does not.
      yaw_bins: > 0 draws samples evenly over head yaw in that many bins (`YawSampler`).
    """

    def __init__(self, sources: dict, *, global_batch: int, seed: int, fields=("image", "mask"),
                 process_index: int = 0, process_count: int = 1, per_process: bool = True,
                 degrade: dict | None = None, augment=None, yaw_bins: int = 0):
        if global_batch % process_count:
            raise UserError(f"--config.batch_size={global_batch}: must divide by the "
                            f"{process_count} processes")
        self.sources, self.fields, self.seed = sources, tuple(fields), seed
        self.local = global_batch // process_count
        self.process_index, self.per_process = process_index, per_process
        self.degrade, self.augment = degrade, augment
        self._samplers = {}
        for i, (name, source) in enumerate(sorted(sources.items())):
            if per_process:
                # Each process draws its part from its own slice, with its own stream.
                self._samplers[name] = sampler(source, self.local, (seed, i, process_index),
                                               yaw_bins)
            else:
                self._samplers[name] = sampler(source, global_batch, (seed, i), yaw_bins)

    def __call__(self, step: int) -> dict:
        out = {}
        for i, (name, source) in enumerate(sorted(self.sources.items())):
            idx = self._samplers[name].indices(step)
            if not self.per_process:
                idx = idx[self.process_index * self.local:(self.process_index + 1) * self.local]
            batch = source.take(idx, self.fields)
            if self.degrade and "image" in batch:
                rng = np.random.default_rng([self.seed, step, i, 7])
                batch["image"] = degrade(batch["image"], rng, **self.degrade)
            out[name] = batch
        if self.augment is not None:
            out = self.augment(out, np.random.default_rng([self.seed, step, 13,
                                                           self.process_index]))
        return out


def to_global(batch, sharding):
    """Process-local numpy batch -> global jax.Arrays, batch axis sharded on the mesh
    (a jax.sharding.NamedSharding)."""
    import jax
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def default_workers() -> int:
    """Worker processes when the config leaves it to us (data.workers = -1): half the cores
    this process may use, the other half left to the training step, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, (cores or 2) // 2))


class _Numbered:
    """step -> (step, batches(step)): the map each Grain worker runs."""

    def __init__(self, batches):
        self.batches = batches

    def __call__(self, step) -> tuple:
        return int(step), self.batches(int(step))


def _worker_setup(worker_index: int, worker_count: int) -> None:
    """Runs in each worker process. Interrupts (Ctrl-C reaches the whole process group; a
    cluster's SIGTERM, every process of the job) are the training process's to handle: it
    stops at a step, saves, and closes the loader, which stops the workers. A killed (SIGKILL)
    training process closes nothing, so each worker also ends when its parent is gone."""
    import signal
    import threading
    import time
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="facejax-parent-watch").start()


class Loader:
    """`batches(step)` for steps start..end-1, in order, prepared ahead by Grain.

    workers > 0: that many worker processes, each preparing every workers-th step; 0: threads of
    this process. `depth` batches are kept ready per worker (or in total, without workers).
    Errors in a batch (an unreadable file) are raised by `next`.
    """

    def __init__(self, batches, start_step: int, end_step: int, workers: int = 0,
                 depth: int = 2):
        import grain
        ds = grain.MapDataset.range(start_step, end_step).map(_Numbered(batches))
        # Two threads per process: decoding and resizing in OpenCV release the GIL.
        it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=depth))
        if workers > 0:
            # Batches come back pickled through a pipe rather than in shared memory: no
            # segments left for the resource tracker to reclaim (and warn of) when a run ends,
            # and no limit from a container's small /dev/shm.
            it = grain.experimental.WithOptionsIterDataset(
                it, grain.experimental.DatasetOptions(min_shm_size=2**62))
            from absl import flags
            if not flags.FLAGS.is_parsed():
                # Grain reads its absl flags when it starts workers; a program that is not an
                # absl app (a test, a notebook) has not parsed them: their defaults then.
                flags.FLAGS.mark_as_parsed()
            it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers,
                                                             per_worker_buffer_size=depth),
                                worker_init_fn=_worker_setup)
        self._it = iter(it)

    def next(self):
        """(step, batch) of the next step."""
        return next(self._it)

    def close(self):
        close = getattr(self._it, "close", None)
        if close is not None:
            close()
