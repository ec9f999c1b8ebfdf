"""The pages' requests (everything but the pages themselves, app.py).

Faces and Masks:

    GET  /api/faces?folder=I&sort=KEY&reverse=0|1&picked=ID&page=N&per=N
    GET  /api/crop?folder=I&face=ID                   the crop PNG
    POST /api/faces/delete   {"folder": I, "faces": [ID, ...]}
    POST /api/faces/undo     {"folder": I}
    GET  /api/masks?folder=I[&face=ID]                the labelled faces (and ID's label)
    POST /api/masks          {"folder": I, "face": ID, "size": S, "polygons": [...]}

Training and Merge:

    GET  /api/training                 the run's config, scalars, held-out metrics, step, ETA
    GET  /api/training/preview         its latest preview grid (PNG)
    GET  /api/merge/info               the clip's frame count, option defaults, saved settings
    GET  /api/merge/frame?index=N&mask=...&erode=...   that frame swapped (PNG)
    POST /api/merge/save   {option: value, ...}        writes the settings file
"""

from __future__ import annotations

import math
import os

import cv2
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from facejax.errors import UserError
from facejax.faces import mask_labels
from facejax.studio import face_keys, run_views
from facejax.studio.app import Refused, call, folder_index, int_param, json_body
from facejax.studio.face_set import check_face_id

MAX_PER_PAGE = 500


def _face_list(studio, index: int, sort: str, reverse: bool, picked, page: int,
               per: int) -> dict:
    face_set, keys = studio.face_sets[index], studio.keys[index]
    records = face_set.records()
    try:
        order, values = keys.order(records, sort, picked, reverse)
    except ValueError as e:
        raise UserError(str(e))
    labelled = set(mask_labels.read(face_set.folder))
    start = page * per
    faces = [{"id": f, "source": os.path.basename(records[f].get("source", "")),
              "frame": records[f]["frame"], "value": values[f], "masked": f in labelled}
             for f in order[start:start + per]]
    return {"folder": index, "sort": sort, "total": len(order), "page": page, "per": per,
            "faces": faces, "note": face_keys.NOTES.get(sort, ""),
            "keys": {k: label for k, (label, _) in face_keys.KEYS.items()}}


def _labels(face_set, face) -> dict:
    labels = mask_labels.read(face_set.folder)
    out = {"labelled": sorted(labels), "count": len(labels),
           "faces": list(face_set.records()), "size": face_set.size}
    if face is not None:
        label = labels.get(face)
        out["label"] = label.to_json() if label else None
    return out


def _save_label(face_set, body: dict) -> dict:
    face = check_face_id(body.get("face"))
    if face not in face_set.records():
        raise UserError(f"{face}: not a face of {face_set.folder}")
    label = mask_labels.parse({k: body.get(k) for k in ("face", "size", "polygons")},
                              "the label sent")
    with face_set.writing():  # read, change and write masks.jsonl as one step
        labels = mask_labels.read(face_set.folder)
        if label.polygons or body.get("keep_empty"):
            labels[face] = label
        else:
            labels.pop(face, None)
        mask_labels.write(face_set.folder, labels)
    return {"face": face, "count": len(labels)}


def face_routes(studio) -> list[Route]:
    """The Faces and Masks pages' requests."""
    async def faces(request: Request):
        index = folder_index(studio, request.query_params.get("folder", "0"))
        sort = request.query_params.get("sort", "frame")
        if sort not in face_keys.KEYS:
            raise Refused(400, f"sort={sort!r}: expected one of {', '.join(face_keys.KEYS)}")
        picked = request.query_params.get("picked") or None
        if picked is not None:
            picked = await call(check_face_id, picked)
        reverse = request.query_params.get("reverse", "0") == "1"
        page = int_param(request, "page", 0)
        per = int_param(request, "per", 60, lo=1, hi=MAX_PER_PAGE)
        return JSONResponse(await call(_face_list, studio, index, sort, reverse, picked, page,
                                       per))

    async def crop(request: Request):
        index = folder_index(studio, request.query_params.get("folder", "0"))
        path = await call(studio.face_sets[index].crop, request.query_params.get("face", ""))
        if not os.path.isfile(path):
            raise Refused(404, "no such face")
        return FileResponse(path, media_type="image/png",
                            headers={"Cache-Control": "no-store"})

    async def delete(request: Request):
        body = await json_body(request)
        index = folder_index(studio, body.get("folder"))
        faces = body.get("faces")
        if not isinstance(faces, list):
            raise Refused(400, "faces: a list of face ids")
        return JSONResponse(await call(studio.face_sets[index].delete, faces))

    async def undo(request: Request):
        body = await json_body(request)
        index = folder_index(studio, body.get("folder"))
        return JSONResponse(await call(studio.face_sets[index].undo))

    async def masks(request: Request):
        index = folder_index(studio, request.query_params.get("folder", "0"))
        face = request.query_params.get("face")
        if face is not None:
            face = await call(check_face_id, face)
        return JSONResponse(await call(_labels, studio.face_sets[index], face))

    async def save_mask(request: Request):
        body = await json_body(request)
        index = folder_index(studio, body.get("folder"))
        return JSONResponse(await call(_save_label, studio.face_sets[index], body))

    return [Route("/api/faces", faces), Route("/api/crop", crop),
            Route("/api/faces/delete", delete, methods=["POST"]),
            Route("/api/faces/undo", undo, methods=["POST"]),
            Route("/api/masks", masks), Route("/api/masks", save_mask, methods=["POST"])]


def finite(value):
    """`value` with every non-finite float as None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _png(rgb) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise Refused(500, "cannot encode the frame")
    return buf.tobytes()


def run_routes(studio) -> list[Route]:
    """The Training and Merge pages' requests."""
    def run():
        if studio.run is None:
            raise Refused(404, "this studio was started without --workdir")
        return studio.run

    def merge():
        if studio.preview is None:
            raise Refused(404, "this studio was started without --workdir and --video")
        return studio.preview

    async def training(_request):
        return JSONResponse(finite(await call(run().status)))

    async def training_preview(_request):
        path = run().preview_path()
        if not os.path.isfile(path):
            raise Refused(404, "no preview yet")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def merge_info(_request):
        return JSONResponse(finite(await call(merge().info)))

    async def merge_frame(request: Request):
        index = int_param(request, "index", 0)
        values = {k: v for k, v in request.query_params.items()
                  if k in run_views.FIELDS}
        rgb = await call(merge().render, index, values)
        return Response(_png(rgb), media_type="image/png", headers={"Cache-Control": "no-store"})

    async def merge_save(request: Request):
        body = await json_body(request)
        values = {k: v for k, v in body.items() if k in run_views.FIELDS}
        unknown = sorted(set(body) - set(run_views.FIELDS))
        if unknown:
            raise Refused(400, f"{unknown[0]}: not a merge option")
        return JSONResponse({"path": await call(merge().save, values)})

    return [Route("/api/training", training), Route("/api/training/preview", training_preview),
            Route("/api/merge/info", merge_info), Route("/api/merge/frame", merge_frame),
            Route("/api/merge/save", merge_save, methods=["POST"])]


def routes(studio) -> list[Route]:
    return face_routes(studio) + run_routes(studio)
