"""Waiting for the dev cluster's parts to come up, and blaming the one that did not.

Every wait ends at a deadline; a component that exits or never turns healthy,
a node that never turns Ready, raises ComponentFailed naming the component to
blame, with the tail of its log.
"""

from __future__ import annotations

import time
from pathlib import Path

from sriov_dra_devcluster import certs, kubeconfigs, processes
from sriov_dra_devcluster.admin_api import AdminApi
from sriov_dra_devcluster.cluster_status import probe_context
from sriov_dra_devcluster.components import APISERVER, CONTROLLER_MANAGER
from sriov_dra_devcluster.errors import ComponentFailed
from sriov_dra_devcluster.kwok_nodes import node_is_ready, node_manifest
from sriov_dra_devcluster.processes import ComponentSpec, RunningComponent
from sriov_dra_devcluster.state_dir import StateDir


class ClusterWaits:
    """Health and readiness waits for the cluster recorded in ``state`` (admin ``kubeconfig``)."""

    def __init__(self, state: StateDir, pki: certs.Pki, kubeconfig: Path) -> None:
        self._state = state
        self._pki = pki
        self._kubeconfig = kubeconfig

    def fail(self, comp: RunningComponent, problem: str) -> ComponentFailed:
        """The error blaming ``comp``, with the tail of its log."""
        log_file = Path(comp.log_file)
        return ComponentFailed(comp.name, problem, log_file, processes.log_tail(log_file))

    def culprit(self, name: str) -> RunningComponent:
        """The recorded component called ``name``."""
        return next(c for c in self._state.components() if c.name == name)

    def admin_api(self) -> AdminApi:
        """The API server, as system:masters."""
        pki = self._pki
        return AdminApi(
            kubeconfigs.server_of(self._kubeconfig),
            pki.ca_cert,
            pki.client_cert(certs.ADMIN),
            pki.client_key(certs.ADMIN),
        )

    def wait_healthy(self, comp: RunningComponent, spec: ComponentSpec, deadline: float) -> None:
        """Until ``comp`` answers its health check; blames it if it exits or times out."""
        context = probe_context(comp.name, self._pki)
        while True:
            processes.reap(comp.pid)
            if not comp.alive():
                raise self.fail(comp, "exited before becoming healthy")
            if processes.probe(spec.health_url, context):
                return
            if time.monotonic() > deadline:
                raise self.fail(comp, f"not healthy at {spec.health_url} before the timeout")
            time.sleep(0.2)

    def wait_for_default_service_account(self, deadline: float) -> None:
        """Until default/default exists (pods cannot be created before it)."""
        api = self.admin_api()
        while api.get("/api/v1/namespaces/default/serviceaccounts/default").status != 200:
            if time.monotonic() > deadline:
                raise self.fail(
                    self.culprit(CONTROLLER_MANAGER),
                    "did not create serviceaccount default/default before the timeout",
                )
            time.sleep(0.2)

    def register_kwok_nodes(self, names: list[str]) -> None:
        """Create each Node (an existing one is kept); blames the API server if it refuses."""
        api = self.admin_api()
        for name in names:
            resp = api.post("/api/v1/nodes", node_manifest(name))
            if resp.status not in (201, 409):
                raise self.fail(
                    self.culprit(APISERVER), f"refused to register node {name}: {resp.body}"
                )

    def wait_nodes_ready(self, names: list[str], deadline: float, *, culprit: str) -> None:
        """Wait until every node is Ready and untainted; blame ``culprit`` (a name or prefix)."""
        api = self.admin_api()
        pending = list(names)
        while pending:
            pending = [n for n in pending if not _node_ready(api, n)]
            if not pending:
                return
            if time.monotonic() > deadline:
                blamed = culprit if not culprit.endswith("/") else f"{culprit}{pending[0]}"
                raise self.fail(
                    self.culprit(blamed),
                    f"nodes {', '.join(pending)} not Ready and untainted before the timeout",
                )
            time.sleep(0.3)


def _node_ready(api: AdminApi, name: str) -> bool:
    resp = api.get(f"/api/v1/nodes/{name}")
    return resp.status == 200 and isinstance(resp.body, dict) and node_is_ready(resp.body)
