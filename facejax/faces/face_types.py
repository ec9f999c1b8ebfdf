"""DeepFaceLab's face types: the square crop each one frames on a face, from its 68 landmarks.

DeepFaceLab (facelib/LandmarksProcessor.get_transform_mat) fits a similarity from 33 landmarks
(brows, nose, eyes and the two mouth corners: no lips, so an opening mouth does not move the
crop) to its unit-square template, and takes a square around the template's centre whose side
grows with the type's padding: 1 + 2·√2·padding template units. Whole face moves the centre up
by 0.07 units, head by 0.5 units and sideways with the head's yaw.

Here the same squares are written in the units of facejax's own template (align.MEAN_FACE: the
inner points span x ∈ [0, 1], brows at y = 0, chin at y = 1.261), where DeepFaceLab's template
unit is UNIT long and its centre sits at UNIT_CENTRE. These constants come from fitting
DeepFaceLab's template onto MEAN_FACE (docs/deepfacelab_saehd.md, section 2); the tests check
the corners against values worked out with DeepFaceLab's own formula.

Pixel convention: as DeepFaceLab's (cv2.getAffineTransform of the square's corners onto
(0, 0), (S, 0), (S, S)), the square's corners land on pixel coordinates 0 and S.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from facejax.faces import align
from facejax.faces.parts import FACE_TYPES as NAMES

# The landmarks the fit uses, as DeepFaceLab's template lists them: brows, nose and eyes
# (17..47) and the two mouth corners (48, 54).
FIT_POINTS = list(range(17, 49)) + [54]
UNIT = 1.027561                       # one DeepFaceLab template unit, in MEAN_FACE units
UNIT_CENTRE = (0.510145, 0.499663)    # its template's centre (0.5, 0.5), in MEAN_FACE units
PADDING = {"half": 0.0, "mid": 0.0675, "full": 0.2109375, "whole": 0.40, "head": 0.70}
RAISE = {"whole": 0.07, "head": 0.5}  # the centre moved up, in template units


def check_name(face_type: str, flag: str = "--config.model.face_type") -> str:
    """`face_type` if it is one of NAMES; else a UserError naming the flag."""
    if face_type not in NAMES:
        from facejax.errors import UserError
        raise UserError(f"{flag}={face_type}: expected one of {', '.join(NAMES)}")
    return face_type


def to_template(landmarks: np.ndarray) -> np.ndarray:
    """[2, 3] similarity from image coordinates to MEAN_FACE units, fitted on FIT_POINTS."""
    points = np.asarray(landmarks, np.float64)
    return align.umeyama(points[FIT_POINTS], align.MEAN_FACE[FIT_POINTS])


def head_yaw(template_points: np.ndarray) -> float:
    """DeepFaceLab's yaw term for the head crop, from 68 points in MEAN_FACE units: how much
    further the jaw reaches on the image's right of the nose line than on its left, in template
    units, squashed near zero (y·|tanh 2y|)."""
    x = template_points[:, 0]
    left = np.mean(x[[27, 28, 29]] - x[[0, 1, 2]])
    right = np.mean(x[[16, 15, 14]] - x[[27, 28, 29]])
    y = (right - left) / UNIT
    return float(y * abs(math.tanh(2 * y)))


def square(face_type: str, template_points: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(centre [2], side) of the face type's square in MEAN_FACE units; the head's centre needs
    the face's 68 points in those units (`template_points`)."""
    check_name(face_type)
    side = UNIT * (1.0 + 2.0 * math.sqrt(2.0) * PADDING[face_type])
    centre = np.array([UNIT_CENTRE[0], UNIT_CENTRE[1] - UNIT * RAISE.get(face_type, 0.0)])
    if face_type == "head":
        if template_points is None:
            raise ValueError("the head crop's centre depends on the face's yaw: give its points")
        centre[0] += UNIT * head_yaw(template_points) / 2.0
    return centre, side


def matrix(landmarks: np.ndarray, size: int, face_type: str, grow: float = 1.0) -> np.ndarray:
    """The [2, 3] affine from image coordinates to a size×size crop of the face type's square,
    its side times `grow` around the same centre (grow > 1 keeps a margin around the square, as
    the training loader does for augmentation)."""
    fit = to_template(landmarks)
    points = align.transform_points(fit, landmarks) if face_type == "head" else None
    centre, side = square(face_type, points)
    side *= grow
    scale = size / side
    crop = np.array([[scale, 0.0, -(centre[0] - side / 2) * scale],
                     [0.0, scale, -(centre[1] - side / 2) * scale]])
    return align.compose(crop, fit)


def corners(affine: np.ndarray, size: int) -> np.ndarray:
    """[4, 2] image points of the crop's corners (0, 0), (S, 0), (S, S), (0, S)."""
    square_px = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    return align.transform_points(align.invert(affine), square_px)


@dataclasses.dataclass(frozen=True)
class Framing:
    """Where a model's square crop sits on a face: a face type, or (families without one) the
    extraction's own framing, `coverage` = jaw width / crop side around align.CENTRE."""
    face_type: str = ""
    coverage: float = 0.75

    def matrix(self, landmarks: np.ndarray, size: int, grow: float = 1.0) -> np.ndarray:
        """[2, 3] image -> size×size crop affine for the face with these 68 landmarks."""
        if self.face_type:
            return matrix(landmarks, size, self.face_type, grow)
        return align.align_matrix(landmarks, size, self.coverage / grow)

    def mean_face(self, size: int) -> np.ndarray:
        """[68, 2] the mean face's landmarks in a size×size crop of this framing."""
        return align.transform_points(self.matrix(align.MEAN_FACE, size), align.MEAN_FACE)

    def record(self) -> dict:
        """The framing for a model's JSON description (export)."""
        return {"face_type": self.face_type or None, "coverage": self.coverage}


def coverage_needed(face_type: str) -> float:
    """The largest extraction --coverage (align.align_matrix's) whose crops hold the whole
    square of `face_type` for a face looking straight ahead."""
    centre, side = square(face_type, align.MEAN_FACE)
    reach = np.abs(centre - align.CENTRE).max() + side / 2  # from the crop's centre, MF units
    return float(align.JAW_WIDTH / (2 * reach))
