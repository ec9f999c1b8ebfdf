"""The Faces and Masks pages' requests: a sorted page of faces, a face's crop, delete and undo,
and a face's mask label read and written (masks.jsonl, faces/mask_labels.py).

    GET  /api/faces?folder=I&sort=KEY&reverse=0|1&picked=ID&page=N&per=N
    GET  /api/crop?folder=I&face=ID                   the crop PNG
    POST /api/faces/delete   {"folder": I, "faces": [ID, ...]}
    POST /api/faces/undo     {"folder": I}
    GET  /api/masks?folder=I[&face=ID]                the labelled faces (and ID's label)
    POST /api/masks          {"folder": I, "face": ID, "size": S, "polygons": [...]}
"""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route

from facejax.errors import UserError
from facejax.faces import mask_labels
from facejax.studio import face_keys
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


def routes(studio) -> list[Route]:
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
