"""Compositing a generated face into its frame: colour matching in crop space, the inverse
warp (bicubic, as DeepFaceLab's merger), a feathered mask, and alpha or seamless blending.
numpy and OpenCV only."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from facejax.errors import UserError
from facejax.faces import align, masks

# The segmentation model's mask of the frame's face, as --mask names it: DeepFaceLab's merger
# calls the mode XSeg, and users look for that name. Spelled here only (test_protocol checks
# that no module outside the tasks spells a family's name, this option value excepted).
SEGMENTED = "xseg"
MASKS = ("hull", "crop", "learned", "learned_x_hull", SEGMENTED, "xseg_x_learned")
LEARNED = ("learned", "learned_x_hull", "xseg_x_learned")  # need the model's learned mask
XSEG = (SEGMENTED, "xseg_x_learned")  # need a segmentation model's mask of the frame's crop
SOFT = LEARNED + (SEGMENTED,)  # soft masks: resampled bicubic (uncrop_mask)
BLENDS = ("alpha", "seamless")


@dataclasses.dataclass
class PasteOptions:
    """How a generated face goes into its frame (convert.ConvertOptions extends it)."""
    mask: str = "hull"          # "hull" (landmark hull), "crop" (the whole crop), "learned"
                                # (the model's own mask), "learned_x_hull" (their product),
                                # "xseg" (XSeg's mask of the frame's face: what hides it is
                                # left out) or "xseg_x_learned" (XSeg's times the learned)
    erode: int = 0              # pixels in the frame; negative grows the mask
    blur: int = 8               # feathering radius in frame pixels; 0 = hard edge
    color: str = "rct"          # "none", "rct" (LAB mean/std), "hist" (histogram matching)
    blend: str = "alpha"        # "alpha" or "seamless" (OpenCV seamless clone)

    def check(self):
        for name, value, allowed in (("mask", self.mask, MASKS),
                                     ("color", self.color, tuple(COLOR)),
                                     ("blend", self.blend, BLENDS)):
            if value not in allowed:
                raise UserError(f"--{name} {value}: expected one of {', '.join(allowed)}")


def match_rct(face: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer: `face`'s LAB mean/std set to `target`'s, within `mask`."""
    sel = mask > 0.5
    if sel.sum() < 10:
        return face
    f = cv2.cvtColor(face, cv2.COLOR_RGB2LAB).astype(np.float32)
    t = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    fm, fs = f[sel].mean(0), f[sel].std(0) + 1e-6
    tm, ts = t[sel].mean(0), t[sel].std(0) + 1e-6
    out = (f - fm) * (ts / fs) + tm
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def match_histogram(face: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel histogram matching of `face` to `target` within `mask`."""
    sel = mask > 0.5
    if sel.sum() < 10:
        return face
    out = face.copy()
    for c in range(3):
        src_vals = face[..., c][sel]
        ref_vals = target[..., c][sel]
        src_cdf = np.cumsum(np.bincount(src_vals, minlength=256)) / src_vals.size
        ref_cdf = np.cumsum(np.bincount(ref_vals, minlength=256)) / ref_vals.size
        lut = np.searchsorted(ref_cdf, src_cdf).clip(0, 255).astype(np.uint8)
        out[..., c] = lut[face[..., c]]
    return out


COLOR = {"none": lambda f, t, m: f, "rct": match_rct, "hist": match_histogram}


def crop_mask_of(kind: str, crop_points: np.ndarray, size: int,
                 learned: np.ndarray | None = None,
                 xseg: np.ndarray | None = None) -> np.ndarray:
    """float32 [S, S] blend mask of the crop in [0, 1]: the landmark hull, the whole crop, the
    model's learned mask, the learned mask inside the hull, the segmentation model's mask of
    the frame's crop (`xseg`: the visible face, its occluders left out) or its product with
    the learned mask (DeepFaceLab's merger modes XSeg and XSeg-prd*learned)."""
    if kind == "crop":
        return np.ones((size, size), np.float32)
    if kind in XSEG:
        if xseg is None:
            raise ValueError(f"mask {kind!r} needs the segmentation model's mask of the crop")
        visible = _soft(xseg, size)
        if kind == SEGMENTED:
            return visible
        if learned is None:
            raise ValueError(f"mask {kind!r} needs the model's learned mask")
        return visible * _soft(learned, size)
    hull = masks.face_hull(crop_points, (size, size)).astype(np.float32) / np.float32(255)
    if kind == "hull":
        return hull
    if learned is None:
        raise ValueError(f"mask {kind!r} needs the model's learned mask")
    soft = _soft(learned, size)
    return soft * hull if kind == "learned_x_hull" else soft


def _soft(mask: np.ndarray, size: int) -> np.ndarray:
    """A float mask of the crop as float32 [S, S] clipped to [0, 1]."""
    return np.clip(np.asarray(mask, np.float32).reshape(size, size), 0, 1)


def uncrop_face(face: np.ndarray, roi: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """float32: the generated crop warped into the frame region with the region -> crop affine
    `roi`, bicubic as DeepFaceLab's merger pastes, clipped to [0, 255] (bicubic overshoots)."""
    warped = align.uncrop(face.astype(np.float32), roi, shape, interpolation=cv2.INTER_CUBIC)
    return np.clip(warped, 0, 255)


def uncrop_mask(crop_mask: np.ndarray, roi: np.ndarray, shape: tuple[int, int],
                soft: bool) -> np.ndarray:
    """float32 [h, w] in [0, 1]: the crop's blend mask warped into the frame region.

    A learned (`soft`) mask is resampled bicubic, clipped to [0, 1], and values below 1/255 are
    set to 0, as DeepFaceLab's merger does: bicubic ringing would otherwise leave a faint
    veil of the swap far outside the face. A binary mask keeps its edge (nearest); feathering
    softens it afterwards.
    """
    interpolation = cv2.INTER_CUBIC if soft else cv2.INTER_NEAREST
    out = np.clip(align.uncrop(crop_mask, roi, shape, interpolation=interpolation), 0, 1)
    if soft:
        out[out < np.float32(1 / 255)] = 0
    return out


def on_grid(mask: np.ndarray | None, size: int) -> np.ndarray | None:
    """A square float mask [L, L] on the size×size grid of the same square (area average
    going down; None stays None)."""
    if mask is None or mask.shape[0] == size:
        return mask
    return cv2.resize(np.asarray(mask, np.float32), (size, size), interpolation=cv2.INTER_AREA)


def region_mask(kind: str, crop_mask: np.ndarray, roi: np.ndarray, shape: tuple[int, int],
                learned: np.ndarray | None, xseg: np.ndarray | None) -> np.ndarray:
    """float32 [h, w]: the blend mask in the frame region (uncrop_mask). An XSeg mask finer
    than the crop (cut at the segmentation model's side in the crop's framing,
    xseg_convert.crop_masks) goes in from its own grid, the crop's affine `roi` scaled by the
    sides' ratio (the framings are linear in the side), times the learned mask for
    xseg_x_learned; every other mask from the crop's grid."""
    size = crop_mask.shape[0]
    if kind not in XSEG or xseg is None or xseg.shape[0] == size:
        return uncrop_mask(crop_mask, roi, shape, kind in SOFT)
    fine = roi * (xseg.shape[0] / size)
    out = uncrop_mask(np.clip(np.asarray(xseg, np.float32), 0, 1), fine, shape, True)
    if kind != SEGMENTED:
        out *= uncrop_mask(_soft(learned, size), roi, shape, True)
    return out


def paste(frame: np.ndarray, face: np.ndarray, affine: np.ndarray, crop_points: np.ndarray,
          opts: PasteOptions, on_fallback=None,
          learned: np.ndarray | None = None,
          xseg: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Blends a generated crop back into `frame`. Returns (new frame, alpha mask [H, W]).

    All the work happens in the frame region the crop covers (plus the feathering margin), not
    on the whole frame. The face goes back bicubic (uncrop_face), the mask as uncrop_mask says.
    Where OpenCV's seamless clone fails (tiny or degenerate masks), the face is alpha-blended
    and `on_fallback(error)` is called. `learned`: the model's own mask of the crop, float
    [S, S] in [0, 1], for the "learned" masks; `xseg`: a segmentation model's mask of the
    frame's square (the one `affine` cuts), float [L, L] in [0, 1] at any side L >= S (a
    finer one goes into the frame from its own grid: region_mask), for the "xseg" masks.
    """
    size = face.shape[0]
    h, w = frame.shape[:2]
    original = align.crop(frame, affine, size)
    crop_mask = crop_mask_of(opts.mask, crop_points, size, learned, on_grid(xseg, size))
    face = COLOR[opts.color](face, original, crop_mask)
    corners = align.transform_points(align.invert(affine),
                                     np.array([[0, 0], [size, 0], [0, size], [size, size]]))
    margin = 2 * opts.blur + max(-opts.erode, 0) + 2
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - margin, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + margin, [w, h])
    alpha = np.zeros((h, w), np.float32)
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out, alpha
    roi = np.array(affine, np.float64).copy()
    roi[:, 2] += roi[:, :2] @ np.array([x0, y0], np.float64)  # ROI pixel -> crop pixel
    shape = (y1 - y0, x1 - x0)
    warped = uncrop_face(face, roi, shape)
    soft = opts.mask in SOFT
    a = masks.feather(region_mask(opts.mask, crop_mask, roi, shape, learned, xseg), opts.erode,
                      opts.blur)
    if soft:
        a[a < np.float32(1 / 255)] = 0  # the feathered edge's tail, cut as above
    alpha[y0:y1, x0:x1] = a
    if opts.blend == "seamless" and (a > 0.5).any():
        full = np.zeros_like(frame)
        full[y0:y1, x0:x1] = np.clip(warped + 0.5, 0, 255).astype(np.uint8)
        ys, xs = np.nonzero(alpha > 0.5)
        centre = (int((xs.min() + xs.max()) // 2), int((ys.min() + ys.max()) // 2))
        try:
            return cv2.seamlessClone(full, frame, (alpha > 0.5).astype(np.uint8) * 255, centre,
                                     cv2.NORMAL_CLONE), alpha
        except cv2.error as e:
            if on_fallback is not None:
                on_fallback(e)
    region = frame[y0:y1, x0:x1].astype(np.float32)
    blended = region + (warped - region) * a[..., None]
    out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out, alpha
