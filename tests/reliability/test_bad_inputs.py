"""Bad data through the tools, and files we must not trust: a counted skip or a one-line error,
never a traceback, never a half-written output, never code run from data."""

import json
import os
import re
import shutil

import cv2
import numpy as np
import pytest

from facejax.errors import UserError
from facejax import images
from facejax.faces import video
from tests.helpers import GRID, ROOT, run_tool

CLIP = os.path.join(GRID, "GRID_bbaf2n.mpg")


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory):
    """A folder of awkward images of a real GRID face: 12000x12000, 8x8, gray, RGBA, 16-bit,
    0 bytes, truncated JPEG. Returns (folder, {name: (height, width)} of the readable ones)."""
    d = tmp_path_factory.mktemp("odd")
    face = video.FrameSource(CLIP).read(5)  # RGB
    bgr = face[..., ::-1]
    cv2.imwrite(str(d / "huge.jpg"), cv2.resize(bgr, (12000, 12000)),
                [cv2.IMWRITE_JPEG_QUALITY, 60])
    cv2.imwrite(str(d / "tiny.png"), cv2.resize(bgr, (8, 8), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(d / "gray.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "rgba.png"), np.dstack([bgr, np.full(bgr.shape[:2], 200, np.uint8)]))
    cv2.imwrite(str(d / "deep.png"), bgr.astype(np.uint16) * 257)
    (d / "zero.png").write_bytes(b"")
    (d / "truncated.jpg").write_bytes((d / "huge.jpg").read_bytes()[:3000])
    h, w = face.shape[:2]
    return d, {"huge.jpg": (12000, 12000), "tiny.png": (8, 8), "gray.png": (h, w),
               "rgba.png": (h, w), "deep.png": (h, w)}


def _no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_extract_counts_odd_images_and_keeps_the_faces(odd_images, tmp_path):
    folder, _ = odd_images
    out = tmp_path / "faces"
    proc = run_tool("tools/extract.py", f"--input={folder}", f"--output={out}", "--size=64")
    _no_traceback(proc)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    # huge, gray, RGBA and 16-bit hold the face; 8x8 holds none; 0-byte and truncated are
    # unreadable.
    assert summary["frames_read"] == 7 and summary["faces_kept"] == 4
    assert summary["skipped"]["no_face"] == 1 and summary["skipped"]["unreadable"] == 2
    sources = sorted(os.path.basename(json.loads(line)["source"])
                     for line in open(out / "alignments.jsonl"))
    assert sources == ["deep.png", "gray.png", "huge.jpg", "rgba.png"]
    assert not [p for p in os.listdir(out / "inputs") if "partial" in p]


def test_convert_handles_odd_images(odd_images, tiny_ae_run, tmp_path):
    folder, shapes = odd_images
    out = tmp_path / "swapped"
    proc = run_tool("tools/convert.py", f"--model={tiny_ae_run}", f"--input={folder}",
                    f"--output={out}")
    _no_traceback(proc)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 7 and summary["faces_swapped"] == 4
    assert summary["passed_through"] == 1 and summary["unreadable"] == 2
    for name, (h, w) in shapes.items():
        image = video.read_image(str(out / name))
        assert image.shape == (h, w, 3), name
    assert not (out / "zero.png").exists() and not (out / "truncated.jpg").exists()
    assert not [p for p in os.listdir(out) if p.startswith(".")]


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"),
    (b"this is text, not a video", "not a readable video"),
])
def test_evaluate_and_convert_refuse_a_broken_video(tmp_path, content, needle):
    from facejax import evaluate
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(content)
    for a, b in ((str(bad), CLIP), (CLIP, str(bad))):
        with pytest.raises(UserError, match=re.escape(str(bad)) + ".*" + needle):
            evaluate.evaluate(str(tmp_path / "no-model"), a, b, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match=re.escape(str(bad))):
        video.FrameSource(str(bad))


def test_a_corrupt_alignments_file_is_one_line(grid_faces, tmp_path):
    from facejax.data import extract, tfds_faces
    d = tmp_path / "faces"
    shutil.copytree(grid_faces["a"], d, ignore=shutil.ignore_patterns("tfds"))
    key = os.listdir(d / extract.INPUTS)[0]
    path = d / extract.INPUTS / key / "alignments.jsonl"
    lines = path.read_text().splitlines()
    for bad, what in ((lines[3][: len(lines[3]) // 2], "JSONDecodeError"),
                      (lines[3].replace('"frame":3', '"frame":"../../../etc/x"'), "frame"),
                      (json.dumps(dict(json.loads(lines[3]), landmarks=[[0, 0]])), "landmarks")):
        path.write_text("\n".join(lines[:3] + [bad] + lines[4:]) + "\n")
        with pytest.raises(UserError, match=rf"alignments.jsonl:4: not a valid face record "
                                            rf".*{what}"):
            tfds_faces.read_records(str(d))


SOURCES = [os.path.join(ROOT, d) for d in ("facejax", "tools", "experiments")]


def test_no_code_runs_from_data_or_checkpoints():
    """No pickle anywhere: no pickle/dill/joblib/torch.load, no np.load without
    allow_pickle=False, no eval/exec, no yaml.load; checkpoints are orbax (tensorstore + JSON),
    configs JSON, datasets TFDS protos."""
    banned = re.compile(r"\bimport (pickle|dill|joblib|cloudpickle)\b|\bpickle\.|allow_pickle="
                        r"True|torch\.load|\beval\(|\bexec\(|yaml\.load\(|marshal\.loads")
    np_load = re.compile(r"np\.load\((?![^)]*allow_pickle=False)")
    offenders = []
    for base in SOURCES:
        for root, _, files in os.walk(base):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(root, f)
                    text = open(path).read()
                    for rx in (banned, np_load):
                        offenders += [f"{path}: {m.group(0)}" for m in rx.finditer(text)]
    assert not offenders, offenders


def test_names_from_data_cannot_write_outside_the_output(tmp_path):
    """Input file names and identity labels end up in records, never as paths: extraction of
    oddly named inputs writes only inside its output folder."""
    src = tmp_path / "in"
    src.mkdir()
    frame = video.FrameSource(CLIP).read(5)
    for name in ("..png", "...png", "a;rm -rf ~.png", "$(touch pwned).png", "ü name.png"):
        images.write_image(str(src / name), frame)
    before = set(os.listdir(tmp_path))
    out = tmp_path / "out"
    proc = run_tool("tools/extract.py", f"--input={src}", f"--output={out}", "--size=64",
                    "--identity=../../escape")
    _no_traceback(proc)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(os.listdir(tmp_path)) == before | {"out"}
    assert not os.path.exists(os.path.join(ROOT, "pwned"))
    for root, dirs, files in os.walk(out):
        for name in dirs + files:
            full = os.path.realpath(os.path.join(root, name))
            assert full.startswith(os.path.realpath(out) + os.sep), full
    records = [json.loads(line) for line in open(out / "alignments.jsonl")]
    assert len(records) == 5 and {r["identity"] for r in records} == {"../../escape"}
    from facejax import evaluate
    assert "/" not in evaluate.distractor_name("../../etc", set())


def test_a_truncated_run_config_is_one_line_saying_what_to_do(tiny_ae_run, tmp_path):
    wd = tmp_path / "run"
    shutil.copytree(tiny_ae_run, wd)
    text = (wd / "config.json").read_text()
    (wd / "config.json").write_text(text[:len(text) // 2])
    proc = run_tool("tools/train.py", "--config=experiments/deepfakes_original.py:tiny",
                    f"--workdir={wd}")
    _no_traceback(proc)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {wd}/config.json (the run's config): not valid JSON")
    assert "the checkpoints beside it are intact" in line and "rerun the run's own command" in line
    proc = run_tool("tools/convert.py", f"--model={wd}", f"--input={GRID}/GRID_brbk7n.mpg",
                    f"--output={tmp_path}/out.mp4")
    _no_traceback(proc)
    assert proc.returncode == 2 and "config.json (the run's config): not valid JSON" in \
        proc.stderr.strip().splitlines()[-1]
    assert os.path.isdir(wd / "checkpoints" / "8")
