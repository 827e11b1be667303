"""What ``sriov-dra devcluster status`` reports, and how each component's health is probed."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from sriov_dra_devcluster import certs, node_services
from sriov_dra_devcluster.components import APISERVER, ETCD, KWOK


@dataclass(frozen=True)
class ComponentStatus:
    """What ``status`` reports for one component."""

    name: str
    pid: int
    port: int
    alive: bool
    healthy: bool
    log_file: str


@dataclass(frozen=True)
class ClusterStatus:
    """Every component's status plus the nodes and the kubeconfig."""

    state_dir: Path
    components: list[ComponentStatus]
    nodes: list[str]
    kubeconfig: Path | None

    @property
    def running(self) -> bool:
        """True when every component is alive and healthy."""
        return bool(self.components) and all(c.alive and c.healthy for c in self.components)

    @property
    def anything_alive(self) -> bool:
        return any(c.alive for c in self.components)

    def render(self) -> str:
        """A table for humans."""
        if not self.components:
            return f"dev cluster in {self.state_dir}: not running"
        word = "running" if self.running else "DEGRADED"
        lines = [f"dev cluster in {self.state_dir}: {word}"]
        lines.append(f"  {'COMPONENT':<24} {'PID':>8} {'PORT':>6}  STATE")
        for c in self.components:
            state = "healthy" if c.alive and c.healthy else "unhealthy" if c.alive else "exited"
            lines.append(f"  {c.name:<24} {c.pid:>8} {c.port:>6}  {state}")
        if self.nodes:
            lines.append(f"  nodes: {', '.join(self.nodes)}")
        if self.kubeconfig:
            lines.append(f"  export KUBECONFIG={self.kubeconfig}")
        return "\n".join(lines)


def probe_context(component: str, pki: certs.Pki) -> ssl.SSLContext | None:
    """The TLS context to probe ``component``'s health URL with (None: plain HTTP)."""
    if (
        component in (ETCD, KWOK)
        or "/" in component
        or component in (node_services.REGISTRY, node_services.COREDNS)
    ):
        return None
    if component == APISERVER:
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        admin = certs.ADMIN
        ctx.load_cert_chain(str(pki.client_cert(admin)), str(pki.client_key(admin)))
        return ctx
    # kcm and the scheduler serve /healthz with a self-signed cert of their own.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
