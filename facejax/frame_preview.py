"""One frame of a clip converted with given options, re-rendered fast as the options change:
the backend of the studio's merge page (issue 32).

`FramePreview(...).render(index, opts)` is the frame `facejax convert` writes for that index
with those options: it runs conversion's own steps (facejax/convert.py: found_faces, smoothed,
face_crop, model_faces, paste_frame) and keeps what does not depend on the paste options:

- the clip's decoded frames (in memory up to `max_frame_bytes`, the rest decoded again when
  asked for);
- the landmark track of the whole clip as the tracker finds it (the predictor's own
  landmarks), once per detector, face selection and confirm_every: tracking is causal, so a
  frame's face depends on the frames before it (the constructor walks the clip once);
- the smoothed track, once per smoothing cutoff (the One Euro filter over the cached track);
- the model's face and learned mask of a frame's crop, per crop.

So changing erode, blur, colour, mask or blend re-runs only the paste; changing the smoothing
re-filters the cached track and runs the model on the frame's new crop.

The model is compiled for one crop at a time (`batch`): conversion's batches give the same
faces to within rounding (tests/test_frame_preview.py compares the two). As for every tool
that loads a run, call inference.configure_xla(model_dir) before JAX starts.
"""

from __future__ import annotations

import collections

import numpy as np

from facejax import convert, inference
from facejax.errors import UserError
from facejax.faces import compose, video

# What a crop's model output is cached under: the frame, the crop's landmarks, learned mask.
_SwapKey = tuple[int, bytes, bool]


class FramePreview:
    """Frames of `clip` swapped by the run in `model_dir` (its latest checkpoint, or `step`) in
    `direction`, as facejax convert writes them.

    Raises:
      UserError: a missing or unreadable clip or run (one line, as facejax convert says it).
    """

    def __init__(self, model_dir: str, clip: str, direction: str = "b2a",
                 step: int | None = None, detector: str = "hog", batch: int = 1,
                 max_frame_bytes: int = 2 << 30, max_swaps: int = 512):
        convert.ConvertOptions(direction=direction, detector=detector, batch=batch).check()
        self.source = video.FrameSource(clip)
        self.fps = self.source.info.fps if self.source.kind == "video" else None
        self.direction, self.detector, self.batch = direction, detector, batch
        self.run = inference.load_swapper(model_dir, step)
        self._models: dict[bool, inference.SwapModel] = {}
        self._frames: dict[int, np.ndarray | None] = {}
        self._frame_budget = max_frame_bytes
        self._count: int | None = None  # set by the first walk
        self._tracks: dict[tuple, list] = {}      # (detector, select, confirm_every) -> track
        self._smoothed: dict[tuple, list] = {}    # the same + (smooth,) -> smoothed track
        self._swaps: collections.OrderedDict[_SwapKey, tuple] = collections.OrderedDict()
        self._max_swaps = max_swaps
        # The first walk: the clip's frames and its track for the default face finding.
        self._track(convert.ConvertOptions(direction=direction, detector=detector))

    # ---- the clip ------------------------------------------------------------------------------

    @property
    def frame_count(self) -> int:
        """The number of frames conversion walks (decoded to the end, not the container's
        estimate)."""
        return self._count

    def frame(self, index: int) -> np.ndarray | None:
        """Frame `index` as decoded (RGB uint8), None where it could not be decoded."""
        if index in self._frames:
            return self._frames[index]
        return self.source.read(index)

    def _keep(self, index: int, frame: np.ndarray | None) -> None:
        size = 0 if frame is None else frame.nbytes
        if index not in self._frames and size <= self._frame_budget:
            self._frames[index] = frame
            self._frame_budget -= size

    def _walk(self):
        """(index, frame) of the whole clip: from memory when every frame is kept."""
        if self._count is not None and len(self._frames) == self._count:
            yield from sorted(self._frames.items())
            return
        for index, frame in self.source.frames():
            self._keep(index, frame)
            yield index, frame

    # ---- landmarks -----------------------------------------------------------------------------

    def _track(self, opts: convert.ConvertOptions) -> list:
        """[(readable, raw landmarks or None)] of every frame, for opts' face finding."""
        key = (opts.detector, opts.select, opts.confirm_every)
        if key not in self._tracks:
            found = convert.found_faces(self._walk(), convert.make_finder(opts), self.fps)
            track = [(frame is not None, points) for _, frame, points in found]
            self._tracks[key] = track
            self._count = len(track)
        return self._tracks[key]

    def landmarks(self, index: int, opts: convert.ConvertOptions) -> np.ndarray | None:
        """The landmarks conversion pastes frame `index`'s face with (None: no face)."""
        key = (opts.detector, opts.select, opts.confirm_every, opts.smooth)
        if key not in self._smoothed:
            # The frame slot carries only whether the frame was readable (smoothed's rule).
            found = ((i, True if ok else None, points)
                     for i, (ok, points) in enumerate(self._track(opts)))
            self._smoothed[key] = [p for _, _, p in convert.smoothed(found, self.fps,
                                                                      opts.smooth)]
        return self._smoothed[key][index]

    # ---- the model and the paste ---------------------------------------------------------------

    def _model(self, with_mask: bool) -> inference.SwapModel:
        if with_mask not in self._models:
            self._models[with_mask] = inference.swap_model(self.run, self.direction,
                                                           self.batch, with_mask)
        return self._models[with_mask]

    def _swap(self, index: int, crop: np.ndarray, points: np.ndarray,
              with_mask: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """The model's face and learned mask for frame `index`'s crop (cached per crop)."""
        key = (index, points.tobytes(), with_mask)
        if key in self._swaps:
            self._swaps.move_to_end(key)
            return self._swaps[key]
        faces, learned = convert.model_faces(self._model(with_mask).fn(crop[None]))
        self._swaps[key] = (faces[0], learned[0])
        if len(self._swaps) > self._max_swaps:
            self._swaps.popitem(last=False)
        return self._swaps[key]

    def render(self, index: int, opts: convert.ConvertOptions) -> np.ndarray:
        """Frame `index` (0-based) as facejax convert writes it with `opts`: H x W x 3 uint8
        RGB (twice as wide with opts.preview); a frame without a face comes back unchanged.

        Raises:
          UserError: bad options, another direction than the preview's, an index outside the
            clip, or a frame that cannot be decoded (conversion skips it).
        """
        opts.check()
        if opts.direction != self.direction:
            raise UserError(f"--direction {opts.direction}: this preview swaps "
                            f"{self.direction} (open another for {opts.direction})")
        count = self.frame_count
        if not 0 <= index < count:
            raise UserError(f"{self.source.path}: no frame {index} (the clip has {count} "
                            f"frames, 0 to {count - 1})")
        points = self.landmarks(index, opts)
        frame = self.frame(index)
        if frame is None:
            raise UserError(f"{self.source.path}: frame {index} cannot be decoded "
                            "(conversion skips it)")
        if points is None:
            return convert.output_frame(frame, frame, opts)
        model = self._model(opts.mask in compose.LEARNED)
        affine, crop_points, crop = convert.face_crop(model, frame, points)
        face, learned = self._swap(index, crop, points, opts.mask in compose.LEARNED)
        return convert.paste_frame(frame, face, affine, crop_points, opts, None, learned)
