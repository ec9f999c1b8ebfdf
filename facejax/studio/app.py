"""The studio's web app (Starlette): the access token, the four pages, their static files, and
the error answers the routes share. The routes live in routes.py.

Every request must carry the token, as `?token=` (the printed URL) or the cookie a request with
it sets; anything else is answered 403. The browser names things by id only (a folder's index
in --faces, a face's record id, a frame number); each id is checked and resolved inside the
folders the studio was started with (face_set.check_face_id, FaceSet.crop).
"""

from __future__ import annotations

import dataclasses
import hmac
import os
import secrets

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from facejax.errors import UserError, one_line
from facejax.studio import face_set as face_set_lib
from facejax.studio.face_keys import FaceKeys

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
PAGES = ("faces", "masks", "training", "merge")
COOKIE = "facejax_studio_token"


@dataclasses.dataclass
class Studio:
    """What one studio serves: its extraction folders, its run (or None) and its clip (or
    None), and the token that opens it."""
    face_sets: list
    run: object = None          # run_views.RunView
    preview: object = None      # run_views.MergeView
    token: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(24))

    def __post_init__(self):
        self.keys = [FaceKeys(s) for s in self.face_sets]


class TokenGate:
    """ASGI middleware: refuses (403) an HTTP request without the studio's token; a request
    bringing it in the query gets it back as a cookie, so the page's own requests carry it."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        in_query = request.query_params.get("token")
        given = in_query or request.cookies.get(COOKIE) or ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            response = PlainTextResponse("403: this studio needs its token (the URL it printed)",
                                         status_code=403)
            return await response(scope, receive, send)
        if not in_query:
            return await self.app(scope, receive, send)

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append("set-cookie", f"{COOKIE}={self.token}; Path=/; HttpOnly; "
                                             "SameSite=Strict")
            await send(message)

        return await self.app(scope, receive, send_with_cookie)


class Refused(Exception):
    """A request the studio answers with an error status and one line."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def refused(_request, exc: Refused):
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def call(fn, *args, **kwargs):
    """Runs blocking work off the event loop; a UserError becomes a refusal: 409 where the
    folder is held by another writer, 400 otherwise."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except face_set_lib.FolderBusy as e:
        raise Refused(409, one_line(e))
    except UserError as e:
        raise Refused(400, one_line(e))


def int_param(request: Request, name: str, default: int | None = None, lo: int = 0,
              hi: int | None = None) -> int:
    """An integer query parameter within [lo, hi], or a 400."""
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise Refused(400, f"{name}: missing")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Refused(400, f"{name}={raw!r}: not a whole number")
    if value < lo or (hi is not None and value > hi):
        raise Refused(400, f"{name}={value}: out of range")
    return value


def folder_index(studio: Studio, value) -> int:
    """The index of one of the studio's extraction folders, or a 400."""
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise Refused(400, f"folder={value!r}: not a folder index")
    if not 0 <= index < len(studio.face_sets):
        raise Refused(400, f"folder={index}: the studio has {len(studio.face_sets)} folder(s)")
    return index


async def json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise Refused(400, "the request body is not JSON")
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    return body


def _page(name: str):
    async def page(_request):
        return FileResponse(os.path.join(STATIC, f"{name}.html"), media_type="text/html")
    return page


def make_app(studio: Studio) -> TokenGate:
    """The ASGI app serving `studio`, behind its token."""
    from facejax.studio import routes as studio_routes

    async def home(_request):
        return RedirectResponse("/faces")

    async def info(_request):
        return JSONResponse({
            "folders": [{"index": i, "path": s.folder, "size": s.size}
                        for i, s in enumerate(studio.face_sets)],
            "workdir": studio.run.workdir if studio.run else None,
            "video": studio.preview.clip if studio.preview else None})

    routes = [Route("/", home), Route("/api/info", info),
              *[Route(f"/{name}", _page(name)) for name in PAGES],
              *studio_routes.routes(studio),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    app = Starlette(routes=routes, exception_handlers={Refused: refused})
    return TokenGate(app, studio.token)
