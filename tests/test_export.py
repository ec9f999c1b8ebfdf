"""facejax export: the swap model as ONNX and as DeepFaceLive's DFM, run with onnxruntime on
real faces and compared with facejax's own swap; failures are one line."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from facejax import inference, jaxpr_onnx
from tests.helpers import faces_of, run_tool


def session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def test_onnx_export_gives_facejax_swaps_for_any_batch(grid_faces, tiny_ae_run, tmp_path):
    out = str(tmp_path / "ae.onnx")
    proc = run_tool("tools/export.py", f"--model={tiny_ae_run}", "--format=onnx",
                    f"--output={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.load(open(out + ".json"))
    run = inference.load_swapper(tiny_ae_run)
    assert record["size"] == run.size and record["face_type"] is None
    assert record["coverage"] == pytest.approx(run.framing.coverage)
    assert (record["input"], record["outputs"]) == ("faces", ["swapped"])
    s = session(out)
    for n in (1, 5):  # one graph, any batch
        x = faces_of(grid_faces["b"], run.size, n)
        want = np.asarray(run.task.swap(run.state, jnp.asarray(x), "b2a", run.config))
        got, = s.run(None, {"faces": x})
        assert got.shape == (n, run.size, run.size, 3)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert sorted(os.listdir(tmp_path)) == ["ae.onnx", "ae.onnx.json"]


def test_dfm_follows_deepfacelives_contract(grid_faces, tiny_ae_run, tmp_path):
    out = str(tmp_path / "ae.dfm")
    proc = run_tool("tools/export.py", f"--model={tiny_ae_run}", "--format=dfm",
                    f"--output={out}", "--direction=b2a")
    assert proc.returncode == 0, proc.stderr[-2000:]
    graph = onnx.load(out).graph
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    run = inference.load_swapper(tiny_ae_run)
    s = run.size
    assert [(v.name, dims(v)) for v in graph.input] == [("in_face:0", ["batch", s, s, 3])]
    assert [(v.name, dims(v)) for v in graph.output] == [
        ("out_face_mask:0", ["batch", s, s, 1]), ("out_celeb_face:0", ["batch", s, s, 3]),
        ("out_celeb_face_mask:0", ["batch", s, s, 1])]
    rgb = faces_of(grid_faces["b"], s, 3)
    face_mask, celeb, celeb_mask = session(out).run(None, {"in_face:0": rgb[..., ::-1].copy()})
    want = np.asarray(run.task.swap(run.state, jnp.asarray(rgb), "b2a", run.config))
    np.testing.assert_allclose(celeb[..., ::-1], want, atol=1e-4, rtol=0)  # BGR out
    assert (face_mask == 1).all() and (celeb_mask == 1).all()  # the autoencoder learns none


def test_bad_exports_are_one_line(grid_faces, tiny_ae_run, tmp_path):
    cases = [
        ([f"--model={tmp_path}/missing", f"--output={tmp_path}/x.onnx"], "no such workdir"),
        ([f"--model={tiny_ae_run}", f"--output={tmp_path}/no/x.onnx"], "does not exist"),
        ([f"--model={tiny_ae_run}", "--format=tflite", f"--output={tmp_path}/x.onnx"],
         "--format"),
    ]
    for args, message in cases:
        proc = run_tool("tools/export.py", *args)
        assert proc.returncode == 2, proc.stderr[-1500:]
        assert message in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == []


def test_the_translation_refuses_what_it_does_not_cover_by_name():
    with pytest.raises(NotImplementedError, match="'sort'"):
        jaxpr_onnx.to_onnx(lambda x: (jnp.sort(x, axis=-1),),
                           jax.ShapeDtypeStruct((1, 4), np.float32), "x", ["y"])


def test_scans_are_written_out_step_by_step(grid_faces):
    """A scan (as the CycleGAN generator runs its residual blocks: convolutions over stacked
    kernels) translates to its body once per step: on real faces the carry and the stacked
    per-step outputs equal JAX's, forwards and reversed."""
    kernels = 0.3 * jax.random.normal(jax.random.key(0), (3, 3, 3, 3, 3))

    def step(carry, kernel):
        y = jax.lax.conv_general_dilated(carry, kernel, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        carry = carry + jnp.tanh(y)
        return carry, carry.mean((1, 2, 3))

    def fn(x):
        return (*jax.lax.scan(step, x, kernels), *jax.lax.scan(step, x, kernels, reverse=True))

    model = jaxpr_onnx.to_onnx(fn, jax.ShapeDtypeStruct((1, 32, 32, 3), np.float32), "x",
                               ["carry", "ys", "carry_rev", "ys_rev"])
    assert not any(node.op_type == "Loop" for node in model.graph.node)
    x = faces_of(grid_faces["b"], 32, 5)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]
                               ).run(None, {"x": x})
    want = jax.jit(fn)(jnp.asarray(x))
    assert got[1].shape == (3, 5)
    assert not np.allclose(got[0], got[2], atol=1e-3)  # the order of the steps matters
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)
