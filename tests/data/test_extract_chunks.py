"""Long videos (facejax/data/extract_work.py): a kill mid-video loses at most the chunk in
progress and the rerun writes exactly the records of one uninterrupted pass; several workers
share one video by chunks with the same result."""

import json
import os
import signal
import subprocess
import sys
import time

from facejax.data import extract, extract_work
from tests.helpers import LIVEPORTRAIT, ROOT

CLIP = f"{LIVEPORTRAIT}/driving_d6.mp4"  # 1008 frames
OPTS = dict(size=48, every_n=2, chunk_frames=100)


def _records(out):
    lines = [json.loads(x) for x in open(os.path.join(out, "alignments.jsonl"))]
    return {r["frame"]: (r["landmarks"], r["affine"]) for r in lines}, len(lines)


def test_a_kill_mid_video_resumes_inside_it_with_no_duplicate_or_missing_record(tmp_path):
    ref = str(tmp_path / "ref")
    s = extract.extract([CLIP], ref, extract.ExtractOptions(**OPTS), verbose=False)
    assert s["this_run"]["chunks"] == 11 and s["frames_read"] == 504
    reference, n = _records(ref)
    assert n == len(reference) == s["faces_kept"] > 400

    out = str(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, "tools/extract.py", f"--input={CLIP}",
                             f"--output={out}", "--size=48", "--every_n=2",
                             "--chunk_frames=100"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    key = extract.input_key(CLIP)
    deadline = time.time() + 120
    while time.time() < deadline and len(extract_work.finished_chunks(out, key)) < 4:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = extract_work.finished_chunks(out, key)
    assert 4 <= len(done) < 11 and not os.listdir(os.path.join(out, "inputs"))
    s = extract.extract([CLIP], out, extract.ExtractOptions(**OPTS), verbose=False)
    assert s["this_run"]["chunks"] == 11 - len(done)  # at most the chunk in progress redone
    got, n = _records(out)
    assert n == len(got) and got == reference
    assert not os.path.exists(os.path.join(out, extract_work.CHUNKS, key))
    assert not [f for f in os.listdir(out) if f.startswith(".partial")]


def test_two_workers_share_one_video(tmp_path):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    extract.extract([CLIP], one, extract.ExtractOptions(**OPTS), verbose=False)
    s = extract.extract([CLIP], two, extract.ExtractOptions(workers=2, **OPTS), verbose=False)
    assert s["this_run"]["chunks"] == 11
    assert _records(two) == _records(one)
