"""A minimal synchronous JSON client for the dev cluster's API server.

Only for bootstrapping (readiness, node registration), where spawning kubectl
for every poll would be slow and a full client library is more than we need.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ApiResponse:
    """HTTP status and decoded JSON body (None when the body is not JSON)."""

    status: int
    body: Any


class AdminApi:
    """Talks to ``server`` as the owner of ``client_cert``, trusting ``ca_cert``."""

    def __init__(self, server: str, ca_cert: Path, client_cert: Path, client_key: Path) -> None:
        self.server = server.rstrip("/")
        self.context = ssl.create_default_context(cafile=str(ca_cert))
        self.context.load_cert_chain(str(client_cert), str(client_key))

    def request(
        self, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> ApiResponse:
        """Send one request; HTTP errors come back as responses, network errors raise OSError."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.context) as resp:
                return ApiResponse(resp.status, _decode(resp.read()))
        except urllib.error.HTTPError as err:
            return ApiResponse(err.code, _decode(err.read()))

    def get(self, path: str) -> ApiResponse:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> ApiResponse:
        return self.request("POST", path, body)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
