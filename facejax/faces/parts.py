"""The 68-point (iBUG 300-W) landmark scheme's point groups and the face parts the part masks
are made of: constants only (no OpenCV or dlib), so that the training tasks can name the parts'
channels without importing the classical computer vision."""

# Index ranges of the 68-point scheme.
JAW = range(0, 17)
RIGHT_BROW = range(17, 22)   # the subject's right: image left
LEFT_BROW = range(22, 27)
NOSE_BRIDGE = range(27, 31)
RIGHT_EYE = range(36, 42)
LEFT_EYE = range(42, 48)
OUTER_LIPS = range(48, 60)
INNER_LIPS = range(60, 68)

# The channels of the part masks (masks.part_masks, the records' "parts"), in order, and the
# point groups each is the convex hull of.
PART_NAMES = ("eyes", "brows", "nose", "mouth")
PART_POINTS = {
    "eyes": (RIGHT_EYE, LEFT_EYE),
    "brows": (RIGHT_BROW, LEFT_BROW),
    "nose": (range(27, 36),),
    "mouth": (OUTER_LIPS,),
}

# DeepFaceLab's face types, narrowest first: the square crops faces/face_types.py computes.
FACE_TYPES = ("half", "mid", "full", "whole", "head")
