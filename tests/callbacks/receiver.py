"""A real HTTP receiver on 127.0.0.1 for callback tests: scripted answers, recorded requests, signature checks.

It verifies each request the way the Laravel side would (X-ML-Signature as PHP's hash_hmac, and the
Standard Webhooks signature as the spec defines it), independently of `callbacks.services`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    hex_ok: bool
    standard_ok: bool

    @property
    def id(self) -> str:
        return json.loads(self.body)["id"]

    @property
    def json(self) -> dict:
        return json.loads(self.body)


def expected_hex(secret: str, body: bytes) -> str:
    """What `hash_hmac('sha256', $body, $secret)` returns in PHP."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def expected_standard(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The Standard Webhooks v1 signature, written from the spec (whsec_ secrets are base64)."""
    key = base64.b64decode(secret[len("whsec_") :]) if secret.startswith("whsec_") else secret.encode()
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A sender that went away mid-answer (a killed worker, a timeout) is expected here, not an error."""


@dataclass
class Receiver:
    """Answers each request with the next `(status, headers)` of `script`, then with `default`."""

    secret: str
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, dict[str, str]] = (200, {})
    delay: float = 0.0
    port: int = 0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/ml/predictions-updated"

    @property
    def accepted_ids(self) -> list[str]:
        """Callback ids answered with a 2xx, in the order they arrived."""
        with self._lock:
            return [r.id for r in self.received if 200 <= r.status < 300]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    status, extra = receiver.script.pop(0) if receiver.script else receiver.default
                    receiver.received.append(
                        Received(
                            headers=headers,
                            body=body,
                            status=status,
                            hex_ok=hmac.compare_digest(
                                expected_hex(receiver.secret, body), headers.get("x-ml-signature", "")
                            ),
                            standard_ok=hmac.compare_digest(
                                expected_standard(
                                    receiver.secret,
                                    headers.get("webhook-id", ""),
                                    headers.get("webhook-timestamp", ""),
                                    body,
                                ),
                                headers.get("webhook-signature", ""),
                            ),
                        )
                    )
                answer = json.dumps({"status": "success" if status < 300 else "error"}).encode()
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format, *args) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
