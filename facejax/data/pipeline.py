"""Input pipeline: TFDS records -> per-process tables -> batches as a pure function of (seed, step).

TFDS and tf.data read and decode the prepared dataset once per process (resized to the load
size) into an in-memory table. Every batch is then drawn by `indices(seed, step)`: the sample
order of an epoch is a permutation seeded by (seed, epoch), so a resumed run sees exactly the
batches an uninterrupted run would, with nothing to replay. A background thread prepares the next
batches while the device trains; `to_global` turns each process's part into global jax.Arrays
sharded on the mesh's "data" axis.

Two modes for several processes:
- per-process slices (default): each process reads its own disjoint slice of the split
  (`tfds.split_for_jax_process`) and draws its part of the global batch from it;
- full (`per_process=False`): every process reads the whole split and takes its part of one
  global batch, so results are the same for any process count (small datasets).

Memory: N × load_size² × (3 + 1) bytes per table, plus the landmark image when asked for.
"""

from __future__ import annotations

import dataclasses
import queue
import threading

import cv2
import jax
import numpy as np

from facejax.data import tfds_faces
from facejax.errors import UserError
from facejax.faces import landmarks


@dataclasses.dataclass
class FaceTable:
    """Decoded records of one split, resized to `size`."""
    image: np.ndarray           # uint8 [N, S, S, 3]
    mask: np.ndarray            # uint8 [N, S, S]
    parts: np.ndarray           # uint8 [N, S, S, 4]
    landmarks: np.ndarray       # float32 [N, 68, 2] in the resized crop's pixels
    landmark_image: np.ndarray | None  # uint8 [N, S, S, 3]
    frame: np.ndarray           # int64 [N]
    identity: str

    def __len__(self) -> int:
        return len(self.image)

    def take(self, idx: np.ndarray, fields) -> dict:
        return {f: getattr(self, f)[idx] for f in fields}


def load_table(extraction_dir: str, split: str, size: int, *, landmark_image: bool = False,
               process_index: int = 0, process_count: int = 1, per_process: bool = True,
               data_dir: str | None = None) -> FaceTable:
    """Reads one split of an extraction directory into memory at `size`×`size`.

    Raises:
      UserError: the directory is not usable or the split is empty for this process.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds_faces.builder(extraction_dir, data_dir)
    if builder.size < size:
        raise UserError(f"{extraction_dir}: faces were extracted at {builder.size} px, smaller "
                        f"than the {size} px this experiment loads (--config.data.load_size); "
                        f"extract again with --size={size} or more")
    if split not in builder.info.splits or builder.info.splits[split].num_examples == 0:
        raise UserError(f"{extraction_dir}: split '{split}' holds no faces")
    read = split
    if per_process and process_count > 1:
        read = tfds.split_for_jax_process(split, process_index=process_index,
                                          process_count=process_count)
    ds = builder.as_dataset(split=read, shuffle_files=False)

    def resize(ex):
        out = {"image": tf.image.resize(ex["image"], (size, size), "area"),
               "mask": tf.image.resize(ex["mask"], (size, size), "area")[..., 0],
               "parts": tf.image.resize(ex["parts"], (size, size), "area"),
               "landmarks": ex["landmarks"] * (size / builder.size),
               "frame": ex["frame"], "identity": ex["identity"]}
        if landmark_image:
            out["landmark_image"] = tf.image.resize(ex["landmark_image"], (size, size), "area")
        for k in ("image", "mask", "parts", "landmark_image"):
            if k in out:
                out[k] = tf.cast(tf.round(out[k]), tf.uint8)
        return out

    ds = ds.map(resize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(256)
    try:
        parts = list(tfds.as_numpy(ds))
    except tf.errors.OpError as e:  # a missing, truncated or corrupt shard
        msg = " ".join(str(e.message).split())[:300]
        raise UserError(f"{extraction_dir}: the prepared dataset at {builder.data_dir} is "
                        f"unreadable ({msg}); delete that folder to rebuild it")
    if not parts:
        raise UserError(f"{extraction_dir}: split '{read}' holds no faces for process "
                        f"{process_index}")
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    ids = sorted(set(x.decode() for x in cat["identity"]))
    return FaceTable(cat["image"], cat["mask"], cat["parts"], cat["landmarks"].astype(np.float32),
                     cat.get("landmark_image"), cat["frame"], ",".join(ids))


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


def sampler(table: FaceTable, batch: int, seed, yaw_bins: int = 0):
    """The index sampler of a table: epochs of permutations, or even over yaw (yaw_bins > 0)."""
    if yaw_bins:
        yaws = landmarks.head_yaw(table.landmarks, table.image.shape[1])
        return YawSampler(yaws, batch, seed, yaw_bins)
    return EpochSampler(len(table), batch, seed)


class FaceBatches:
    """Batches of one or more identities, e.g. {"a": {...}, "b": {...}}, for a given step.

    Args:
      tables: name -> FaceTable (this process's slice, or the whole split in full mode).
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

    def __init__(self, tables: dict, global_batch: int, seed: int, fields=("image", "mask"),
                 process_index: int = 0, process_count: int = 1, per_process: bool = True,
                 degrade: dict | None = None, augment=None, yaw_bins: int = 0):
        if global_batch % process_count:
            raise UserError(f"--config.batch_size={global_batch}: must divide by the "
                            f"{process_count} processes")
        self.tables, self.fields, self.seed = tables, tuple(fields), seed
        self.local = global_batch // process_count
        self.process_index, self.per_process = process_index, per_process
        self.degrade, self.augment = degrade, augment
        self._samplers = {}
        for i, (name, table) in enumerate(sorted(tables.items())):
            if per_process:
                # Each process draws its part from its own slice, with its own stream.
                self._samplers[name] = sampler(table, self.local, (seed, i, process_index),
                                               yaw_bins)
            else:
                self._samplers[name] = sampler(table, global_batch, (seed, i), yaw_bins)

    def __call__(self, step: int) -> dict:
        out = {}
        for i, (name, table) in enumerate(sorted(self.tables.items())):
            idx = self._samplers[name].indices(step)
            if not self.per_process:
                idx = idx[self.process_index * self.local:(self.process_index + 1) * self.local]
            batch = table.take(idx, self.fields)
            if self.degrade and "image" in batch:
                rng = np.random.default_rng([self.seed, step, i, 7])
                batch["image"] = degrade(batch["image"], rng, **self.degrade)
            out[name] = batch
        if self.augment is not None:
            out = self.augment(out, np.random.default_rng([self.seed, step, 13,
                                                           self.process_index]))
        return out


def to_global(batch, sharding: jax.sharding.NamedSharding):
    """Process-local numpy batch -> global jax.Arrays, batch axis sharded on the mesh."""
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


class Prefetcher:
    """Prepares `batches(step)` for the next steps in a background thread."""

    def __init__(self, batches, start_step: int, end_step: int, depth: int = 3):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(batches, start_step, end_step),
                                        daemon=True)
        self._thread.start()

    def _run(self, batches, start, end):
        try:
            for step in range(start, end):
                item = (step, batches(step))
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as e:  # surfaced in the consumer
            self._queue.put((None, e))

    def next(self):
        step, item = self._queue.get()
        if step is None:
            raise item
        return step, item

    def close(self):
        self._stop.set()
