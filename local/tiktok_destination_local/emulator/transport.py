"""HTTP plumbing: a threading server that hands each request to ``TikTokEmulator``."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .contract import MAX_BODY_BYTES

if TYPE_CHECKING:
    from .server import TikTokEmulator


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # keep-alive client connections would make server_close() wait for them
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        emulator: TikTokEmulator,
    ) -> None:
        super().__init__(address, handler)
        self.emulator = emulator
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._conns_lock:
            if alive:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that dies mid-request (a killed CLI) is not the server's error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TikTokEmulator/1.0"
    # idle keep-alive connections give their thread back after this many seconds
    timeout = 60
    # headers and body leave in one segment: separate small writes meet the client's
    # delayed ACK and cost 40 ms a request
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry app secrets in query strings: never print them.
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > MAX_BODY_BYTES:
                    return None
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self, method: str) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(400, "Malformed request body")
            return
        if body is None:
            self.close_connection = True
            self.send_error(413, "Request body too large")
            return
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        resp = self.server.emulator._dispatch(
            method,
            parts.path,
            query,
            self.headers.get("Access-Token"),
            self.headers.get("Content-Type", ""),
            body,
        )
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type + "; charset=utf-8")
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in resp.headers:
            self.send_header(name, value)
        self.end_headers()
        # A client that gave up waiting (an answer held back past its timeout) is gone.
        with contextlib.suppress(ConnectionError):
            self.wfile.write(resp.body)
