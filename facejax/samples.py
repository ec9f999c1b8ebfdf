"""Obtains the two sample clips of the README's main job and checks their sha256.

They are assets/examples/driving/d6.mp4 and d9.mp4 of KwaiVGI/LivePortrait at commit
1986663be3b6902605d32200c01f4bfd36cda83d (MIT licence). Looked for, in order: --samples DIR,
$FACEJAX_SAMPLES, ../shared/data/videos beside the repository; otherwise downloaded
(`facejax samples --out=runs/samples`).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request

from facejax.errors import UserError
from facejax.files import atomic_write_bytes

# The project's shared folder beside a checkout (sample clips, ground truth, PyTorch references);
# FACEJAX_SHARED points elsewhere.
SHARED = os.environ.get("FACEJAX_SHARED", os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared"))
COMMIT = "1986663be3b6902605d32200c01f4bfd36cda83d"
URL = f"https://raw.githubusercontent.com/KwaiVGI/LivePortrait/{COMMIT}/assets/examples/driving/"
SAMPLES = {
    # name: (relative path in a samples folder, upstream file, sha256)
    "a": ("liveportrait/driving_d6.mp4", "d6.mp4",
          "00e3ea79bbf28cbdc4fbb67ec655d9a0fe876e880ec45af55ae481348d0c0fff"),
    "b": ("liveportrait/driving_d9.mp4", "d9.mp4",
          "9a414aa1d547be35306d692065a2157434bf40a6025ba8e30ce12e5bb322cc33"),
}


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def candidate_dirs(samples_dir: str | None) -> list[str]:
    dirs = [samples_dir, os.environ.get("FACEJAX_SAMPLES"),
            os.path.join(SHARED, "data", "videos")]
    return [d for d in dirs if d]


def obtain(samples_dir: str | None, out_dir: str) -> dict:
    """Returns {"a": path, "b": path} of verified sample clips, downloading into out_dir if needed.

    Raises:
      UserError: a clip is found with the wrong checksum, or cannot be obtained.
    """
    found = {}
    for name, (rel, upstream, digest) in SAMPLES.items():
        for d in candidate_dirs(samples_dir):
            for path in (os.path.join(d, rel), os.path.join(d, os.path.basename(rel)),
                         os.path.join(d, upstream)):
                if os.path.isfile(path):
                    if sha256(path) != digest:
                        raise UserError(f"{path}: sha256 differs from the published sample")
                    found[name] = path
                    break
            if name in found:
                break
        if name not in found:
            os.makedirs(out_dir, exist_ok=True)
            path = os.path.join(out_dir, upstream)
            if not (os.path.isfile(path) and sha256(path) == digest):
                try:
                    with urllib.request.urlopen(URL + upstream, timeout=60) as r:
                        data = r.read()
                except OSError as e:
                    raise UserError(f"--samples: {upstream} not found locally and the download "
                                    f"failed ({e}); give --samples DIR or FACEJAX_SAMPLES")
                if hashlib.sha256(data).hexdigest() != digest:
                    raise UserError(f"{URL + upstream}: downloaded file fails its sha256 check")
                atomic_write_bytes(path, data)
            found[name] = path
    return found

