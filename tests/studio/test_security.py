"""The studio's guards over real HTTP: no token, no answer (403); ids from the browser that try to
leave the folders (`../`) refused with the folder untouched; a bad --faces folder is one line
and a non-zero exit at start-up; --host elsewhere warns; two studios and an extraction's lock on
one folder never interleave their writes."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

from facejax.lock import FolderLock
from tests.helpers import ROOT, run_tool
from tests.studio.conftest import KEY, folder_bytes, serving


def _request(url, body=None, cookie=None):
    """(status, headers, body bytes) of a GET, or of a POST of `body` as JSON."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if cookie:
        request.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _with_token(srv, path):
    return f"{srv.base}{path}{'&' if '?' in path else '?'}token={srv.studio.token}"


def test_a_request_without_the_token_is_refused(faces_dir):
    face = f"{KEY}/000003"
    assert os.path.exists(os.path.join(faces_dir, "inputs", face.split("/")[0]))
    paths = ["/faces", "/masks", "/training", "/merge", "/api/info", "/api/faces",
             f"/api/crop?face={face}", "/static/studio.js", "/api/masks"]
    with serving([faces_dir]) as srv:
        for path in paths:
            status, _, body = _request(srv.base + path)
            assert status == 403, path
            assert b"token" in body
            sep = "&" if "?" in path else "?"
            assert _request(f"{srv.base}{path}{sep}token=wrong{srv.studio.token}")[0] == 403
        assert _request(srv.base + "/api/faces/delete", {"folder": 0, "faces": [face]})[0] == 403
        assert os.path.exists(os.path.join(faces_dir, "inputs", face.split("/")[0], "faces",
                                           "000003.png"))
        status, headers, body = _request(_with_token(srv, f"/api/crop?face={face}"))
        assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
        cookie = headers["set-cookie"].split(";")[0]
        assert cookie == f"facejax_studio_token={srv.studio.token}"
        assert "HttpOnly" in headers["set-cookie"]
        # The page's own requests carry the cookie instead of the query.
        assert _request(srv.base + "/api/info", cookie=cookie)[0] == 200
        assert _request(srv.base + "/api/info", cookie="facejax_studio_token=x")[0] == 403


