"""Drive the REAL mcp-obs binary: start it on a temp dir, log in, create servers/keys, read spans."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PASSWORD = "conformance-pass-123"


def binary_path() -> Path:
    p = os.environ.get("MCPOBS_BINARY")
    if p:
        return Path(p)
    return (HERE / "../../../target/release/mcp-obs").resolve()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Appliance:
    def __init__(self, data_dir: Path, listen: str = "127.0.0.1:0") -> None:
        self.data_dir = data_dir
        self.listen = listen
        self.proc: subprocess.Popen | None = None
        self.base = ""
        self.csrf = ""
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def start(self) -> "Appliance":
        binary = binary_path()
        if not binary.exists():
            raise RuntimeError(f"appliance binary not found at {binary}; run `cargo build --release` first")
        env = dict(os.environ, MCPOBS_ADMIN_PASSWORD=PASSWORD)
        self.stderr_path = self.data_dir.parent / f"{self.data_dir.name}.stderr"
        self._err = open(self.stderr_path, "ab")
        start_at = self.stderr_path.stat().st_size
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--data", str(self.data_dir), "--listen", self.listen],
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            env=env,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            text = self.stderr_path.read_bytes()[start_at:].decode("utf-8", "replace")
            m = re.search(r"mcp-obs listening on (http://\S+)", text)
            if m:
                self.base = m.group(1).rstrip("/")
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"appliance exited early:\n{text}")
            time.sleep(0.05)
        else:
            raise RuntimeError("appliance did not report its address")
        self.login()
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    # ------------------------------------------------------------------ HTTP helpers
    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.csrf:
            req.add_header("X-CSRF-Token", self.csrf)
        try:
            with self.opener.open(req, timeout=10) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else {})
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except Exception:
                return e.code, {"raw": raw.decode("utf-8", "replace")}

    def login(self) -> None:
        status, body = self.request("POST", "/api/v1/session", {"username": "admin", "password": PASSWORD})
        assert status == 200, body
        self.csrf = body["csrf_token"]

    def create_server(self, name: str, **fields) -> tuple[int, str]:
        status, body = self.request("POST", "/api/v1/orgs/default/servers", {"name": name, **fields})
        assert status == 201, body
        return body["server"]["id"], body["api_key"]["key"]

    def spans(self, server_id: int, **filters) -> list[dict]:
        out: list[dict] = []
        params = {"server": server_id, "limit": 1000, **filters}
        while True:
            status, body = self.request("GET", "/api/v1/orgs/default/spans?" + urllib.parse.urlencode(params))
            assert status == 200, body
            out.extend(body["spans"])
            if not body.get("next_cursor"):
                return out
            params["cursor"] = body["next_cursor"]

    def wait_spans(self, server_id: int, n: int, timeout: float = 20.0, **filters) -> list[dict]:
        deadline = time.time() + timeout
        spans: list[dict] = []
        while time.time() < deadline:
            spans = self.spans(server_id, **filters)
            if len(spans) >= n:
                time.sleep(0.3)  # let stragglers (duplicates would be a bug) arrive
                return self.spans(server_id, **filters)
            time.sleep(0.2)
        return spans

    def trace(self, trace_id: str) -> dict:
        status, body = self.request("GET", f"/api/v1/orgs/default/traces/{trace_id}")
        assert status == 200, body
        return body
