"""`vidcap serve`: a local web page and JSON API that caption an uploaded video with a trained captioner.

FastAPI app served by uvicorn. `POST /api/caption` (multipart field `video`, optional `segments`, and `overlay` to
have the saliency overlay drawn, off by default: the caption comes first) answers `{"video", "caption", "confidence",
"in_domain", "segments": [{"start", "end", "caption", "confidence", "in_domain"}], "timings", "overlay", "note"}`
(`note`: what a flagged caption means, when one is); `GET /api/health`;
the page at `/`; overlay videos at `/overlays/<id>.mp4`. Uploads are size-limited (413 beyond, checked while the
body arrives), stored in the server's temporary folder and deleted after; a bad file gets a 4xx JSON error; one
video is captioned at a time and at most `queue` requests wait or run, the rest get 503 at once.
"""
from __future__ import annotations

import re
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from importlib import resources
from pathlib import Path

import anyio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from saliency.infra.errors import UserError
from saliency.infra.media import transcode_cache_dir
from vidcap.model.captioner import Captioner
from vidcap.inference.overlay import write_overlay
from vidcap.app.formats import flag_note, flagged
from vidcap.app.segments import caption_video, parse_segments

OVERLAYS_KEPT = 16  # overlay videos kept for the page to play; older ones are deleted
_OVERLAY_NAME = re.compile(r"[0-9a-f]{32}\.mp4")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


def error(status: int, message: str) -> JSONResponse:
    """The API's error answer: `{"error": message}` with `status`."""
    return JSONResponse({"error": message}, status_code=status)


async def http_error(request: Request, problem: HTTPException) -> JSONResponse:
    """Every HTTP error (413, a malformed form, 404) as `{"error": message}`, like the API's own."""
    return error(problem.status_code, str(problem.detail))


class CaptionService:
    """The loaded captioner behind the server: one video at a time, its overlay kept among the latest few."""

    def __init__(self, model: Captioner, workdir: Path):
        self.model, self.workdir = model, Path(workdir)
        self.uploads, self.overlays = self.workdir / "uploads", self.workdir / "overlays"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.overlays.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()

    @property
    def has_saliency(self) -> bool:
        return self.model.front.saliency_model is not None

    def caption(self, video: Path, segments: float | str | None, timings: dict[str, float],
                draw_overlay: bool = False) -> dict:
        """Caption `video` (and with `draw_overlay` write its saliency overlay); the API's answer without the upload's
        name."""
        with self.lock:
            try:
                result = caption_video(self.model, video, segments, timings=timings)
                overlay = None
                if draw_overlay and self.has_saliency:
                    start = time.perf_counter()
                    overlay = f"{uuid.uuid4().hex}.mp4"
                    write_overlay(self.model.front, video, self.overlays / overlay)
                    timings["overlay"] = time.perf_counter() - start
                    self._forget_old_overlays()
            finally:
                self._drop_transcoded_copies()
        return {"caption": None, **result.as_fields(), "segments": [segment.as_dict() for segment in result.segments],
                "overlay": f"/overlays/{overlay}" if overlay else None,
                "note": flag_note(self.model.trust.about) if flagged(result) else None}

    def overlay(self, name: str) -> Path | None:
        """The overlay video called `name`, if it is one of ours and still kept."""
        path = self.overlays / name
        return path if _OVERLAY_NAME.fullmatch(name) and path.is_file() else None

    def _forget_old_overlays(self) -> None:
        for path in sorted(self.overlays.glob("*.mp4"), key=lambda p: p.stat().st_mtime)[:-OVERLAYS_KEPT]:
            path.unlink(missing_ok=True)

    def _drop_transcoded_copies(self) -> None:
        """A file decord could not read was transcoded once; in the server's own cache the copy is not needed again."""
        cache = transcode_cache_dir()
        if cache.resolve().is_relative_to(self.workdir.resolve()):
            shutil.rmtree(cache, ignore_errors=True)


