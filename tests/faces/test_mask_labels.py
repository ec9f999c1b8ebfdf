"""masks.jsonl, the hand-drawn mask labels of an extraction folder: round trip, painting order,
scaling, the errors a hand-written file gets, and a label drawn around a real face's landmarks."""

import json
import re
import os

import numpy as np
import pytest

from facejax.data import tfds_faces
from facejax.errors import UserError
from facejax.faces import align, mask_labels, masks

SQUARE = [[10, 10], [20, 10], [20, 20], [10, 20]]


def label(face="clip.mp4-00000000/000003", size=32, polys=(("include", SQUARE),)):
    return mask_labels.parse({"face": face, "size": size, "polygons": [
        {"type": k, "points": p} for k, p in polys]}, "test")


def test_square_covers_the_pixels_whose_centres_it_holds():
    m = mask_labels.rasterise(label())
    assert m.dtype == np.uint8 and m.shape == (32, 32)
    expected = np.zeros((32, 32), np.uint8)
    expected[10:20, 10:20] = 1
    np.testing.assert_array_equal(m, expected)


def test_points_scale_with_the_size_they_were_drawn_at():
    m = mask_labels.rasterise(label(), size=64)
    assert m.sum() == 400 and m[20:40, 20:40].all()


def test_polygons_paint_in_order_exclude_cuts_a_hole():
    hole = [[12, 12], [18, 12], [18, 18], [12, 18]]
    m = mask_labels.rasterise(label(polys=(("include", SQUARE), ("exclude", hole))))
    assert m.sum() == 100 - 36 and not m[12:18, 12:18].any()
    # An include drawn after the exclude fills it again.
    m = mask_labels.rasterise(label(polys=(("include", SQUARE), ("exclude", hole),
                                           ("include", hole))))
    assert m.sum() == 100
    assert mask_labels.rasterise(label(polys=())).sum() == 0


def test_write_then_read_round_trips_sorted(tmp_path):
    labels = {l.face: l for l in (label(face="b.mp4-1/000002"), label(face="a.mp4-1/000009"))}
    mask_labels.write(str(tmp_path), labels)
    lines = (tmp_path / "masks.jsonl").read_text().splitlines()
    assert [json.loads(l)["face"] for l in lines] == ["a.mp4-1/000009", "b.mp4-1/000002"]
    back = mask_labels.read(str(tmp_path))
    assert sorted(back) == sorted(labels)
    for k in labels:
        assert back[k].size == 32 and back[k].polygons[0].kind == "include"
        np.testing.assert_array_equal(back[k].polygons[0].points, SQUARE)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
    assert mask_labels.read(str(tmp_path / "missing")) == {}


@pytest.mark.parametrize("line, says", [
    ("{", "not valid JSON"),
    ('{"face": "x", "size": 32, "polygons": []}', '"face" must be a record id'),
    ('{"face": "a/000001", "size": 0, "polygons": []}', '"size" must be a positive integer'),
    ('{"face": "a/000001", "size": 32, "polygons": [{"type": "add", "points": []}]}',
     '"type" must be include or exclude'),
    ('{"face": "a/000001", "size": 32, "polygons": [{"type": "include", "points": [[1, 2]]}]}',
     "at least 3 [x, y] pairs"),
    ('{"face": "a/000001", "size": 32, "polygons": [{"type": "include", '
     '"points": [[1, 2], [3, "x"], [4, 5]]}]}', "at least 3 [x, y] pairs"),
])
def test_a_bad_line_is_named_with_its_file_and_line(tmp_path, line, says):
    (tmp_path / "masks.jsonl").write_text('{"face": "a/000000", "size": 8, "polygons": []}\n'
                                          + line + "\n")
    with pytest.raises(UserError, match=re.escape(says)) as e:
        mask_labels.read(str(tmp_path))
    assert str(e.value).startswith(f"{tmp_path / 'masks.jsonl'}:2: ")


def test_a_face_labelled_twice_is_refused(tmp_path):
    line = '{"face": "a/000001", "size": 8, "polygons": []}\n'
    (tmp_path / "masks.jsonl").write_text(line * 2)
    with pytest.raises(UserError, match=":2: face a/000001 is labelled twice"):
        mask_labels.read(str(tmp_path))


def test_a_label_around_a_real_face_matches_its_hull(grid_faces):
    d = grid_faces["a"]
    _, records = tfds_faces.read_records(d)
    rec = records[5]
    face = rec["record"]
    assert os.path.isfile(mask_labels.crop_path(d, face))
    size = rec["size"]
    points = align.transform_points(np.asarray(rec["affine"]), np.asarray(rec["landmarks"]))
    hull = masks.face_hull(points, (size, size))
    # The hull's outline traced as a user would, at four times the crop's size.
    import cv2
    contours, _ = cv2.findContours((hull >= 128).astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    outline = (max(contours, key=len)[:, 0, :].astype(float) + 0.5) * 4
    drawn = label(face=face, size=size * 4, polys=(("include", outline.tolist()),))
    m = mask_labels.rasterise(drawn, size=size)
    h = hull >= 128
    iou = np.logical_and(m, h).sum() / np.logical_or(m, h).sum()
    assert iou > 0.95


def test_the_fingerprint_follows_which_faces_not_only_how_many(grid_faces, tmp_path):
    import shutil
    d = str(tmp_path / "faces")
    shutil.copytree(grid_faces["a"], d, ignore=shutil.ignore_patterns("tfds"))
    key = os.listdir(os.path.join(d, "inputs"))[0]
    path = os.path.join(d, "inputs", key, "alignments.jsonl")
    lines = open(path).readlines()
    before = tfds_faces.fingerprint(d)
    open(path, "w").writelines(lines[1:])
    first_gone = tfds_faces.fingerprint(d)
    open(path, "w").writelines(lines[:-1])
    last_gone = tfds_faces.fingerprint(d)
    assert len({before, first_gone, last_gone}) == 3   # same count, other faces: another one
    open(path, "w").writelines(lines)
    assert tfds_faces.fingerprint(d) == before         # restored: the prepared one again
