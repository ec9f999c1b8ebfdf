"""An extraction folder as the studio reads and edits it: its face records by id, each face's
crop, and deleting faces to `DIR/trash/` with an undo.

Deleting faces (`delete`) moves their crops to `DIR/trash/<batch>/faces/<key>/`, keeps each
touched input's alignments.jsonl as it was in `DIR/trash/<batch>/alignments/<key>.jsonl`, and
rewrites that input's alignments.jsonl and the merged `DIR/alignments.jsonl` atomically without
them. The dataset fingerprint hashes each input's alignments.jsonl, so the next run prepares the
dataset again. `undo` takes the newest batch back: the crops move home, each input's file gets
its old bytes again (where nothing else changed it since; otherwise the lines go back in frame
order), so the fingerprint, and the prepared dataset it names, are the old ones again. A
deleted face's mask label leaves `DIR/masks.jsonl` for `DIR/trash/<batch>/masks.jsonl` (XSeg
trains on the labels of faces that are there) and comes back with undo.

Every write holds the folder's lock (facejax/lock.py, the one extraction takes), so a second
studio or an extraction on the same folder is refused with a line naming the holder rather than
interleaving with it; every change re-reads the files under the lock, so what another studio
did in between is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import threading

from facejax import files
from facejax.data import extract
from facejax.errors import UserError
from facejax.faces import mask_labels
from facejax.lock import FolderLock

TRASH = "trash"
# A record id as extraction writes it: `<input key>/<frame, 6 digits>`; the key is a sanitised
# base name plus a hash, never a path.
_FACE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[0-9]{6}$")
_BATCH = re.compile(r"^[0-9]{6}$")


class FolderBusy(UserError):
    """The folder is held by another writer (another studio, an extraction)."""


def check_face_id(face: str) -> str:
    """`face` if it has the form of a record id (no separators beyond the one, no `..`).

    Raises:
      UserError: anything else (a path from a browser, say).
    """
    if not isinstance(face, str) or not _FACE_ID.match(face) or ".." in face:
        raise UserError(f"{face!r}: not a face id (<input key>/<frame>)")
    return face


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _record_id(line: bytes) -> str:
    return json.loads(line)["record"]


class FaceSet:
    """One extraction folder: `records()` {face id: record}, `crop(face)` its PNG's path,
    `delete(faces)` and `undo()`."""

    def __init__(self, folder: str, flag: str = "--faces"):
        self.folder = os.path.abspath(folder)
        self.inputs_dir = os.path.join(self.folder, extract.INPUTS)
        if not os.path.isfile(os.path.join(self.folder, extract.CONFIG_FILE)) or not (
                os.path.isdir(self.inputs_dir)):
            raise UserError(f"{flag} {folder}: not an extraction folder (no "
                            f"{extract.CONFIG_FILE} and inputs/; run facejax extract)")
        config = files.read_json(os.path.join(self.folder, extract.CONFIG_FILE),
                                 "the extraction settings")
        self.size = int(config["size"])
        self._thread_lock = threading.Lock()
        self.records()  # a malformed alignments.jsonl is named at start-up

    def _alignments(self, key: str) -> str:
        return os.path.join(self.inputs_dir, key, "alignments.jsonl")

    def _keys(self) -> list[str]:
        return sorted(k for k in os.listdir(self.inputs_dir)
                      if os.path.isfile(self._alignments(k)))

    def records(self) -> dict[str, dict]:
        """{face id: its alignments record, with "key"}, in input then file order.

        Raises:
          UserError: a line that is not a face record, named file:line.
        """
        out = {}
        for key in self._keys():
            path = self._alignments(key)
            with open(path, "rb") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        check_face_id(rec["record"])
                    except (ValueError, KeyError, TypeError, UserError) as e:
                        raise UserError(f"{path}:{n}: not a face record ({e})")
                    rec["key"] = key
                    out[rec["record"]] = rec
        return out

    def crop(self, face: str) -> str:
        """The crop PNG of `face`, checked to be a record id that resolves inside the folder.

        Raises:
          UserError: not a face id, or one whose path would leave the folder.
        """
        path = os.path.realpath(mask_labels.crop_path(self.folder, check_face_id(face)))
        if not path.startswith(os.path.realpath(self.inputs_dir) + os.sep):
            raise UserError(f"{face!r}: not a face of {self.folder}")
        return path

    @contextlib.contextmanager
    def writing(self):
        """Holds the folder for a change: this process's writers one at a time, other
        processes (another studio, an extraction) refused with a line naming the holder."""
        with self._thread_lock:
            try:
                lock = FolderLock(self.folder, ".lock", what="extraction folder")
            except UserError as e:
                raise FolderBusy(str(e))
            try:
                yield
            finally:
                lock.release()

    # ---- delete and undo ---------------------------------------------------------------------

    def _trash(self) -> str:
        return os.path.join(self.folder, TRASH)

    def batches(self) -> list[str]:
        """The trash batches, oldest first (the names are increasing numbers)."""
        if not os.path.isdir(self._trash()):
            return []
        return sorted(b for b in os.listdir(self._trash()) if _BATCH.match(b))

    def delete(self, faces: list[str]) -> dict:
        """Moves `faces` to a new trash batch and rewrites the alignments without them.

        Raises:
          UserError: a bad id, a face not in the folder (deleted elsewhere since), or the
            folder held by another process.
        """
        wanted = {check_face_id(f) for f in faces}
        if not wanted:
            raise UserError("no faces given to delete")
        with self.writing():
            by_key = {}
            for face in sorted(wanted):
                by_key.setdefault(face.rpartition("/")[0], set()).add(face)
            old, new = {}, {}
            for key, ids in by_key.items():
                path = self._alignments(key)
                if not os.path.isfile(path):
                    raise UserError(f"{sorted(ids)[0]}: no such input in {self.folder}")
                with open(path, "rb") as f:
                    old[key] = f.read()
                lines = old[key].splitlines(keepends=True)
                kept = [l for l in lines if not l.strip() or _record_id(l) not in ids]
                if len(lines) - len(kept) != len(ids):
                    found = {_record_id(l) for l in lines if l.strip()}
                    raise UserError(f"{sorted(ids - found)[0]}: not a face of {self.folder} "
                                    "(deleted since the page was loaded?); reload the page")
                new[key] = b"".join(kept)
            labels = mask_labels.read(self.folder)
            moved = {f: labels.pop(f) for f in sorted(wanted) if f in labels}
            batch = self._write_batch(wanted, old, new, moved)
            for key, data in new.items():
                files.atomic_write_bytes(self._alignments(key), data)
            extract.merge(self.folder)
            if moved:  # a label of a face that is gone would stop XSeg's training
                mask_labels.write(self.folder, labels)
            for face in sorted(wanted):
                src = mask_labels.crop_path(self.folder, face)
                if os.path.exists(src):
                    dst = self._trashed_crop(batch, face)
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    os.replace(src, dst)
        return {"batch": os.path.basename(batch), "deleted": len(wanted)}

    def _trashed_crop(self, batch: str, face: str) -> str:
        key, _, frame = face.rpartition("/")
        return os.path.join(batch, "faces", key, f"{frame}.png")

    def _write_batch(self, faces: set, old: dict, new: dict, labels: dict) -> str:
        """The batch folder holding what undo needs (the old alignments, the deleted faces'
        mask labels), complete before anything else changes: written under a temporary name,
        then renamed."""
        batches = self.batches()
        name = f"{int(batches[-1]) + 1 if batches else 1:06d}"
        final = os.path.join(self._trash(), name)
        partial = os.path.join(self._trash(), f".partial-{name}")
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(os.path.join(partial, "alignments"))
        for key, data in old.items():
            files.atomic_write_bytes(os.path.join(partial, "alignments", f"{key}.jsonl"), data)
        if labels:
            mask_labels.write(partial, labels)
        files.write_json(os.path.join(partial, "manifest.json"), {
            "faces": sorted(faces), "after": {k: _sha1(v) for k, v in new.items()}})
        os.replace(partial, final)
        return final

    def undo(self) -> dict:
        """Takes the newest trash batch back.

        Raises:
          UserError: nothing to undo, or the folder held by another process.
        """
        with self.writing():
            batches = self.batches()
            if not batches:
                raise UserError(f"{self.folder}: nothing to undo (the trash is empty)")
            batch = os.path.join(self._trash(), batches[-1])
            manifest = files.read_json(os.path.join(batch, "manifest.json"), "a trash batch")
            for face in manifest["faces"]:
                src, dst = self._trashed_crop(batch, face), mask_labels.crop_path(self.folder,
                                                                                   face)
                if os.path.exists(src) and not os.path.exists(dst):
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    os.replace(src, dst)
            for key, after in manifest["after"].items():
                self._restore_alignments(batch, key, after)
            extract.merge(self.folder)
            trashed_labels = mask_labels.read(batch)
            if trashed_labels:
                mask_labels.write(self.folder, {**mask_labels.read(self.folder), **trashed_labels})
            shutil.rmtree(batch)
            with contextlib.suppress(OSError):
                os.rmdir(self._trash())  # only when empty: the folder as it was
        return {"batch": batches[-1], "restored": len(manifest["faces"])}

    def _restore_alignments(self, batch: str, key: str, after: str) -> None:
        with open(os.path.join(batch, "alignments", f"{key}.jsonl"), "rb") as f:
            before = f.read()
        path = self._alignments(key)
        with open(path, "rb") as f:
            now = f.read()
        if _sha1(now) == after:  # unchanged since the delete: its bytes exactly
            files.atomic_write_bytes(path, before)
            return
        # Changed since (another delete): the lines of both, once each, in frame order.
        lines = {_record_id(l): l for l in now.splitlines(keepends=True) if l.strip()}
        for line in before.splitlines(keepends=True):
            if line.strip():
                lines.setdefault(_record_id(line), line)
        order = sorted(lines, key=lambda face: int(face.rpartition("/")[2]))
        files.atomic_write_bytes(path, b"".join(lines[f] for f in order))
