"""One frame of a clip converted with given options, re-rendered fast as the options change:
the backend of the studio's merge page (issue 32).

`FramePreview(...).render(index, opts)` is the frame `facejax convert` writes for that index
with those options: it runs conversion's own steps (facejax/convert.py: found_faces, smoothed,
model_batches, face_crop, model_faces, paste_frame) and keeps what does not depend on the paste
options:

- the clip's decoded frames (in memory up to `max_frame_bytes`, the rest decoded again when
  asked for);
- the landmark track of the whole clip as the tracker finds it (the predictor's own
  landmarks), once per detector, face selection and confirm_every: tracking is causal, so a
  frame's face depends on the frames before it (the constructor walks the clip once);
- the smoothed track, once per smoothing cutoff (the One Euro filter over the cached track);
- the model's face and learned mask of a frame's crop, per crop: a frame's whole model batch
  (as conversion forms it: opts.batch frames with a face in a row) is run as conversion runs
  it, so the face is the same to the bit, and the neighbours the slider moves to next are
  cached with it; with --mask=xseg the segmentation run's (opts.xseg_model, loaded once per
  run and batch) mask of the same crops too (xseg_convert.py).

So changing erode, blur, colour, mask or blend re-runs only the paste; changing the smoothing
re-filters the cached track and runs the model on the frame's batch of new crops. As for
every tool that loads a run, call inference.configure_xla(model_dir) before JAX starts.
"""

from __future__ import annotations

import collections
import threading

import numpy as np

from facejax import convert, inference, xseg_convert
from facejax.errors import UserError
from facejax.faces import compose, video

# What a crop's model output is cached under: the frame, its landmarks, learned mask, batch,
# XSeg run ("" without an XSeg mask).
_SwapKey = tuple[int, bytes, bool, int, str]


