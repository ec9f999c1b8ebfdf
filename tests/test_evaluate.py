"""Swap-quality evaluation (facejax/evaluate.py, tools/evaluate.py) on real GRID faces."""

import json
import math
import os
import re

import cv2
import numpy as np
import pytest

from tests.helpers import GRID, run_tool
from facejax import evaluate, report
from facejax.faces import align, compose, face_types, identity, landmarks as lm


CLIP_A = os.path.join(GRID, "GRID_bbaf2n.mpg")


CLIP_B = os.path.join(GRID, "GRID_brbk7n.mpg")


OTHER = os.path.join(GRID, "GRID_lbax4n.mpg")


class _Passthrough(evaluate.Evaluator):
    """The evaluator with a model that returns its input for both swap and reconstruction."""

    def __init__(self, opts):
        self.opts, self.size, self.framing = opts, 64, face_types.Framing("", 0.6)

        def ident(x):
            return x.astype(np.float32) / 255.0
        self.swap = {"a2b": ident, "b2a": ident}
        self.rec = {"a": ident, "b": ident}
        self.paste_opts = compose.PasteOptions(blur=opts.blur, color="none")
        self.predictor = lm.LandmarkPredictor()
        self.embedder = identity.FaceEmbedder()


def test_evaluation_of_a_passthrough_model_on_real_faces():
    """A model that changes nothing: perfect reconstruction, the swap keeps the source's
    expression, steadiness and identity (so retrieval of the target fails)."""
    ev = _Passthrough(evaluate.EvalOptions(max_frames=20, samples=2))
    res = {"a": ev.run_clip(CLIP_A, "a"), "b": ev.run_clip(CLIP_B, "b")}
    sets = {n: np.array(r.source_embeddings) for n, r in res.items()}
    m = evaluate.clip_metrics(res["a"], "a", sets, 1, res["b"], ev.size)
    assert m["faces"] == 20 and m["no_face"] == 0
    assert m["reconstruction"]["psnr_mean"] == math.inf
    assert m["reconstruction"]["ssim_mean"] == pytest.approx(1.0)
    assert m["reconstruction"]["detail_correlation"] == pytest.approx(1.0)
    assert m["expression"]["landmark_nme_mean"] < 0.02
    assert m["expression"]["mouth_opening_correlation"] > 0.95
    assert 0 <= m["expression"]["mouth_opening_error"] < 0.01
    assert m["expression"]["mouth_opening_error"] == pytest.approx(np.mean(np.abs(
        np.subtract(m["expression"]["per_frame_mouth_source"],
                    m["expression"]["per_frame_mouth_swap"]))))
    assert m["steadiness"]["jitter_ratio"] == pytest.approx(1.0, abs=0.25)
    assert m["identity"]["retrieval_accuracy"] == 0.0
    # The 64 px round trip loses detail: the swap is less sharp than the real face it came from.
    sharp = m["sharpness"]
    assert 0 < sharp["swap"] < 0.8 * sharp["source_real"]
    assert sharp["ratio_to_target"] == pytest.approx(sharp["swap"] / sharp["target_real"])
    assert sharp["crop_px"] == 64
    # The 64 px round trip blurs the pasted face a little: still far inside the same-person
    # radius of the source, and outside the target's.
    assert m["identity"]["mean_distance_to_source"] < 0.3
    assert m["identity"]["mean_distance_to_target"] > identity.SAME_PERSON
    print("passthrough a2b:", {k: v for k, v in report.summary(
        {"a2b": m, "b2a": m})["a2b"].items()})


def test_sharpness_is_measured_at_the_model_size():
    """A 64 px model's swap is judged on 64 px crops (nothing upsampled), cut as the model
    cuts its input, with the face hull in the same crop."""
    ev = _Passthrough(evaluate.EvalOptions())
    items, _ = ev.faces(CLIP_A)
    _, frame, face = next(items)
    (swap, real), hull = ev.sharpness_crops((frame, frame), face.predicted)
    assert swap.shape == real.shape == (64, 64, 3) and hull.shape == (64, 64)
    m = ev.framing.matrix(face.predicted, 64)
    np.testing.assert_array_equal(real, align.crop(frame, m, 64))
    assert 0.15 < np.mean(hull > 127) < 0.9  # the face hull lies inside the crop
    ev.size = 32  # a 32 px model: 32 px crops
    (swap, _), hull = ev.sharpness_crops((frame, frame), face.predicted)
    assert swap.shape == (32, 32, 3) and hull.shape == (32, 32)


def test_tool_report_and_bad_inputs(tiny_ae_run, tmp_path):
    out = tmp_path / "eval"
    proc = run_tool("tools/evaluate.py", f"--model={tiny_ae_run}", f"--a={CLIP_A}",
                    f"--b={CLIP_B}", f"--distractors={OTHER}", f"--output={out}",
                    "--max_frames=10", "--samples=3", check=True)
    assert "report:" in proc.stdout
    assert "read only" not in proc.stderr  # orbax's note on opening the run to restore it
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["reference_sets"] == {"a": 10, "b": 10, "GRID_lbax4n.mpg": 10}
    for d in ("a2b", "b2a"):
        m = metrics[d]
        assert m["faces"] == 10
        assert 5 < m["reconstruction"]["psnr_mean"] < 40
        assert 0 < m["reconstruction"]["ssim_mean"] < 1
        assert -1 < m["reconstruction"]["detail_correlation"] < 1
        assert 0 <= m["identity"]["retrieval_accuracy"] <= 1
        assert sum(m["identity"]["nearest_counts"].values()) == 10
        assert m["expression"]["landmark_nme_mean"] > 0
        assert len(m["expression"]["per_frame_nme"]) == 10
        assert m["sharpness"]["ratio_to_target"] > 0 and np.isfinite(m["sharpness"]["swap"])
    html = (out / "report.html").read_text()
    pngs = re.findall(r"src='([^']+)'", html)
    assert len(pngs) == 4
    for name in pngs:
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 50, name
    assert '&quot;task&quot;: &quot;autoencoder&quot;' in html  # the run's config, escaped
    assert not [p for p in os.listdir(tmp_path) if "partial" in p]

    # Bad inputs: one line, exit 2, no output folder.
    bad = tmp_path / "bad"
    for args, needle in (
            ([f"--model={tmp_path / 'nope'}", f"--a={CLIP_A}", f"--b={CLIP_B}"], "no such"),
            ([f"--model={tiny_ae_run}", f"--a={tmp_path / 'missing.mp4'}", f"--b={CLIP_B}"],
             "missing.mp4"),
            ([f"--model={tiny_ae_run}", f"--a={CLIP_A}", f"--b={CLIP_B}", "--tail=1.5"],
             "--tail"),
    ):
        proc = run_tool("tools/evaluate.py", *args, f"--output={bad}")
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not bad.exists()