class UploadLimit:
    """ASGI middleware: a body to `path` over `max_bytes` gets 413, by its Content-Length before it is read, or
    as soon as that many bytes have arrived."""

    def __init__(self, app, path: str, max_bytes: int):
        self.app, self.path, self.max_bytes = app, path, max_bytes

    def too_large(self) -> HTTPException:
        """The 413 this limit answers with."""
        return HTTPException(413, f"upload larger than the server's limit of {self.max_bytes / 2**20:g} MB")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            return await error(413, self.too_large().detail)(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self.too_large()
            return message

        await self.app(scope, counted, send)


def create_app(model: Captioner, name: str, workdir: str | Path, max_upload_mb: float = 200, queue: int = 4) -> FastAPI:
    """The web app over a loaded captioner (`name`: what the page calls it); temporary files go in `workdir`."""
    service = CaptionService(model, Path(workdir))
    page = resources.files("vidcap.app").joinpath("static/index.html").read_text(encoding="utf-8")
    app = FastAPI(title="vidcap", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(UploadLimit, path="/api/caption", max_bytes=int(max_upload_mb * 2**20))
    app.add_exception_handler(HTTPException, http_error)
    state = {"pending": 0}  # requests waiting or running; touched only on the event loop

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "model": name, "saliency": service.has_saliency, "pending": state["pending"],
                "queue": queue, "max_upload_mb": max_upload_mb}

    @app.get("/overlays/{overlay}")
    def overlay(overlay: str):
        path = service.overlay(overlay)
        return FileResponse(path, media_type="video/mp4") if path else error(404, f"no overlay {overlay}")

    @app.post("/api/caption")
    async def caption(request: Request):
        if state["pending"] >= queue:
            return error(503, f"busy: {state['pending']} request(s) waiting or running; try again shortly")
        state["pending"] += 1
        try:
            return await caption_upload(request)
        finally:
            state["pending"] -= 1

    async def caption_upload(request: Request) -> JSONResponse:
        """Read the form, store the video in a folder of its own, caption it there and delete the folder."""
        start = time.perf_counter()
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get("video")
            if not isinstance(upload, UploadFile):
                return error(400, "no video: send the file in the multipart field 'video'")
            shown = Path(upload.filename or "upload").name
            try:
                segments = parse_segments(str(form.get("segments") or "").strip() or None, name="segments")
                draw_overlay = str(form.get("overlay") or "").strip().lower() in ("1", "true", "on", "yes")
            except UserError as problem:
                return error(400, str(problem))
            folder = Path(tempfile.mkdtemp(dir=service.uploads))
            try:
                suffix = _SUFFIX.fullmatch(Path(shown).suffix)
                video = folder / f"upload{suffix.group(0) if suffix else '.mp4'}"
                await anyio.to_thread.run_sync(_store, upload, video)
                timings = {"upload": time.perf_counter() - start}
                try:
                    answer = await anyio.to_thread.run_sync(service.caption, video, segments, timings, draw_overlay)
                except UserError as problem:
                    return error(422, str(problem).replace(str(video), shown))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        timings["total"] = time.perf_counter() - start
        return JSONResponse({"video": shown, **answer, "timings": {k: round(v, 4) for k, v in timings.items()}})

    return app


def _store(upload: UploadFile, path: Path) -> None:
    """Copy an upload (spooled by the form parser) to `path`, where the video readers can open it."""
    with open(path, "wb") as handle:
        shutil.copyfileobj(upload.file, handle, 2**20)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` (port 0: any free one), or a one-line error saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as problem:
        sock.close()
        raise UserError(f"{host}:{port}: cannot listen there ({problem.strerror or problem})") from None
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, remembering whether Ctrl-C stopped it: uvicorn re-raises the signal after its graceful
    shutdown, but asyncio's runner can swallow it when the serving task has already finished."""

    interrupted = False

    def handle_exit(self, sig: int, frame) -> None:
        self.interrupted = self.interrupted or sig == signal.SIGINT
        super().handle_exit(sig, frame)


def serve(app: FastAPI, sock: socket.socket, quiet: bool = False) -> None:
    """Serve `app` on the bound socket until Ctrl-C (then KeyboardInterrupt, as every command stops on it); each
    request logged on stderr unless `quiet`."""
    server = _Server(uvicorn.Config(app, log_level="warning" if quiet else "info"))
    server.run(sockets=[sock])
    if server.interrupted:
        raise KeyboardInterrupt
