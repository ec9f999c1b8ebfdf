"""The Merge page's model side: one frame of the clip swapped with the run's model under the
convert options the page chose (facejax/frame_preview.py renders it as `facejax convert` would),
and those options saved as the settings file `facejax convert --settings=FILE` reads.

The options come from the browser as names and numbers; each is checked against the convert
options' own rules (ConvertOptions.check) before a frame is rendered or a file written.
"""

from __future__ import annotations

import dataclasses
import os
import threading

from facejax.errors import UserError

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
                 direction: str = "b2a", flag: str = "--video"):
        if not os.path.isfile(clip):
            raise UserError(f"{flag} {clip}: no such file")
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
        return options_from(values, convert.ConvertOptions(direction=self.direction))

    def info(self) -> dict:
        from facejax import convert
        defaults = dataclasses.asdict(convert.ConvertOptions())
        saved = None
        if os.path.isfile(self.settings_path):
            saved = dataclasses.asdict(convert.load_settings(self.settings_path))
        return {"clip": self.clip, "frame_count": int(self.preview().frame_count),
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