def test_ids_that_leave_the_folder_are_refused(faces_dir, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not yours")
    before = folder_bytes(faces_dir)
    crafted = ["../../secret", f"{KEY}/../../../secret",
               "../faces_a/inputs/x/000001", "..%2f..%2fsecret", "/etc/passwd",
               f"{KEY}/000003/../../../../secret"]
    with serving([faces_dir]) as srv:
        for face in crafted:
            q = urllib.parse.quote(face, safe="")
            status, _, body = _request(_with_token(srv, f"/api/crop?face={q}"))
            assert status == 400 and b"not a face id" in body, face
            assert b"not yours" not in body
            status, _, body = _request(_with_token(srv, "/api/faces/delete"),
                                       {"folder": 0, "faces": [face]})
            assert status == 400 and b"not a face id" in body, face
            status, _, _ = _request(_with_token(srv, "/api/masks"), {
                "folder": 0, "face": face, "size": 64,
                "polygons": [{"type": "include", "points": [[0, 0], [9, 0], [9, 9]]}]})
            assert status == 400, face
            assert _request(_with_token(srv, f"/api/masks?face={q}"))[0] == 400
        # The folder is an index into --faces, never a path.
        for folder in ("1", "-1", "../..", str(tmp_path)):
            q = urllib.parse.quote(folder, safe="")
            assert _request(_with_token(srv, f"/api/faces?folder={q}"))[0] == 400, folder
        # Static files stay inside the package's static folder.
        for path in ("/static/../face_set.py", "/static/..%2fface_set.py",
                     "/static/%2e%2e/face_set.py"):
            status, _, body = _request(_with_token(srv, path))
            assert status == 404 and b"FaceSet" not in body, path
        assert _request(_with_token(srv, "/static/studio.js"))[0] == 200
    assert folder_bytes(faces_dir) == before


def test_a_bad_faces_folder_is_one_line_at_start_up(tmp_path, faces_dir):
    import shutil
    from facejax.errors import UserError
    from facejax.studio import server
    bad = tmp_path / "bad_lines"
    shutil.copytree(faces_dir, bad)
    key = os.listdir(bad / "inputs")[0]
    (bad / "inputs" / key / "alignments.jsonl").write_text('{"record": "../x"}\n')
    # As a user runs it: one line, exit 2, nothing served.
    for folder, problem in ((str(tmp_path / "missing"), f"--faces {tmp_path}/missing: not an "
                                                        "extraction folder"),
                            (str(bad), f"{bad}/inputs/{key}/alignments.jsonl:1: not a face "
                                       "record")):
        proc = run_tool("tools/studio.py", f"--faces={faces_dir},{folder}", "--port=0",
                        timeout=180)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {problem}"), lines
        assert "facejax studio: open" not in proc.stdout
    # The other start-up checks, each one UserError naming its flag.
    for args, problem in ((([str(tmp_path)],), f"--faces {tmp_path}: not an extraction"),
                          (([faces_dir], str(tmp_path / "none")), "--workdir"),
                          (([faces_dir], str(tmp_path)), "no config.json"),
                          (([faces_dir], None, str(tmp_path / "clip.mp4")), "--workdir too"),
                          (([],), "--faces: give at least one")):
        try:
            server.open_studio(*args)
        except UserError as e:
            assert problem in str(e) and "\n" not in str(e)
        else:
            raise AssertionError(f"{args} was accepted")


def test_host_elsewhere_is_said_loudly(faces_dir):
    proc = subprocess.Popen(
        [sys.executable, "tools/studio.py", f"--faces={faces_dir}", "--host=0.0.0.0",
         "--port=0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("facejax studio: open http://0.0.0.0:"), line
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(line.split()[-1]).query)["token"]
        assert len(token[0]) >= 32
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert "WARNING: the studio is served on 0.0.0.0" in err


def test_the_folder_lock_keeps_writers_apart(faces_dir):
    before = folder_bytes(faces_dir)
    face_a, face_b = f"{KEY}/000010", f"{KEY}/000020"
    with serving([faces_dir]) as one, serving([faces_dir]) as two:
        # An extraction (or anything holding the folder's lock) refuses the studio's writes
        # with the holder named; nothing changes.
        held = FolderLock(faces_dir, ".lock", what="extraction folder")
        try:
            status, _, body = _request(_with_token(one, "/api/faces/delete"),
                                       {"folder": 0, "faces": [face_a]})
        finally:
            held.release()
        assert status == 409
        message = json.loads(body)["error"]
        assert f"in use by pid {os.getpid()}" in message and faces_dir in message
        assert folder_bytes(faces_dir) == before
        # Two studios on one folder: each change re-reads the folder under the lock, so the
        # second keeps the first's; undone newest first, the folder is as it was.
        for srv, face in ((one, face_a), (two, face_b)):
            status, _, body = _request(_with_token(srv, "/api/faces/delete"),
                                       {"folder": 0, "faces": [face]})
            assert status == 200, body
        merged = open(os.path.join(faces_dir, "alignments.jsonl")).read()
        assert face_a not in merged and face_b not in merged and merged.count("\n") == 73
        status, _, body = _request(_with_token(one, "/api/faces/delete"),
                                   {"folder": 0, "faces": [face_b]})
        assert status == 400 and b"deleted since" in body
        for srv in (one, two):
            assert _request(_with_token(srv, "/api/faces/undo"), {"folder": 0})[0] == 200
        assert _request(_with_token(one, "/api/faces/undo"), {"folder": 0})[0] == 400
    assert folder_bytes(faces_dir) == before
