"""Starting a studio: its folders checked (one line for a bad one, before anything is served),
the app served by uvicorn on 127.0.0.1 (or a host given, with a warning), the URL with its
token printed. `StudioServer` runs it in a thread too, for the tests and the screenshot tool.
"""

from __future__ import annotations

import sys
import threading
import time

from facejax.errors import UserError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def open_studio(faces: list[str], workdir: str | None = None, video: str | None = None,
                settings: str | None = None, direction: str = "b2a", xseg_model: str = ""):
    """The Studio for these folders, each checked.

    Raises:
      UserError: a folder that is not an extraction folder, a workdir that is not a run, a
        clip that does not exist, --video without --workdir, or --xseg_model without --video
        or not a segmentation run.
    """
    from facejax.studio.app import Studio
    from facejax.studio.face_set import FaceSet
    from facejax.studio.run_views import MergeView, RunView
    if not faces:
        raise UserError("--faces: give at least one extraction folder")
    face_sets = [FaceSet(folder) for folder in faces]
    run = RunView(workdir) if workdir else None
    if video and not workdir:
        raise UserError("--video: the merge page needs --workdir too (the run whose model swaps)")
    if xseg_model and not video:
        raise UserError("--xseg_model: its masks are the merge page's; give --video too")
    preview = MergeView(workdir, video, settings, direction, xseg_model=xseg_model) \
        if video else None
    return Studio(face_sets, run, preview)


class StudioServer:
    """uvicorn serving `studio` on host:port (port 0: a free one) in a thread of its own:
    `start()` returns once it listens; `url` opens it; `stop()`."""

    def __init__(self, studio, host: str = "127.0.0.1", port: int = 0):
        import uvicorn
        from facejax.studio.app import make_app
        self.studio = studio
        self.config = uvicorn.Config(make_app(studio), host=host, port=port,
                                     log_level="warning", access_log=False)
        self.server = uvicorn.Server(self.config)
        self._thread = None

    def start(self) -> "StudioServer":
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise UserError(f"the studio could not listen on {self.config.host}:"
                                f"{self.config.port} (in use?)")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def base(self) -> str:
        host = self.config.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def url(self, page: str = "faces", **params) -> str:
        query = "&".join([f"token={self.studio.token}", *(f"{k}={v}" for k, v in
                                                          params.items())])
        return f"{self.base}/{page}?{query}"

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


def serve(studio, host: str, port: int) -> None:
    """Serves `studio` until interrupted, printing where (and warning when not local)."""
    if host not in LOCAL_HOSTS:
        print("!" * 78 + f"\nWARNING: the studio is served on {host}, not only to this machine: "
              "anyone who can reach it\nand learns its URL can delete faces and read your "
              "files' pictures. The token is the\nonly guard; use --host only on a network "
              "you trust.\n" + "!" * 78, file=sys.stderr, flush=True)
    server = StudioServer(studio, host, port).start()
    print(f"facejax studio: open {server.url()}", flush=True)
    print("(Ctrl-C stops it)", flush=True)
    try:
        while server._thread.is_alive():
            server._thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
