"""Checkpoints of the training state: the only module that imports orbax.

Saves go to `<workdir>/checkpoints/<step>`; orbax writes each into a temporary directory and
renames it when complete, so a kill during a save never leaves a checkpoint that gets picked up.
Paths go through etils/epath, so `gs://` and other filesystems work where their plugin is
installed.

A damaged checkpoint (a flipped byte, a truncated or missing array file) is detected: after each
save, process 0 writes `checksums.json` into the step's folder (a CRC-32 of every array's
bytes, with its dtype), and a restore compares the arrays it read against it. A mismatch, or
an error while reading the arrays, is DamagedCheckpoint. Checkpoints written without the file
(before it existed, or by a kill between orbax's save and its write) restore unverified.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import zlib

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from facejax.errors import RunError, UserError, one_line
from facejax.trees import abstract_of, all_finite, shapes_of


class NonFiniteState(Exception):
    """A state with NaN or Inf was about to be saved."""


class SaveFailed(RunError):
    """A checkpoint could not be written (disk full, read-only, ...); earlier ones are kept."""


CHECKSUMS = "checksums.json"


class DamagedCheckpoint(RunError):
    """The checkpoint of `step` reads back other bytes than were saved, or cannot be read."""

    def __init__(self, path, step: int, reason: str, advice: str = ""):
        super().__init__(f"{path}: the checkpoint of step {step} is damaged ({reason})"
                         + (f"; {advice}" if advice else ""))
        self.path, self.step, self.reason = path, step, reason


def checksums(state) -> dict:
    """{leaf path: [dtype, CRC-32 of its bytes]} of a state's arrays that this process holds
    whole (all of them on one host; the replicated ones on several)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if getattr(leaf, "is_fully_addressable", True):
            host = np.asarray(jax.device_get(leaf))
        elif leaf.sharding.is_fully_replicated:
            host = np.asarray(leaf.addressable_data(0))
        else:
            continue  # split over hosts: no process holds it whole
        out[jax.tree_util.keystr(path, simple=True, separator="/")] = [
            str(host.dtype), zlib.crc32(np.ascontiguousarray(host).view(np.uint8).ravel())]
    return out


def _mismatch(saved: dict, state) -> str | None:
    """The first leaf of `state` whose bytes differ from its `saved` checksum, said in words
    (a leaf restored into another dtype than saved is not compared)."""
    for key, (dtype, crc) in checksums(state).items():
        if key in saved and saved[key][0] == dtype and saved[key][1] != crc:
            return f"{key} reads back other bytes than were saved"
    return None


def has_checkpoints(workdir: str) -> bool:
    """Whether `workdir` holds a finished checkpoint (a look at its folder, without orbax: a
    step's folder is named by its number; saves in progress carry a suffix)."""
    folder = epath.Path(workdir) / "checkpoints"
    return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


