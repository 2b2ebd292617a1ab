# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small HTTP state server for tests, speaking the Terraform/OpenTofu ``http`` backend protocol.

It behaves like the Cloudflare tfstate-worker (R2 + a Durable Object lock):

- every request under ``/states/`` needs HTTP basic auth (401 otherwise);
- ``GET /states/<name>``: the state (200), or 204 when there is none;
- ``POST /states/<name>[?ID=<lock id>]``: store the state (204); 423 with the lock info while someone
  else holds the lock;
- ``DELETE /states/<name>``: forget the state (200), the http backend's ``Delete``;
- ``LOCK`` (or ``PUT``) ``/states/<name>/lock`` with the lock info as JSON: 200, or 423 with the holder's
  lock info when the state is already locked;
- ``UNLOCK`` (or ``DELETE``) ``/states/<name>/lock`` with the lock info: 200 when the ID matches,
  423 when it does not, 400 without an ID;
- ``GET /states/<name>/lock``: the current lock (200) or 204.

Everything lives in memory; each request is recorded (method, path, user, whether auth passed) so tests
can assert what the binary did. Run on 127.0.0.1 with an ephemeral port, one thread per request.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    user: str | None
    authorized: bool
    status: int = 0


@dataclass
class StateStore:
    username: str
    password: str
    states: dict[str, bytes] = field(default_factory=dict)
    locks: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def methods(self, authorized: bool | None = True) -> list[str]:
        """``METHOD path`` of every request (only the authorized ones by default)."""
        return [f"{r.method} {r.path}" for r in self.requests if authorized is None or r.authorized == authorized]

    def state(self, name: str) -> dict[str, Any] | None:
        raw = self.states.get(name)
        return json.loads(raw) if raw else None


class _Handler(BaseHTTPRequestHandler):
    server: TfstateServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    # -- helpers

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.server.store.requests[-1].status = status
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode())

    def _authorize(self) -> str | None:
        """The user when the basic-auth credentials match, else None."""
        header = self.headers.get("Authorization") or ""
        scheme, _sep, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _sep, password = base64.b64decode(encoded).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        store = self.server.store
        return user if (user, password) == (store.username, store.password) else None

    # -- dispatch

    def _handle(self) -> None:
        store = self.server.store
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        user = self._authorize()
        header = self.headers.get("Authorization") or ""
        shown_user = None
        if header.lower().startswith("basic "):
            try:
                shown_user = base64.b64decode(header.split(" ", 1)[1]).decode("utf-8").partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                shown_user = "(undecodable)"
        body = self._body()
        with store.lock:
            store.requests.append(Request(self.command, url.path, shown_user, user is not None))
            if url.path == "/health":
                self._send(200, b"OK", "text/plain")
                return
            if not parts or parts[0] != "states" or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "lock"):
                self._send(404, b"not found", "text/plain")
                return
            if user is None:
                self._send(401, b"Unauthorized", "text/plain", {"WWW-Authenticate": 'Basic realm="tfstate"'})
                return
            name = parts[1]
            if len(parts) == 2:
                self._state(name, parse_qs(url.query).get("ID", [None])[0], body)
            else:
                self._lock(name, body)

    def _state(self, name: str, lock_id: str | None, body: bytes) -> None:
        store = self.server.store
        if self.command == "GET":
            if name in store.states:
                self._send(200, store.states[name])
            else:
                self._send(204)
        elif self.command == "POST":
            held = store.locks.get(name)
            if held and held.get("ID") != lock_id:
                self._json(423, held)
                return
            store.states[name] = body
            self._send(204)
        elif self.command == "DELETE":
            store.states.pop(name, None)
            self._send(200)
        else:
            self._send(405, b"method not allowed", "text/plain")

    def _lock(self, name: str, body: bytes) -> None:
        store = self.server.store
        if self.command == "GET":
            held = store.locks.get(name)
            if held:
                self._json(200, held)
            else:
                self._send(204)
            return
        try:
            info = json.loads(body) if body else {}
        except ValueError:
            self._send(400, b"lock info is not JSON", "text/plain")
            return
        if self.command in ("LOCK", "PUT"):
            held = store.locks.get(name)
            if held:
                self._json(423, held)
                return
            store.locks[name] = info
            self._json(200, info)
        elif self.command in ("UNLOCK", "DELETE"):
            if not info.get("ID"):
                self._json(400, info)
                return
            if store.locks.get(name, {}).get("ID") != info["ID"]:
                self._json(423, info)
                return
            del store.locks[name]
            self._send(200)
        else:
            self._send(405, b"method not allowed", "text/plain")

    do_GET = do_POST = do_PUT = do_DELETE = do_LOCK = do_UNLOCK = _handle


class TfstateServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a binary giving up on a retry) is not worth a traceback."""
        del request, client_address

    def __init__(self, username: str, password: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.store = StateStore(username, password)
        self._thread = threading.Thread(target=self.serve_forever, name="tfstate-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def state_url(self, name: str = "proxmox") -> str:
        return f"{self.url}/states/{name}"

    def take_lock(self, name: str = "proxmox", lock_id: str = "held-by-someone-else") -> dict[str, Any]:
        """Hold the lock as another user would (what `tofu force-unlock` would clear)."""
        info = {"ID": lock_id, "Operation": "OperationTypeApply", "Info": "", "Who": "someone@elsewhere",
                "Version": "1.0.0", "Created": "2026-01-01T00:00:00Z", "Path": ""}
        with self.store.lock:
            self.store.locks[name] = info
        return info

    def start(self) -> TfstateServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


if __name__ == "__main__":  # pragma: no cover - manual use: python -m tests.tfstate_server USER PASSWORD
    import sys

    server = TfstateServer(sys.argv[1], sys.argv[2]).start()
    print(server.state_url(), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
