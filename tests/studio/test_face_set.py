"""Deleting faces with mask labels: the labels of deleted faces leave masks.jsonl with them
(XSeg's training reads the labels of faces that are there) and undo brings them back."""

import os

from facejax.data import labelled
from facejax.faces import mask_labels
from facejax.studio.face_set import FaceSet
from tests.studio.conftest import KEY, folder_bytes

SQUARE = [[8, 8], [40, 8], [40, 40], [8, 40]]


def test_a_deleted_faces_label_goes_to_the_trash_and_comes_back(faces_dir):
    kept, deleted = f"{KEY}/000003", f"{KEY}/000010"
    mask_labels.write(faces_dir, {f: mask_labels.parse(
        {"face": f, "size": 64, "polygons": [{"type": "include", "points": SQUARE}]}, "test")
        for f in (kept, deleted)})
    before = folder_bytes(faces_dir)
    faces = FaceSet(faces_dir)
    faces.delete([deleted])
    assert sorted(mask_labels.read(faces_dir)) == [kept]
    ids, crops, masks = labelled.read_labelled(faces_dir, 64)  # XSeg's labelled faces still load
    assert ids == [kept] and masks[0].sum() == 32 * 32 * 255
    batch = os.path.join(faces_dir, "trash", faces.batches()[-1])
    assert sorted(mask_labels.read(batch)) == [deleted]
    faces.undo()
    assert folder_bytes(faces_dir) == before
