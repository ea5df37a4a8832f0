"""A fake Kaggle API on 127.0.0.1:7777 for the submit tests.

kagglesdk's TEST environment (KAGGLE_API_ENVIRONMENT=TEST) is hard-wired to
http://localhost:7777, so the port is fixed; the server binds with SO_REUSEADDR and waits
briefly if a previous test's server is still releasing it. It speaks just enough of the real
protocol: POST /api/v1/<service>/<method> with JSON bodies, plus the PUT upload URL that
StartSubmissionUpload hands out.
"""
from __future__ import annotations

import base64
import errno
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST, PORT = "127.0.0.1", 7777
SERVICE = "/api/v1/competitions.CompetitionApiService/"


@dataclass
class Call:
    method: str
    path: str
    auth: str
    body: bytes


@dataclass
class FakeKaggle:
    """Scripted Kaggle: queue (status, json, headers) answers per endpoint name; endpoints
    without a scripted answer succeed. Checks Basic (username:key) or Bearer (token) auth."""

    username: str = "tester"
    key: str = ""
    token: str = ""
    calls: list[Call] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    submissions: list[dict[str, Any]] = field(default_factory=list)
    script: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    server: ThreadingHTTPServer | None = None

    def fail(self, endpoint: str, status: int, times: int = 1, headers: dict | None = None, message: str = "") -> None:
        for _ in range(times):
            self.script[endpoint].append((status, {"code": status, "message": message or f"fake {status}"}, headers or {}))

    def count(self, endpoint: str) -> int:
        return sum(1 for c in self.calls if c.path.endswith("/" + endpoint))

    # ---- server lifecycle ----
    def start(self, wait_s: float = 10.0) -> "FakeKaggle":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_PUT(self) -> None:
                fake._handle(self, "PUT")

        ThreadingHTTPServer.allow_reuse_address = True
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.server = ThreadingHTTPServer((HOST, PORT), Handler)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise RuntimeError(f"fake Kaggle server cannot bind {HOST}:{PORT}: {exc}") from exc
                time.sleep(0.2)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # ---- request handling ----
    def _authorised(self, header: str) -> bool:
        if self.token and header == f"Bearer {self.token}":
            return True
        if self.key:
            expected = base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
            return header == f"Basic {expected}"
        return False

    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        auth = req.headers.get("Authorization", "")
        self.calls.append(Call(method, req.path, auth, body))
        if method == "PUT" and req.path.startswith("/upload/"):
            self.uploads[req.path.rsplit("/", 1)[1]] = body
            return self._send(req, 200, {})
        name = req.path.rsplit("/", 1)[-1]
        if self.script[name]:
            status, payload, headers = self.script[name].popleft()
            return self._send(req, status, payload, headers)
        if name == "IntrospectToken":
            token = json.loads(body or b"{}").get("token", "")
            return self._send(req, 200, {"active": token == self.token, "username": self.username if token == self.token else ""})
        if not self._authorised(auth):
            return self._send(req, 401, {"code": 401, "message": "Unauthenticated"})
        request = json.loads(body or b"{}")
        if name == "StartSubmissionUpload":
            token = f"blob{len(self.uploads) + 1}"
            return self._send(req, 200, {"token": token, "createUrl": f"http://{HOST}:{PORT}/upload/{token}"})
        if name == "CreateSubmission":
            blob = request.get("blobFileTokens", "")
            if blob not in self.uploads:
                return self._send(req, 400, {"code": 400, "message": f"unknown blob {blob}"})
            ref = 1000 + len(self.submissions) + 1
            self.submissions.append(
                {"ref": ref, "description": request.get("submissionDescription", ""), "status": "COMPLETE",
                 "publicScore": f"0.{ref}", "fileName": "submission.csv", "date": "2024-08-01T10:00:00.000Z"}
            )
            return self._send(req, 200, {"message": "Successfully submitted", "ref": ref})
        if name == "ListSubmissions":
            return self._send(req, 200, {"submissions": self.submissions[::-1]})
        return self._send(req, 404, {"code": 404, "message": f"no such method {name}"})

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            req.send_header(k, str(v))
        req.end_headers()
        req.wfile.write(data)
