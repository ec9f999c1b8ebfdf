"""Training summaries (facejax/summaries.py): scalars land in TensorBoard's event files, previews
are labelled grids written as PNG files (atomically) and to TensorBoard; a writer of another
process than 0 writes nothing."""

import os

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from facejax import summaries
from facejax.faces import video


def _events(workdir: str) -> EventAccumulator:
    acc = EventAccumulator(os.path.join(workdir, "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def _faces(seed: int, n: int = 2, size: int = 24) -> dict:
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(0, 1, (n, size, size * 3, 3)).astype(np.float32)
            for name in ("a", "b")}


def test_scalars_land_in_tensorboard_event_files(tmp_path):
    writer = summaries.Writer(str(tmp_path))
    writer.scalars(10, {"loss": 0.5, "steps_per_s": np.float32(3.0)})
    writer.scalars(20, {"loss": 0.25})
    writer.close()
    acc = _events(str(tmp_path))
    assert {"loss", "steps_per_s"} <= set(acc.Tags()["tensors"])
    loss = [(e.step, float(make_ndarray(e.tensor_proto))) for e in acc.Tensors("loss")]
    assert loss == [(10, 0.5), (20, 0.25)]
    assert [e.step for e in acc.Tensors("steps_per_s")] == [10]


def test_previews_are_labelled_pngs_written_whole(tmp_path):
    writer = summaries.Writer(str(tmp_path))
    images = _faces(0)
    path = writer.images(7, images, ("input", "to {other}", "rebuilt"))
    writer.close()
    previews = tmp_path / "previews"
    assert path == str(previews / "step_0000007.png")
    # Written under a temporary name and renamed: nothing else is left in the folder.
    assert sorted(os.listdir(previews)) == ["latest.png", "step_0000007.png"]
    expected = summaries.grid(images, ("input", "to {other}", "rebuilt"))
    for name in ("step_0000007.png", "latest.png"):
        np.testing.assert_array_equal(video.read_image(str(previews / name)), expected)
    assert "preview" in _events(str(tmp_path)).Tags()["tensors"]


def test_grid_puts_each_identity_under_its_header():
    images = _faces(1)
    plain = summaries.grid(images)
    labelled = summaries.grid(images, ("input", "to {other}", "rebuilt"))
    rows, width = 2 * 24, 24 * 3
    assert plain.shape == (rows, 2 * (width + 4), 3)  # side by side, 4 px apart
    strip = labelled.shape[0] - rows
    assert strip > 0 and labelled.shape[1] == plain.shape[1]
    np.testing.assert_array_equal(labelled[strip:], plain)  # the faces unchanged below it
    head = labelled[:strip]
    for group in range(2):  # each panel of each group is labelled: dark text on white
        for panel in range(3):
            x0 = group * (width + 4) + panel * 24
            cell = head[:, x0:x0 + 24]
            assert (cell == 255).mean() > 0.5 and (cell < 128).any(), (group, panel)
    expected = np.clip(images["a"], 0, 1) * 255 + 0.5
    np.testing.assert_array_equal(plain[:24, :width], expected[0].astype(np.uint8))


def test_a_writer_of_another_process_writes_nothing(tmp_path):
    writer = summaries.Writer(str(tmp_path / "run"), enabled=False)
    writer.scalars(1, {"loss": 1.0})
    assert writer.images(1, _faces(2), ("x", "y", "z")) is None
    writer.close()
    assert not (tmp_path / "run").exists()
