"""``lavise rate-serve``: an optional local server for a rating study, so raters' answers arrive by themselves.

It serves the page alone (never ``key.json``) and saves each finished rater's answers, POSTed by the page, as
``DIR/ratings/ratings-<rater>-<n>.json``: the same file a rater would download. Standard library only; meant for a
lab network or a tunnel, not the open internet (no authentication).
"""
from __future__ import annotations

import json
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from ..io import write_json
from .study import PAGE_FILE, load_key

RATINGS_DIR = "ratings"
MAX_BODY = 32 * 2**20


def make_server(study: str | Path, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A server for the study folder ``study`` (call ``serve_forever``; port 0 picks a free one).

    Args:
        study: the folder ``lavise rate`` wrote.
        host: address to listen on (default: this machine only).
        port: TCP port.

    Returns:
        the ``ThreadingHTTPServer`` (its ``server_address`` says where it listens).
    """
    folder = Path(study)
    key = load_key(folder)
    page = (folder / PAGE_FILE).read_bytes()
    out = folder / RATINGS_DIR
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # quiet: the CLI prints what was saved
            pass

        def _send(self, status: int, body: bytes = b"", ctype: str = "text/plain; charset=utf-8", **headers):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            # a page opened from a file or another host may post here too (it sends JSON: a preflight first)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in headers.items():
                self.send_header(k.replace("_", "-"), v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - the http.server name
            url = urlsplit(self.path)
            if url.path == "/":
                query = "post=ratings" + (f"&{url.query}" if url.query else "")
                self._send(HTTPStatus.FOUND, Location=f"/{PAGE_FILE}?{query}")
            elif url.path == f"/{PAGE_FILE}":
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            else:  # the key above all must stay out of raters' reach
                self._send(HTTPStatus.NOT_FOUND, b"not found")

        def do_OPTIONS(self):  # noqa: N802 - the CORS preflight of a cross-origin POST
            self._send(HTTPStatus.NO_CONTENT, Access_Control_Allow_Methods="POST",
                       Access_Control_Allow_Headers="Content-Type", Access_Control_Max_Age="600")

        def do_POST(self):  # noqa: N802
            if urlsplit(self.path).path != f"/{RATINGS_DIR}":
                self._send(HTTPStatus.NOT_FOUND, b"not found")
                return
            n = int(self.headers.get("Content-Length") or 0)
            if not 0 < n <= MAX_BODY:
                self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if n else HTTPStatus.BAD_REQUEST, b"bad size")
                return
            try:
                d = json.loads(self.rfile.read(n))
                ok = isinstance(d, dict) and d.get("study") == key["study"] and isinstance(d.get("rows"), list)
            except (json.JSONDecodeError, UnicodeDecodeError):
                ok = False
            if not ok:
                self._send(HTTPStatus.BAD_REQUEST, b"not ratings of this study")
                return
            rater = re.sub(r"[^A-Za-z0-9_-]", "_", str(d.get("rater", "anonymous")))[:64] or "anonymous"
            with lock:  # two posts of one rater must not pick the same name
                out.mkdir(exist_ok=True)
                i = 0
                while (out / f"ratings-{rater}-{i}.json").exists():
                    i += 1
                write_json(out / f"ratings-{rater}-{i}.json", d)
            self._send(HTTPStatus.OK, json.dumps({"saved": f"ratings-{rater}-{i}.json"}).encode(), "application/json")

    return ThreadingHTTPServer((host, port), Handler)