class Checkpointer:
    """Saves and restores the training state of one workdir."""

    def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
        # orbax wants absolute local paths; URLs (gs://...) pass as they are.
        local = "://" not in workdir
        self.directory = epath.Path(os.path.abspath(workdir) if local else workdir) / "checkpoints"
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=not read_only, read_only=read_only,
            enable_async_checkpointing=False)
        try:
            with _ReadOnlyNoteDropped():
                # The handler named, so that orbax can read a checkpoint's layout
                # (item_metadata) before anything is restored from it.
                self._manager = ocp.CheckpointManager(
                    self.directory, options=options,
                    item_handlers=ocp.StandardCheckpointHandler())
        except (OSError, ValueError) as e:
            raise UserError(f"{self.directory}: cannot use as a checkpoint folder ({e})")
        self._layouts: dict[int, dict] = {}
        self._read_only = read_only

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state) -> None:
        """Saves `state` at `step`. Raises NonFiniteState rather than write NaN/Inf."""
        if not bool(all_finite(state)):
            raise NonFiniteState(f"state at step {step} is not finite; not saved")
        quiet = _QuietOrbaxErrors()
        try:
            self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
            self._manager.wait_until_finished()
            self._write_checksums(step, state)
        except Exception as e:  # orbax and the filesystem raise many kinds
            quiet = None
            kept = [s for s in self.all_steps() if s != step]
            raise SaveFailed(f"{self.directory}: saving the checkpoint of step {step} failed "
                             f"({one_line(e)[:300]}); the run stops, earlier checkpoints "
                             f"{kept or 'none'} are kept") from e
        finally:
            if quiet is not None:
                quiet.close()

    def _write_checksums(self, step: int, state) -> None:
        """Writes the checksums of `state` into the finished folder of `step` (process 0;
        written aside, then renamed, so that a kill leaves none rather than half of one)."""
        if jax.process_index() != 0 or step not in self.all_steps():
            return
        sums = checksums(state)
        folder = self._manager.directory / str(step)
        part = folder / (CHECKSUMS + ".part")
        part.write_text(json.dumps(sums))
        part.rename(folder / CHECKSUMS)

    def _saved_checksums(self, step: int) -> dict | None:
        """The checksums written with the checkpoint of `step`; None for one written without
        them."""
        path = self._manager.directory / str(step) / CHECKSUMS
        if not path.exists():
            return None
        try:
            sums = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DamagedCheckpoint(self.directory / str(step), step,
                                    f"{CHECKSUMS} unreadable: {one_line(e)[:100]}")
        if not isinstance(sums, dict):
            raise DamagedCheckpoint(self.directory / str(step), step, f"{CHECKSUMS} unreadable")
        return sums

    def move_aside(self, step: int) -> epath.Path:
        """Moves the (damaged) checkpoint of `step` out of the way of later saves and of
        orbax's pruning, into WORKDIR/damaged_checkpoints/STEP (a free name): never deleted.
        Returns where it now lies: where it was, for a read-only Checkpointer, which moves
        nothing."""
        if self._read_only:
            return self.directory / str(step)
        aside = self.directory.parent / "damaged_checkpoints"
        target, n = aside / str(step), 1
        while target.exists():
            target, n = aside / f"{step}.{n}", n + 1
        if jax.process_index() == 0:
            aside.mkdir(parents=True, exist_ok=True)
            (self.directory / str(step)).rename(target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"checkpoint {step} moved aside")
        self._manager.reload()
        self._layouts.pop(step, None)
        return target

    def _layout(self, step: int) -> dict:
        """{state part: tree of orbax's array metadata} of the checkpoint at `step` (no array
        is read; read once per step, as a finished checkpoint does not change)."""
        if step not in self._layouts:
            try:
                self._layouts[step] = dict(self._manager.item_metadata(step).tree)
            except (OSError, ValueError, KeyError, AttributeError) as e:
                raise DamagedCheckpoint(self.directory / str(step), step,
                                        f"its layout cannot be read: {one_line(e)[:200]}")
        return self._layouts[step]

    def saved_parts(self, step: int | None = None) -> list[str]:
        """The top-level state parts the checkpoint at `step` (default: the latest) holds."""
        return sorted(self._layout(self.latest_step() if step is None else step))

    def restore(self, abstract_state, step: int | None = None, partial: bool = False):
        """Restores into the structure, dtypes and shardings of `abstract_state` (a dict of
        state parts).

        With `partial`, the checkpoint may hold other top-level parts than `abstract_state`
        (an option that adds one, such as a discriminator, switched on or off since it was
        saved): the parts both hold are restored and returned, the others left out.

        Raises:
          UserError: no checkpoint, or one whose structure or shapes differ (another model).
          DamagedCheckpoint: the arrays read back differ from those saved, or cannot be read.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise UserError(f"{self.directory}: no checkpoint to restore")
        if step not in self.all_steps():
            raise UserError(f"{self.directory}: no checkpoint of step {step} (there are "
                            f"{', '.join(map(str, self.all_steps())) or 'none'})")
        saved = self._layout(step)
        target = dict(abstract_state)
        if partial:
            sharding = jax.tree.leaves(abstract_state)[0].sharding
            target = {part: target[part] if part in target else jax.tree.map(
                          lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                          sub)  # read, then left out: orbax restores whole trees
                      for part, sub in saved.items()}
        theirs, mine = shapes_of(saved), shapes_of(target)
        for key in sorted(set(theirs) | set(mine)):
            if theirs.get(key) != mine.get(key):
                raise UserError(
                    f"{self.directory}/{step}: does not fit this model: {key} is "
                    f"{theirs.get(key, 'absent')} in the checkpoint, "
                    f"{mine.get(key, 'absent')} in the config")
        sums = self._saved_checksums(step)
        quiet = _QuietOrbaxErrors()
        try:
            state = self._manager.restore(step, args=ocp.args.StandardRestore(target))
        except Exception as e:  # the layout fits (checked above): the arrays cannot be read
            quiet = None  # orbax's stragglers log the failure later: the filter stays
            raise DamagedCheckpoint(self.directory / str(step), step,
                                    f"an array cannot be read: {_root_cause(e)}") from e
        finally:
            if quiet is not None:
                quiet.close()
        if sums is not None and (why := _mismatch(sums, state)):
            raise DamagedCheckpoint(self.directory / str(step), step, why)
        return {part: v for part, v in state.items() if part in abstract_state}

    def restore_local(self, shapes, step: int | None = None):
        """Restores into `shapes` (a tree of shapes/dtypes) on this process's first device.

        Works whatever device layout saved the checkpoint (other host or device counts).
        """
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        return self.restore(abstract_of(shapes, device), step)

    def close(self) -> None:
        self._manager.close()


class _ReadOnlyNoteDropped(logging.Filter):
    """orbax warns "Given directory is read only" whenever it is asked to open a checkpoint
    folder read-only, which is what every tool that only restores asks: the note is dropped
    while the manager is made."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Given directory is read only")

    def __enter__(self):
        logging.getLogger("absl").addFilter(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("absl").removeFilter(self)


class _QuietOrbaxErrors(logging.Filter):
    """While saving or restoring: orbax's worker threads (and asyncio, for futures of theirs nobody
    awaited) log a failed write with full tracebacks. The failure reaches the caller as
    SaveFailed, one line with the cause, so those records are dropped; after a failure the
    filter stays, as the stragglers are logged later."""

    def __init__(self):
        super().__init__()
        self._loggers = [logging.getLogger("absl"), logging.getLogger("asyncio")]
        for lg in self._loggers:
            lg.addFilter(self)
        self._hooks = threading.excepthook, sys.unraisablehook
        threading.excepthook = self._thread_hook
        sys.unraisablehook = self._unraisable_hook

    def _thread_hook(self, args):
        if not _from_save_machinery(args.exc_traceback):
            self._hooks[0](args)

    def _unraisable_hook(self, args):
        if not _from_save_machinery(args.exc_traceback):
            self._hooks[1](args)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        return not ("orbax" in record.pathname or "orbax-checkpoint-tmp" in record.getMessage())

    def close(self) -> None:
        for lg in self._loggers:
            lg.removeFilter(self)
        threading.excepthook, sys.unraisablehook = self._hooks


def _root_cause(err: BaseException) -> str:
    """The innermost cause of `err` on one line (TensorStore's status, such as OUT_OF_RANGE,
    rather than orbax's wrapper that prints the whole store spec)."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    return one_line(err).split(" [source locations=")[0][:200]


def _from_save_machinery(tb) -> bool:
    """Whether a traceback runs through orbax or asyncio (the save's worker threads)."""
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if "orbax" in name or os.sep + "asyncio" + os.sep in name:
            return True
        tb = tb.tb_next
    return False

