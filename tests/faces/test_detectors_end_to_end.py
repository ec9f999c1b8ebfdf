"""Every detector the README names (dlib's HOG and MMOD, OpenCV's res10 `.pb` and YuNet `.onnx`)
takes a real clip through extraction, conversion with a trained autoencoder and evaluation."""

import json
import os
import subprocess

import pytest

from facejax import convert, evaluate, inference
from facejax.data import extract
from facejax.faces import video_writer
from tests.helpers import DATA, GRID

FRAMES = 4  # a few frames: MMOD on two busy cores takes about a second each


def _short(path, source):
    """The first FRAMES frames of `source` with its audio, made with the bundled FFmpeg."""
    subprocess.run([video_writer.ffmpeg(), "-hide_banner", "-loglevel", "error", "-y",
                    "-i", source, "-frames:v", str(FRAMES), "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path],
                   check=True, capture_output=True)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("detector", [
    "hog", "mmod", os.path.join(DATA, "detectors", "opencv_face_detector_uint8.pb"),
    os.path.join(DATA, "detectors", "face_detection_yunet_2026may.onnx")],
    ids=["hog", "mmod", "res10", "yunet"])
def test_detector_extracts_converts_and_evaluates_a_real_clip(tiny_ae_run, tmp_path, detector):
    a = _short(str(tmp_path / "a.mp4"), os.path.join(GRID, "GRID_bbaf2n.mpg"))
    b = _short(str(tmp_path / "b.mp4"), os.path.join(GRID, "GRID_brbk7n.mpg"))

    faces = str(tmp_path / "faces")
    s = extract.extract([b], faces, extract.ExtractOptions(size=64, detector=detector),
                        verbose=False)
    assert s["faces_kept"] == FRAMES
    records = [json.loads(x) for x in open(os.path.join(faces, "alignments.jsonl"))]
    assert len(records) == FRAMES and all(len(r["landmarks"]) == 68 for r in records)

    model = inference.load_swap_model(tiny_ae_run, "b2a", 4)
    out = str(tmp_path / "out.mp4")
    c = convert.convert(model, b, out, convert.ConvertOptions(batch=4, detector=detector),
                        verbose=False)
    assert c["faces_swapped"] == c["frames"] == FRAMES and os.path.isfile(out)

    opts = evaluate.EvalOptions(max_frames=FRAMES, samples=2, batch=4, detector=detector)
    m = evaluate.evaluate(tiny_ae_run, a, b, str(tmp_path / "eval"), opts=opts, verbose=False)
    assert m["reference_sets"] == {"a": FRAMES, "b": FRAMES}
    assert m["a2b"]["faces"] == m["b2a"]["faces"] == FRAMES
    assert os.path.isfile(str(tmp_path / "eval" / "metrics.json"))
