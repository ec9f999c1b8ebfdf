"""A trained swap model as an ONNX file: for onnxruntime anywhere, or as a DeepFaceLive DFM.

Formats:
  onnx  input "faces" float32 [batch, S, S, 3] RGB in [0, 1] (the crop facejax aligns for the
        model: `model.json` beside the file gives its size and framing); outputs "swapped"
        [batch, S, S, 3] RGB in [0, 1], and "mask" [batch, S, S, 1] for a family that learns
        its own (SAEHD).
  dfm   DeepFaceLive's model contract (also read by facefusion's deep swapper): input
        "in_face:0" [batch, S, S, 3] BGR in [0, 1]; outputs, in this order, "out_face_mask:0"
        (the input face's mask), "out_celeb_face:0" (the swapped face, BGR) and
        "out_celeb_face_mask:0" (its mask), [batch, S, S, 1|3]. The celebrity is the identity
        faces are swapped to (`direction` b2a: A). A family without learned masks exports
        masks of ones (the live tool's own face mask then decides).

The batch dimension is dynamic; the graph is the model's plain-convolution forward
(facejax/jaxpr_onnx.py), the same computation `facejax convert` runs.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from facejax import files, inference, jaxpr_onnx
from facejax.errors import UserError
from facejax.ops.conv import plain_forms

FORMATS = ("onnx", "dfm")


def swap_graph(run: inference.Run, direction: str, fmt: str):
    """The function of faces the file holds, and its input and output names."""
    task, config, state = run.task, run.config, run.state
    learned = task.swap_with_mask is not None
    other = "a2b" if direction == "b2a" else "b2a"

    def swapped(x):
        if learned:
            return task.swap_with_mask(state, x, direction, config)
        face = task.swap(state, x, direction, config)
        return face, jnp.ones(face.shape[:-1] + (1,), face.dtype)

    if fmt == "onnx":
        names = ["swapped", "mask"] if learned else ["swapped"]
        return (lambda x: swapped(x)[:len(names)]), "faces", names

    def dfm(bgr):
        rgb = jax.lax.rev(bgr, (3,))  # (indexing with ::-1 lowers to a gather)
        face, mask = swapped(rgb)
        if learned:  # the input's own mask: the face as its own identity (swapping "back")
            own = task.swap_with_mask(state, rgb, other, config)[1]
        else:
            own = mask
        return own, jax.lax.rev(face, (3,)), mask

    return dfm, "in_face:0", ["out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0"]


def export(model_dir: str, output: str, fmt: str, direction: str = "b2a",
           step: int | None = None) -> dict:
    """Writes the swap model of the run in `model_dir` to `output` (atomically) and
    `output`.json (size, framing, names); returns that record."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if direction not in ("a2b", "b2a"):
        raise UserError(f"--direction {direction}: expected a2b or b2a")
    files.check_output(output, [model_dir])
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise UserError(f"--output {output}: folder {folder} does not exist")
    run = inference.load_swapper(model_dir, step)
    fn, input_name, output_names = swap_graph(run, direction, fmt)
    size = run.size
    try:
        with plain_forms():  # XLA's own convolutions, which ONNX has
            model = jaxpr_onnx.to_onnx(fn, jax.ShapeDtypeStruct((1, size, size, 3), np.float32),
                                       input_name, output_names)
    except NotImplementedError as e:
        raise UserError(f"--model {model_dir}: its task {run.config.task} cannot be exported to "
                        f"ONNX yet ({e} has no translation)")
    files.atomic_write_bytes(output, model.SerializeToString())
    record = {"format": fmt, "task": run.config.task, "step": run.step, "direction": direction,
              "size": size, **run.framing.record(), "input": input_name,
              "outputs": output_names, "color": "BGR" if fmt == "dfm" else "RGB",
              "learned_mask": run.task.swap_with_mask is not None}
    files.atomic_write_bytes(output + ".json", json.dumps(record, indent=1).encode())
    return record
