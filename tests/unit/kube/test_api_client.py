"""The API client the shells load: how many connections it may keep open."""

from __future__ import annotations

from pathlib import Path

from sriov_dra_kube.client import load_api_client

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


async def test_connections_caps_the_pool_and_the_default_is_the_librarys(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    async with await load_api_client(str(path), connections=7) as capped:
        assert capped.rest_client.pool_manager.connector.limit == 7
    async with await load_api_client(str(path)) as default:
        assert default.rest_client.pool_manager.connector.limit == 100
