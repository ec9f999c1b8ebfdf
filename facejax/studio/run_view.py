"""A training run as the Training page shows it while it trains: the config, the scalars of its
TensorBoard event files (losses, steps/s), the held-out metrics of `metrics.jsonl`, the step
reached and an estimate of the time left, and its latest preview grid (WORKSPACE.md's workdir).
Everything is read again on each poll; nothing is written.
"""

from __future__ import annotations

import os
import threading

from facejax import files, runs
from facejax.errors import UserError
from facejax.training import run_files

PREVIEW = os.path.join("previews", "latest.png")
# The rate the time left is estimated from (training's own measure, periodic.py).
RATE_TAG = "steps_per_s"


def _import_reader() -> None:
    import tensorboard.backend.event_processing.event_accumulator  # noqa: F401


class RunView:
    """One workdir, read on request."""

    def __init__(self, workdir: str, flag: str = "--workdir"):
        self.workdir = os.path.abspath(workdir)
        if not os.path.isdir(self.workdir):
            raise UserError(f"{flag} {workdir}: no such folder")
        if not os.path.isfile(os.path.join(self.workdir, runs.CONFIG_FILE)):
            raise UserError(f"{flag} {workdir}: no {runs.CONFIG_FILE}; not a facejax workdir "
                            "(facejax train --workdir writes one when it starts)")
        self._events = None
        # TensorBoard's reader imports TensorFlow (seconds): begun now, the page's first poll
        # finds it loaded.
        threading.Thread(target=_import_reader, daemon=True).start()

    def config(self) -> dict:
        return files.read_json(os.path.join(self.workdir, runs.CONFIG_FILE), "the run's config")

    def scalars(self) -> dict[str, list[list[float]]]:
        """{tag: [[step, value], ...]} of the run's TensorBoard scalars (the preview image
        left out); {} before the first is written."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        from tensorboard.util.tensor_util import make_ndarray
        folder = os.path.join(self.workdir, "tensorboard")
        if not os.path.isdir(folder):
            return {}
        if self._events is None:  # kept: Reload() reads only what was appended since
            self._events = EventAccumulator(folder, size_guidance={"tensors": 0})
        self._events.Reload()
        out = {}
        for tag in self._events.Tags().get("tensors", []):
            series = []
            for event in self._events.Tensors(tag):
                value = make_ndarray(event.tensor_proto)
                if value.size == 1:
                    series.append([int(event.step), float(value.reshape(()))])
            if series:
                out[tag] = series
        return out

    def status(self) -> dict:
        """What the page shows: config, scalars, held-out metrics, step, steps in all, seconds
        left (None until a rate is known), and whether a preview exists."""
        config = self.config()
        scalars = self.scalars()
        history = run_files.read_history(self.workdir)
        steps = [s for series in scalars.values() for s, _ in series]
        steps += [int(h["step"]) for h in history if "step" in h]
        step = max(steps) if steps else 0
        total = int(config.get("num_steps") or 0)
        rate = scalars.get(RATE_TAG, [[0, 0.0]])[-1][1]
        eta = (total - step) / rate if rate > 0 and total > step else None
        preview = os.path.join(self.workdir, PREVIEW)
        return {"workdir": self.workdir, "config": config, "scalars": scalars,
                "metrics": history, "step": step, "num_steps": total, "eta_s": eta,
                "preview": os.path.isfile(preview),
                "preview_mtime": os.path.getmtime(preview) if os.path.isfile(preview) else 0}

    def preview_path(self) -> str:
        return os.path.join(self.workdir, PREVIEW)
