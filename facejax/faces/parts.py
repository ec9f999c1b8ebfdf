"""The 68-point (iBUG 300-W) landmark scheme's point groups, the face parts the part masks are
made of and the pieces of DeepFaceLab's face hull: constants only (no OpenCV or dlib), so that
the training tasks can name the parts' channels without importing the classical computer
vision."""

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

# The face hull (masks.face_hull) is the union of these convex hulls, DeepFaceLab's
# (`LandmarksProcessor.get_image_hull_mask`). A union rather than one convex hull of jaw and brows:
# where the outer end of a brow lies inside the line from the jaw's top to the next brow point (a
# turned face's temple), the union keeps that notch, which one convex hull would bridge with
# background; it then stays closest to DeepFaceLab's mask (docs/benchmarks.md, issue 31).
FACE_HULL_PARTS = (
    (*range(0, 9), 17),
    (*range(8, 17), 26),
    (17, 18, 19, 8),
    (24, 25, 26, 8),
    (*range(19, 25), 8),
    (*range(17, 22), 27, *range(31, 36), 8),
    (*range(22, 27), 27, *range(31, 36), 8),
    (*range(27, 31), *range(31, 36)),
)

# The eyes/mouth priority mask (masks.eyes_mouth_mask): the eyes and the inner lips, so that an
# open mouth's teeth and tongue count and the outer lip line does not.
EYES_MOUTH_PARTS = ((RIGHT_EYE, LEFT_EYE), (INNER_LIPS,))
