"""The studio's HTTP server (the standard library's, threaded), on 127.0.0.1 only.

Every request but the page's own scripts and styles must carry the run's token (``?token=``
or the ``X-Studio-Token`` header) and name this server as its ``Host``; a request sending a
body must be JSON from this server's own origin. Another site open in the same browser can
neither read nor drive the studio.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gpu_worker.errors import GpuWorkerError, InternalError
from gpu_worker.studio.session import SaveConflict, Studio

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_BODY = 4 * 1024 * 1024
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _static_files() -> dict[str, bytes]:
    """The page's files, shipped in the package (nothing comes from a CDN)."""
    folder = resources.files("gpu_worker.studio") / "static"
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and Path(entry.name).suffix in STATIC_TYPES
    }


class StudioServer(ThreadingHTTPServer):
    """Serves one :class:`Studio` on ``127.0.0.1:port`` (0: any free port)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, studio: Studio, port: int = 8787, token: str | None = None) -> None:
        self.studio = studio
        self.token = token or secrets.token_urlsafe(24)
        self.static = _static_files()
        super().__init__((HOST, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/?token={self.token}"

    def allowed_hosts(self) -> set[str]:
        return {f"{HOST}:{self.port}", f"localhost:{self.port}"}

    def start(self) -> threading.Thread:
        """Serve from a background thread (tests and tools); ``shutdown()`` stops it."""
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="studio", daemon=True
        )
        thread.start()
        return thread


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    server: StudioServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("studio %s", format % args)

    # Entry points -------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            self._check_host()
            if method == "GET" and url.path.startswith("/static/"):
                self._static(url.path.removeprefix("/static/"))
                return
            self._check_token(query)
            if method == "GET":
                self._get(url.path, query)
            else:
                self._post(url.path, self._json_body())
        except _Refused as exc:
            self.close_connection = True  # a body left unread must not be taken for a request
            self._send_json({"error": str(exc)}, exc.status)
        except SaveConflict as exc:
            self._send_json({"error": str(exc), "conflict": True}, HTTPStatus.CONFLICT)
        except GpuWorkerError as exc:
            status = (
                HTTPStatus.UNPROCESSABLE_ENTITY
                if exc.permanent
                else HTTPStatus.INTERNAL_SERVER_ERROR
            )
            self._send_json({"error": exc.one_line()}, status)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # one line to the page; the studio keeps serving
            log.debug("studio request failed", exc_info=True)
            message = " ".join(str(exc).split()) or type(exc).__name__
            self._send_json(
                {"error": InternalError(f"{type(exc).__name__}: {message}").one_line()},
                HTTPStatus.INTERNAL_SERVER_ERROR,
            )

    # Checks -------------------------------------------------------------------------------

    def _check_host(self) -> None:
        if self.headers.get("Host", "") not in self.server.allowed_hosts():
            raise _Refused(HTTPStatus.FORBIDDEN, "unknown Host")

    def _check_token(self, query: dict[str, list[str]]) -> None:
        given = self.headers.get("X-Studio-Token") or (query.get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), self.server.token.encode()):
            raise _Refused(HTTPStatus.FORBIDDEN, "missing or wrong token: open the URL printed")

    def _json_body(self) -> dict[str, Any]:
        origin = self.headers.get("Origin")
        if origin is not None and origin.removeprefix("http://") not in self.server.allowed_hosts():
            raise _Refused(HTTPStatus.FORBIDDEN, "requests from another origin are refused")
        if self.headers.get_content_type() != "application/json":
            raise _Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise _Refused(HTTPStatus.BAD_REQUEST, "the request is not JSON") from None
        if not isinstance(body, dict):
            raise _Refused(HTTPStatus.BAD_REQUEST, "the request is not a JSON object")
        return body

    # Routes -------------------------------------------------------------------------------

    def _get(self, path: str, query: dict[str, list[str]]) -> None:
        studio = self.server.studio
        if path in ("/", "/index.html"):
            self._send(self.server.static["index.html"], STATIC_TYPES[".html"])
        elif path == "/api/job":
            text, sha = studio.load()
            self._send_json({"text": text, "hash": sha, "name": studio.job_path.name})
        elif path == "/api/render":
            task = studio.render_task
            self._send_json(task.as_dict() if task else {"state": "idle"})
        elif path == "/api/video":
            task = studio.render_task
            if task is None or task.state != "done" or task.output is None:
                raise _Refused(HTTPStatus.NOT_FOUND, "no rendered video yet")
            self._file(task.output, "video/mp4")
        else:
            raise _Refused(HTTPStatus.NOT_FOUND, "not found")

    def _post(self, path: str, body: dict[str, Any]) -> None:
        studio = self.server.studio
        text = body.get("text")
        if not isinstance(text, str):
            raise _Refused(HTTPStatus.BAD_REQUEST, "give the job as text")
        if path == "/api/validate":
            found = studio.problems(text)
            self._send_json({"valid": not found, "problems": found})
        elif path == "/api/layout":
            self._send_json(studio.layout(text))
        elif path == "/api/frame":
            at = body.get("at")
            if not isinstance(at, int | float) or isinstance(at, bool):
                raise _Refused(HTTPStatus.BAD_REQUEST, "give the time as a number")
            frame = studio.frame(text, float(at))
            self._send(
                frame.image,
                "image/bmp",
                {"X-Frame-Index": str(frame.index), "X-Frame-Time": f"{frame.time:.6f}"},
            )
        elif path == "/api/save":
            base = body.get("base")
            sha = studio.save(
                text, base if isinstance(base, str) and not body.get("force") else None
            )
            self._send_json({"hash": sha, "saved": str(studio.job_path)})
        elif path == "/api/render":
            try:
                task = studio.start_render(text)
            except RuntimeError as exc:
                raise _Refused(HTTPStatus.CONFLICT, str(exc)) from None
            self._send_json(task.as_dict())
        else:
            raise _Refused(HTTPStatus.NOT_FOUND, "not found")

    # Responses ----------------------------------------------------------------------------

    def _static(self, name: str) -> None:
        data = self.server.static.get(name)
        if data is None or name == "index.html":
            raise _Refused(HTTPStatus.NOT_FOUND, "not found")
        self._send(data, STATIC_TYPES[Path(name).suffix])

    def _send(self, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(HTTPStatus.OK)
        self._common_headers(content_type, len(data))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, value: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        data = json.dumps(value, ensure_ascii=False).encode()
        self.send_response(status)
        self._common_headers("application/json", len(data))
        self.end_headers()
        self.wfile.write(data)

    def _common_headers(self, content_type: str, length: int) -> None:
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' blob:; media-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'",
        )

    def _file(self, path: Path, content_type: str) -> None:
        """A file, whole or the one byte range asked for (players seek with ranges)."""
        size = path.stat().st_size
        start, end = 0, size - 1
        match = _RANGE.match(self.headers.get("Range", ""))
        status = HTTPStatus.OK
        if match and (match[1] or match[2]):
            if match[1]:
                start = int(match[1])
                end = min(int(match[2]), size - 1) if match[2] else size - 1
            else:
                start = max(0, size - int(match[2]))
            if start > end:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self._common_headers(content_type, end - start + 1)
        self.send_header("Accept-Ranges", "bytes")
        if status is HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        with path.open("rb") as handle:
            handle.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = handle.read(min(left, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)


def serve_studio(studio: Studio, port: int = 8787, announce: Any = print) -> int:
    """Serve until interrupted (Ctrl-C); ``announce`` is told the URL with its token."""
    try:
        server = StudioServer(studio, port)
    except OSError as exc:
        raise InternalError(
            f"cannot listen on {HOST}:{port} ({exc.strerror}): pass --port"
        ) from exc
    announce(f"studio {server.url}")
    announce(f"editing {studio.job_path} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        studio.close()
    return 0
