"""A training run as the studio's Training and Merge pages see it.

`RunView`: the run while it trains: the config, the scalars of its TensorBoard event files
(losses, steps/s), the held-out metrics of `metrics.jsonl`, the step reached and an estimate of
the time left, and its latest preview grid (WORKSPACE.md's workdir). Everything is read again
on each poll; nothing is written.

`MergeView`: one frame of a clip swapped with the run's model under the convert options the
page chose (facejax/frame_preview.py renders it as `facejax convert` would), and those options
saved as the settings file `facejax convert --settings=FILE` reads. The options come from the
browser as names and numbers; each is checked against the convert options' own rules
(ConvertOptions.check) before a frame is rendered or a file written.
"""

from __future__ import annotations

import dataclasses
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


# ---- the Merge page ----------------------------------------------------------------------

SETTINGS_FILE = "convert_settings.json"
# The options the page sets, with their kinds: names as `facejax convert`'s flags.
FIELDS = {"mask": str, "erode": int, "blur": int, "color": str, "blend": str, "smooth": float}


def options_from(values: dict, base=None):
    """A ConvertOptions from `base` (default: convert's defaults) with the page's `values`.

    Raises:
      UserError: an unknown option, a value of the wrong kind, or one convert refuses.
    """
    from facejax import convert
    base = base or convert.ConvertOptions()
    changes = {}
    for name, raw in values.items():
        if name not in FIELDS:
            raise UserError(f"{name}: not a merge option (one of {', '.join(FIELDS)})")
        try:
            changes[name] = FIELDS[name](raw)
        except (TypeError, ValueError):
            raise UserError(f"{name}={raw!r}: not a {FIELDS[name].__name__}")
    opts = dataclasses.replace(base, **changes)
    opts.check()
    return opts


class MergeView:
    """The run `workdir`'s model on `clip`; settings saved to `settings_path`."""

    def __init__(self, workdir: str, clip: str, settings_path: str | None = None,
                 direction: str = "b2a", flag: str = "--video", xseg_model: str = ""):
        if not os.path.isfile(clip):
            raise UserError(f"{flag} {clip}: no such file")
        if xseg_model:  # its config only: the model loads on the first render
            from facejax import inference
            inference.segmentation_task(xseg_model, flag="--xseg_model")
        self.xseg_model = os.path.abspath(xseg_model) if xseg_model else ""
        self.workdir, self.clip = os.path.abspath(workdir), os.path.abspath(clip)
        self.settings_path = os.path.abspath(
            settings_path or os.path.join(self.workdir, SETTINGS_FILE))
        self.direction = direction
        self._preview = None
        self._lock = threading.Lock()  # one model, one render at a time

    def preview(self):
        """The FramePreview, loaded on first use (the model's weights, compiled once)."""
        with self._lock:
            if self._preview is None:
                try:
                    from facejax.frame_preview import FramePreview
                except ImportError as e:
                    raise UserError(f"the merge preview is not available here ({e})")
                self._preview = FramePreview(self.workdir, self.clip, direction=self.direction)
            return self._preview

    def options(self, values: dict):
        """options_from(values) in this view's swap direction."""
        from facejax import convert
        return options_from(values, convert.ConvertOptions(direction=self.direction,
                                                           xseg_model=self.xseg_model))

    def info(self) -> dict:
        from facejax import convert
        defaults = dataclasses.asdict(convert.ConvertOptions())
        saved = None
        if os.path.isfile(self.settings_path):
            saved = dataclasses.asdict(convert.load_settings(self.settings_path))
        from facejax.faces import compose
        masks = [m for m in compose.MASKS if self.xseg_model or m not in compose.XSEG]
        return {"clip": self.clip, "frame_count": int(self.preview().frame_count),
                "masks": masks, "xseg_model": self.xseg_model,
                "defaults": {k: defaults[k] for k in FIELDS},
                "saved": {k: saved[k] for k in FIELDS} if saved else None,
                "settings_path": self.settings_path}

    def render(self, index: int, values: dict):
        """The frame `index` as convert writes it with the page's options (H×W×3 RGB)."""
        opts = self.options(values)
        preview = self.preview()
        if not 0 <= index < preview.frame_count:
            raise UserError(f"frame {index}: the clip has {preview.frame_count} frames")
        with self._lock:
            return preview.render(index, opts)

    def save(self, values: dict) -> str:
        """Writes the page's options as the settings file; returns its path."""
        from facejax import convert
        convert.save_settings(self.settings_path, self.options(values))
        return self.settings_path
