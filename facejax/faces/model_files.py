"""Paths of dlib's model files, shipped by the `face-recognition-models` package.

That package's `__init__` imports `pkg_resources` (gone from setuptools 81+), so the files are
located through the import system without importing the package.
"""

import importlib.util
import os

from facejax.errors import UserError

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
MMOD_DETECTOR = "mmod_human_face_detector.dat"
RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"


def model_path(name: str) -> str:
    """Returns the path of one of dlib's model files.

    Raises:
      UserError: the package or the file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("face-recognition-models is not installed: pip install -r requirements.txt")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", name)
    if not os.path.isfile(path):
        raise UserError(f"{path}: dlib model file missing; reinstall face-recognition-models")
    return path
