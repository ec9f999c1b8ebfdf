"""The Faces page's sort keys on real GRID faces, through the studio's HTTP API: the identity key
puts another person's face, slipped into speaker A's set, first ("who is not like the others")
and similarity to that face puts it, then nothing of A's, nearest; yaw and size agree with the
landmark helpers and the boxes they come from; the features are cached in the folder."""

import json
import os
import shutil
import urllib.request

import numpy as np
import pytest

from facejax.faces import align, landmarks, mask_labels
from tests.studio.conftest import KEY, serving



def _get(srv, path: str) -> dict:
    url = f"{srv.base}{path}&token={srv.studio.token}"
    with urllib.request.urlopen(url, timeout=300) as r:
        return json.loads(r.read())


def _slip_in(faces_dir: str, other_dir: str) -> str:
    """Puts other_dir's first face into faces_dir's input as frame 999; returns its id."""
    with open(os.path.join(other_dir, "alignments.jsonl")) as f:
        rec = json.loads(f.readline())
    shutil.copy(mask_labels.crop_path(other_dir, rec["record"]),
                os.path.join(faces_dir, "inputs", KEY, "faces", "000999.png"))
    rec["record"], rec["frame"] = f"{KEY}/000999", 999
    with open(os.path.join(faces_dir, "inputs", KEY, "alignments.jsonl"), "a") as f:
        f.write(json.dumps(rec) + "\n")
    return rec["record"]


def test_identity_and_similarity_find_the_other_person(faces_dir, grid_faces):
    stranger = _slip_in(faces_dir, grid_faces["b"])
    with serving([faces_dir]) as srv:
        out = _get(srv, "/api/faces?sort=identity&per=76")
        assert out["total"] == 76
        order = [f["id"] for f in out["faces"]]
        assert order[0] == stranger
        values = [f["value"] for f in out["faces"]]
        assert values == sorted(values, reverse=True)
        # dlib's threshold: one person's embeddings lie within 0.6 of each other.
        assert values[0] > 0.6 > values[-1]
        similar = _get(srv, f"/api/faces?sort=similar&picked={stranger}&per=76")["faces"]
        assert similar[0]["id"] == stranger and similar[0]["value"] == pytest.approx(0, abs=1e-6)
        assert min(f["value"] for f in similar[1:]) > 0.6
        cache = json.load(open(os.path.join(faces_dir, "studio_cache", "faces.json")))
        assert len(cache["faces"][stranger]["embedding"]) == 128
        missing = urllib.request.Request(
            f"{srv.base}/api/faces?sort=similar&token={srv.studio.token}")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(missing, timeout=60)
        assert e.value.code == 400 and b"pick a face first" in e.value.read()


def test_pose_and_size_keys_come_from_the_records(faces_dir):
    with open(os.path.join(faces_dir, "alignments.jsonl")) as f:
        records = {r["record"]: r for r in map(json.loads, f)}
    with serving([faces_dir]) as srv:
        yaw = {f["id"]: f["value"] for f in _get(srv, "/api/faces?sort=yaw&per=75")["faces"]}
        size = _get(srv, "/api/faces?sort=size&per=75")
        fit = _get(srv, "/api/faces?sort=fit&per=75")
    assert "no landmark confidence" in fit["note"]
    for face, rec in records.items():
        in_crop = align.transform_points(np.array(rec["affine"]), np.array(rec["landmarks"]))
        assert yaw[face] == pytest.approx(float(landmarks.head_yaw(in_crop[None], 64)[0]),
                                          abs=1e-5)
    x0, y0, x1, y1 = np.array([records[f["id"]]["box"] for f in size["faces"]]).T
    np.testing.assert_allclose([f["value"] for f in size["faces"]],
                               np.sqrt((x1 - x0) * (y1 - y0)), rtol=1e-6)
    assert [f["value"] for f in size["faces"]] == sorted(f["value"] for f in size["faces"])