class FramePreview:
    """Frames of `clip` swapped by the run in `model_dir` (its latest checkpoint, or `step`) in
    `direction`, as facejax convert writes them. `detector`: the face finding the constructor
    walks the clip with (another in the options walks it again, once). Keeps up to
    `max_frame_bytes` of decoded frames and the model's output for `max_swaps` crops. Renders
    one request at a time (a lock), so a web server's threads may share one.

    Raises:
      UserError: a missing or unreadable clip or run (one line, as facejax convert says it).
    """

    def __init__(self, model_dir: str, clip: str, direction: str = "b2a",
                 step: int | None = None, detector: str = "hog",
                 max_frame_bytes: int = 2 << 30, max_swaps: int = 512):
        convert.ConvertOptions(direction=direction, detector=detector).check()
        self.source = video.FrameSource(clip)
        self.fps = self.source.info.fps if self.source.kind == "video" else None
        self.direction, self.detector = direction, detector
        self.run = inference.load_swapper(model_dir, step)
        self._models: dict[tuple, inference.SwapModel] = {}  # (learned mask, batch) ->
        self._segmenters: dict[tuple, xseg_convert.Segmenter] = {}  # (XSeg run, batch) ->
        self._frames: dict[int, np.ndarray | None] = {}
        self._frame_budget = max_frame_bytes
        self._count: int | None = None  # set by the first walk
        self._tracks: dict[tuple, list] = {}      # (detector, select, confirm_every) -> track
        self._smoothed: dict[tuple, list] = {}    # the same + (smooth,) -> smoothed track
        self._batches: dict[tuple, dict] = {}     # the same + (batch,) -> {frame: its batch}
        self._swaps: collections.OrderedDict[_SwapKey, tuple] = collections.OrderedDict()
        self._max_swaps = max_swaps
        self._lock = threading.Lock()
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

    def _smoothed_track(self, opts: convert.ConvertOptions) -> list:
        """[(index, True or None where unreadable, landmarks or None)] of every frame: the
        smoothed() items conversion pastes with (the frame slot marks only readability)."""
        key = (opts.detector, opts.select, opts.confirm_every, opts.smooth)
        if key not in self._smoothed:
            found = ((i, True if ok else None, points)
                     for i, (ok, points) in enumerate(self._track(opts)))
            self._smoothed[key] = list(convert.smoothed(found, self.fps, opts.smooth))
        return self._smoothed[key]

    def landmarks(self, index: int, opts: convert.ConvertOptions) -> np.ndarray | None:
        """The landmarks conversion pastes frame `index`'s face with (None: no face)."""
        return self._smoothed_track(opts)[index][2]

    def _batch_of(self, index: int, opts: convert.ConvertOptions) -> list:
        """The frames conversion runs the model on together with frame `index`."""
        key = (opts.detector, opts.select, opts.confirm_every, opts.smooth, opts.batch)
        if key not in self._batches:
            self._batches[key] = {item[0]: group for group in convert.model_batches(
                self._smoothed_track(opts), opts.batch) for item in group}
        return self._batches[key][index]

    # ---- the model and the paste ---------------------------------------------------------------

    def _model(self, with_mask: bool, batch: int) -> inference.SwapModel:
        if (with_mask, batch) not in self._models:
            self._models[with_mask, batch] = inference.swap_model(self.run, self.direction,
                                                                  batch, with_mask)
        return self._models[with_mask, batch]

    def _segmenter(self, opts: convert.ConvertOptions) -> xseg_convert.Segmenter | None:
        if opts.mask not in compose.XSEG:
            return None
        key = (opts.xseg_model, opts.batch)
        if key not in self._segmenters:
            self._segmenters[key] = xseg_convert.load(opts.mask, opts.xseg_model, opts.batch)
        return self._segmenters[key]

    def _swap(self, index: int, opts: convert.ConvertOptions) -> tuple:
        """(affine, crop landmarks, face, learned mask, XSeg mask) of frame `index`: its model
        batch run as conversion runs it (the same crops in the same places, so the same faces
        and masks), each of the batch's results cached."""
        with_mask = opts.mask in compose.LEARNED
        xseg_run = opts.xseg_model if opts.mask in compose.XSEG else ""
        group = self._batch_of(index, opts)
        keys = [(i, points.tobytes(), with_mask, opts.batch, xseg_run) for i, _, points in group]
        mine = keys[[i for i, _, _ in group].index(index)]
        if mine not in self._swaps:
            model, segment = self._model(with_mask, opts.batch), self._segmenter(opts)
            crops = [convert.face_crop(model, self.frame(i), points) for i, _, points in group]
            faces, learned = convert.model_faces(model.fn(np.stack([c for _, _, c in crops])))
            xseg = xseg_convert.crop_masks(segment, [self.frame(i) for i, _, _ in group],
                                           [m for m, _, _ in crops], model.size)
            for key, (affine, crop_points, _), face, mask, xmask in zip(keys, crops, faces,
                                                                        learned, xseg):
                self._swaps[key] = (affine, crop_points, face, mask, xmask)
        self._swaps.move_to_end(mine)  # the least recently shown go first
        while len(self._swaps) > max(self._max_swaps, 1):
            self._swaps.popitem(last=False)
        return self._swaps[mine]

    def render(self, index: int, opts: convert.ConvertOptions) -> np.ndarray:
        """Frame `index` (0-based) as facejax convert writes it with `opts`: H x W x 3 uint8
        RGB (twice as wide with opts.preview); a frame without a face comes back unchanged.

        Raises:
          UserError: bad options, another direction than the preview's, an index outside the
            clip, or a frame that cannot be decoded (conversion skips it).
        """
        return self.render_with_mask(index, opts)[0]

    def render_with_mask(self, index: int,
                         opts: convert.ConvertOptions) -> tuple[np.ndarray, np.ndarray]:
        """(render(index, opts), the blend mask it was pasted with: float32 [H, W] in [0, 1],
        zero where no face), for a view of the mask."""
        with self._lock:  # a web server's threads may ask at once; the caches are not shared
            return self._render(index, opts)

    def _render(self, index: int, opts: convert.ConvertOptions) -> tuple[np.ndarray, np.ndarray]:
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
            return (convert.output_frame(frame, frame, opts),
                    np.zeros(frame.shape[:2], np.float32))
        affine, crop_points, face, learned, xseg = self._swap(index, opts)
        return convert.paste_frame(frame, face, affine, crop_points, opts, None, learned, xseg)
