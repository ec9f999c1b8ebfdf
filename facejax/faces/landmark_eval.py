"""How well extraction finds faces and places their landmarks, measured on ground truth.

Annotated stills: menpo-style `.pts` files beside their images, and dlib's imglab XML (boxes
with 68 parts). Each annotated face counts as found when one of the detector's faces, through
the landmark predictor, lands on it (normalised mean error under MATCH_NME); its NME is then
that face's, by the outer-eye-corner distance. The face extraction keeps per image (the
finder's pick, as `facejax extract` runs it) is scored on its own. Videos: the frame-to-frame
jitter of the 68 points of the faces extraction keeps (second difference, per eye distance).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import xml.etree.ElementTree as ET

import numpy as np

from facejax.errors import UserError
from facejax.faces import find, landmarks as lm, video

# A detection whose predicted landmarks are this close to an annotated face is that face: a
# neighbouring face's landmarks are several eye distances away.
MATCH_NME = 0.25


@dataclasses.dataclass
class Annotated:
    """One image and the 68-point annotations of the faces in it."""
    path: str
    faces: list  # float32 [68, 2] each


def read_pts(path: str) -> np.ndarray:
    """A menpo/ibug `.pts` file's 68 points in pixel coordinates (the file's are 1-based),
    float32 [68, 2]."""
    try:
        with open(path) as f:
            text = f.read()
        body = text[text.index("{") + 1:text.index("}")]
        points = np.array(body.split(), np.float32).reshape(-1, 2)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable .pts landmark file ({e})")
    if points.shape != (68, 2):
        raise UserError(f"{path}: {len(points)} points, expected 68")
    return points - 1.0


def read_imglab(path: str) -> list[Annotated]:
    """dlib imglab XML: the images (paths relative to the file) and their faces' 68 parts."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise UserError(f"{path}: not a readable imglab XML file ({e})")
    out = []
    for image in root.iter("image"):
        faces = []
        for box in image.iter("box"):
            parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y")))
                     for p in box.iter("part")}
            if len(parts) == 68:
                faces.append(np.array([parts[i] for i in range(68)], np.float32))
        if faces:
            out.append(Annotated(os.path.join(os.path.dirname(path), image.get("file")), faces))
    return out


def annotated_sets(root: str) -> dict[str, list[Annotated]]:
    """{set name: annotated images} under a ground-truth folder: each folder of `.pts` files,
    and each imglab XML (the same image listed by several XML files is kept once)."""
    sets = {}
    for folder in sorted(glob.glob(os.path.join(root, "*"))):
        items = []
        for pts in sorted(glob.glob(os.path.join(folder, "*.pts"))):
            stem = pts[:-4]
            image = next((stem + e for e in video.IMAGE_EXTENSIONS if os.path.exists(stem + e)),
                         None)
            if image:
                items.append(Annotated(image, [read_pts(pts)]))
        seen = set()
        for xml in sorted(glob.glob(os.path.join(folder, "*.xml"))):
            for item in read_imglab(xml):
                if item.path not in seen:
                    seen.add(item.path)
                    items.append(item)
        if items:
            sets[os.path.basename(folder)] = items
    return sets


def score_image(item: Annotated, finder: find.FaceFinder) -> dict:
    """Found faces and their NMEs for one annotated image, and the NME of the face the finder
    keeps (None when it keeps none or one that is not annotated)."""
    rgb = video.read_image(item.path)
    predicted = [face.landmarks for face in finder.candidates(rgb)]
    nmes = []
    for truth in item.faces:
        errors = [lm.normalised_mean_error(p, truth) for p in predicted]
        best = min(errors, default=np.inf)
        nmes.append(float(best) if best < MATCH_NME else None)
    finder.reset()
    face, _ = finder(rgb)
    kept = None
    if face is not None:
        errors = [lm.normalised_mean_error(face.landmarks, t) for t in item.faces]
        kept = float(min(errors)) if min(errors) < MATCH_NME else None
    return {"image": os.path.basename(item.path), "faces": len(item.faces),
            "nme": nmes, "kept_nme": kept}


def summarise(rows: list[dict]) -> dict:
    """Recall and NME mean / median / max over the annotated faces of a set."""
    found = [n for r in rows for n in r["nme"] if n is not None]
    total = sum(r["faces"] for r in rows)
    kept = [r["kept_nme"] for r in rows if r["kept_nme"] is not None]
    stats = lambda v: ({"mean": float(np.mean(v)), "median": float(np.median(v)),
                        "max": float(np.max(v))} if v else None)
    return {"images": len(rows), "faces": total, "found": len(found),
            "recall": len(found) / max(total, 1), "nme": stats(found),
            "kept_nme": stats(kept), "kept_of_images": f"{len(kept)}/{len(rows)}"}


def video_jitter(path: str, finder: find.FaceFinder) -> dict:
    """The jitter of the landmarks extraction keeps over a video (`landmarks.jitter`), smoothed
    as the finder smooths them, and the frames with a face."""
    source = video.FrameSource(path)
    finder.reset(source.info.fps)
    track = []
    for _, frame in source.frames():
        face, _ = finder(frame) if frame is not None else (None, None)
        track.append(None if face is None else face.landmarks)
    runs, current = [], []
    for pts in track + [None]:  # jitter within unbroken runs of frames with a face
        if pts is None:
            if len(current) >= 3:
                runs.append(np.stack(current))
            current = []
        else:
            current.append(pts)
    value = (float(np.average([lm.jitter(r) for r in runs], weights=[len(r) for r in runs]))
             if runs else float("nan"))
    return {"video": os.path.basename(path), "frames": len(track),
            "with_face": sum(p is not None for p in track), "jitter": value}

