"""Kubeconfig files for the dev cluster: client-certificate users and token users.

Credentials are embedded (``*-data``) so a kubeconfig can be copied anywhere
and read by kubectl, client-go, kopf and kubernetes-asyncio alike.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

CLUSTER_NAME = "sriov-dra-dev"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _document(server: str, ca_cert: Path, user: str, credentials: dict[str, str]) -> dict[str, Any]:
    context = f"{user}@{CLUSTER_NAME}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": context, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": context,
        "preferences": {},
    }


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(document, sort_keys=False))
    tmp.chmod(0o600)
    # Atomic: a reader never sees a half-written kubeconfig.
    tmp.replace(path)
    return path


def write_cert_kubeconfig(
    path: Path, *, server: str, ca_cert: Path, user: str, client_cert: Path, client_key: Path
) -> Path:
    """Write a kubeconfig that authenticates with a client certificate."""
    credentials = {
        "client-certificate-data": _b64(client_cert),
        "client-key-data": _b64(client_key),
    }
    return _write(path, _document(server, ca_cert, user, credentials))


def write_token_kubeconfig(
    path: Path, *, server: str, ca_cert: Path, user: str, token: str
) -> Path:
    """Write a kubeconfig that authenticates with a bearer token (e.g. a ServiceAccount's)."""
    return _write(path, _document(server, ca_cert, user, {"token": token}))


def _current_cluster(path: Path) -> dict[str, Any]:
    config = yaml.safe_load(path.read_text())
    context_name = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster: dict[str, Any] = next(
        c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"]
    )
    return cluster


def server_of(path: Path) -> str:
    """The API server URL of the current context's cluster."""
    server: str = _current_cluster(path)["server"]
    return server


def ca_of(path: Path) -> bytes:
    """The PEM CA bundle of the current context's cluster (embedded or referenced)."""
    cluster = _current_cluster(path)
    if "certificate-authority-data" in cluster:
        return base64.b64decode(cluster["certificate-authority-data"])
    ca_file = Path(cluster["certificate-authority"])
    return (ca_file if ca_file.is_absolute() else path.parent / ca_file).read_bytes()
