"""Swap quality during training: reconstruction PSNR/SSIM and the swap's identity distance on
held-out crops, for TensorBoard and metrics.jsonl (config.quality_every)."""

from __future__ import annotations

import cv2
import jax
import numpy as np

from facejax import metrics
from facejax.faces import identity as identity_lib, landmarks as lm

OTHER = {"a": "b", "b": "a"}


class HeldOutQuality:
    """PSNR/SSIM of each identity's reconstruction and the identity distance of its swap, on
    held-out model views (crops), for TensorBoard during training."""

    def __init__(self, task, config, framing):
        """framing: where the model's crop sits on the face (inference.Run.framing)."""
        self.task, self.config, self.framing = task, config, framing
        names = task.identities
        self._views = jax.jit(lambda b: {n: task.views(b, n, config) for n in names})
        self._run = jax.jit(lambda s, v: {
            n: (task.reconstruct(s, v[n], n, config),
                task.swap(s, v[n], f"{n}2{OTHER[n]}", config)) for n in names})
        self.predictor = lm.LandmarkPredictor()
        self.embedder = identity_lib.FaceEmbedder()

    def _embed(self, crop: np.ndarray) -> np.ndarray:
        """Embedding of an aligned uint8 crop: landmarks predicted in the mean face's box."""
        big = cv2.resize(crop, (160, 160), interpolation=cv2.INTER_CUBIC)
        face = self.framing.mean_face(160)
        box = lm.box_of(face)
        return self.embedder.from_landmarks(big, self.predictor(big, box))

    def __call__(self, state, batch, fetch=None) -> dict:
        """Figures for `batch` (the task's batch layout); `fetch` brings device arrays to the
        host (parallel.fetch in training; jax.device_get by default)."""
        fetch = fetch or jax.device_get
        views = self._views(batch)
        views, outs = fetch((views, self._run(state, views)))
        out, emb = {}, {}
        names = self.task.identities
        for n in names:
            x = np.asarray(views[n], np.float64)
            rec = np.clip(np.asarray(outs[n][0], np.float64), 0, 1)
            out[f"quality/psnr_{n}"] = metrics.mean_finite(
                [metrics.psnr(a, b) for a, b in zip(x, rec)])
            out[f"quality/ssim_{n}"] = float(np.mean([metrics.ssim(a, b)
                                                      for a, b in zip(x, rec)]))
            emb[n] = np.array([self._embed(metrics.to_uint8(v)) for v in x])
            emb[n + "_swap"] = np.array([self._embed(metrics.to_uint8(v)) for v in outs[n][1]])
        sets = {n: emb[n] for n in names}
        for n in names:
            d = metrics.nearest_distances(emb[n + "_swap"], sets)
            t = OTHER[n]
            out[f"quality/id_dist_{n}2{t}"] = metrics.mean_finite(d[t])
            out[f"quality/id_retrieval_{n}2{t}"] = float(np.mean(d[t] < d[n]))
        return out
