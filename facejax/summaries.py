"""TensorBoard scalars and image grids, PNG previews (process 0 only)."""

from __future__ import annotations

import os

import numpy as np

from facejax import images as images_lib


def grid(images: dict, columns: tuple = ()) -> np.ndarray:
    """{name: float [N, H, W, 3] in [0, 1]} -> one uint8 image, the groups side by side, each
    under a header naming its identity and its panels (`columns`, left to right; "{other}" is
    the other group's name) when given."""
    cols = []
    for name in sorted(images):
        x = (np.clip(np.asarray(images[name], np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
        col = np.concatenate(list(x), axis=0)
        if columns:
            other = "".join(n for n in sorted(images) if n != name).upper()
            labels = [c.format(other=other) for c in columns]
            labels[0] = f"{name.upper()}: {labels[0]}"
            col = images_lib.with_header(col, labels)
        cols.append(col)
    rows = max(c.shape[0] for c in cols)
    cols = [np.pad(c, ((0, rows - c.shape[0]), (0, 4), (0, 0))) for c in cols]
    return np.concatenate(cols, axis=1)


class Writer:
    """Writes scalars and images to TensorBoard, and previews as PNG files."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        self.workdir = workdir
        self._tb = None
        if enabled:
            import tensorflow as tf
            self._tf = tf
            self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
            os.makedirs(os.path.join(workdir, "previews"), exist_ok=True)

    def scalars(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        with self._tb.as_default(step=step):
            for k, v in values.items():
                self._tf.summary.scalar(k, float(v))
        self._tb.flush()

    def images(self, step: int, images: dict, columns: tuple = ()) -> str | None:
        """Writes the preview grid (labelled with `columns`, see grid) to TensorBoard and
        previews/step_NNNNNNN.png; returns its path."""
        if not self.enabled:
            return None
        g = grid(images, columns)
        with self._tb.as_default(step=step):
            self._tf.summary.image("preview", g[None], max_outputs=1)
        self._tb.flush()
        path = os.path.join(self.workdir, "previews", f"step_{step:07d}.png")
        images_lib.write_image(path, g)
        images_lib.write_image(os.path.join(self.workdir, "previews", "latest.png"), g)
        return path

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
