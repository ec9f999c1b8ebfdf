"""The Training and Merge pages' requests.

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

from facejax.studio import merge_view
from facejax.studio.app import Refused, call, int_param, json_body


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


def routes(studio) -> list[Route]:
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
                  if k in merge_view.FIELDS}
        rgb = await call(merge().render, index, values)
        return Response(_png(rgb), media_type="image/png", headers={"Cache-Control": "no-store"})

    async def merge_save(request: Request):
        body = await json_body(request)
        values = {k: v for k, v in body.items() if k in merge_view.FIELDS}
        unknown = sorted(set(body) - set(merge_view.FIELDS))
        if unknown:
            raise Refused(400, f"{unknown[0]}: not a merge option")
        return JSONResponse({"path": await call(merge().save, values)})

    return [Route("/api/training", training), Route("/api/training/preview", training_preview),
            Route("/api/merge/info", merge_info), Route("/api/merge/frame", merge_frame),
            Route("/api/merge/save", merge_save, methods=["POST"])]
