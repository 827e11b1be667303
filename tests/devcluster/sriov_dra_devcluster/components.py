"""The control-plane processes: their command lines, how they start, stop and report health.

Pure parts (argument lists, the kwok stage config) are separate from the
process shell (spawn, probe, signal), so the flags can be read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sriov_dra_devcluster.certs import SERVICE_CIDR
from sriov_dra_devcluster.processes import ComponentSpec, free_ports

ETCD: Final = "etcd"
APISERVER: Final = "kube-apiserver"
CONTROLLER_MANAGER: Final = "kube-controller-manager"
SCHEDULER: Final = "kube-scheduler"
KWOK: Final = "kwok"
START_ORDER: Final = (ETCD, APISERVER, CONTROLLER_MANAGER, SCHEDULER, KWOK)

SIMULATED_NODE_ANNOTATION: Final = "kwok.x-k8s.io/node"
SIMULATED_NODE_VALUE: Final = "fake"
NODE_LEASE_SECONDS: Final = 40
SERVICE_ACCOUNT_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"
CONTROL_PLANE_FEATURE_GATES: Final = (
    "--feature-gates=DRADeviceTaints=true,ResourceHealthStatus=true"
)
"""Alpha in 1.34. DRADeviceTaints: the API server keeps ResourceSlice device taints (the
agent taints the VFs of a PF whose link is down), the scheduler honours them, the
controller manager's taint eviction controller knows them. ResourceHealthStatus: the API
server keeps the device health a kubelet with the same gate writes into a pod's
``containerStatuses[].allocatedResourcesStatus`` (it drops the field without it)."""
DEVICE_TAINT_RULES: Final = "--runtime-config=resource.k8s.io/v1alpha3=true"
"""The gate's DeviceTaintRule API (resource.k8s.io/v1alpha3): the scheduler and the
controller manager watch it once the gate is on, and log a failed list every few
seconds while the API server does not serve it."""


@dataclass(frozen=True)
class Ports:
    """Loopback ports of one cluster, picked free at ``up`` time."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def pick(cls) -> Ports:
        """Six distinct ports that were free a moment ago."""
        return cls(*free_ports(6))


@dataclass(frozen=True)
class Files:
    """Inputs the components read (all inside the state dir)."""

    state_dir: Path
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path
    controller_manager_kubeconfig: Path
    scheduler_kubeconfig: Path
    kwok_kubeconfig: Path
    kubelet_client_cert: Path | None = None
    kubelet_client_key: Path | None = None

    @property
    def etcd_data(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def scheduler_config(self) -> Path:
        return self.state_dir / "config" / "kube-scheduler.yaml"

    @property
    def kwok_config(self) -> Path:
        return self.state_dir / "config" / "kwok-stages.yaml"

    @property
    def kwok_workdir(self) -> Path:
        return self.state_dir / "kwok"

    def cert_dir(self, component: str) -> Path:
        return self.state_dir / "run" / component


def _apiserver_network_flags(files: Files, node_host_ip: str | None) -> tuple[str, ...]:
    """Loopback only, or (with real nodes) reachable from the nodes and their pods."""
    if node_host_ip is None:
        return (
            "--bind-address=127.0.0.1",
            # Without it the apiserver looks for a default-route interface.
            "--advertise-address=127.0.0.1",
            # The kubernetes Service endpoint would be loopback, which the
            # reconciler rejects forever; nothing in-cluster needs it here.
            "--endpoint-reconciler-type=none",
        )
    return (
        # Kubelets and pods (through kube-proxy's kubernetes Service) come from the
        # node bridge; this machine's own clients keep using 127.0.0.1.
        "--bind-address=0.0.0.0",
        f"--advertise-address={node_host_ip}",
        f"--kubelet-client-certificate={files.kubelet_client_cert}",
        f"--kubelet-client-key={files.kubelet_client_key}",
        "--kubelet-preferred-address-types=InternalIP",
    )


def component_specs(
    bin_dir: Path, files: Files, ports: Ports, *, node_host_ip: str | None = None
) -> dict[str, ComponentSpec]:
    """Command lines of every component, keyed by name, in start order.

    ``node_host_ip``: this machine's address on the real nodes' bridge, when there are
    real nodes; the apiserver then listens there too.
    """
    api = f"https://127.0.0.1:{ports.apiserver}"
    etcd_client = f"http://127.0.0.1:{ports.etcd_client}"
    etcd_peer = f"http://127.0.0.1:{ports.etcd_peer}"
    kcm_kc = str(files.controller_manager_kubeconfig)
    sched_kc = str(files.scheduler_kubeconfig)
    specs = [
        ComponentSpec(
            ETCD,
            (
                str(bin_dir / "etcd"),
                "--name=default",
                f"--data-dir={files.etcd_data}",
                f"--listen-client-urls={etcd_client}",
                f"--advertise-client-urls={etcd_client}",
                f"--listen-peer-urls={etcd_peer}",
                f"--initial-advertise-peer-urls={etcd_peer}",
                f"--initial-cluster=default={etcd_peer}",
                # Test data: speed over durability.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ),
            ports.etcd_client,
            f"{etcd_client}/health",
        ),
        ComponentSpec(
            APISERVER,
            (
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_client}",
                *_apiserver_network_flags(files, node_host_ip),
                f"--secure-port={ports.apiserver}",
                f"--cert-dir={files.cert_dir(APISERVER)}",
                f"--tls-cert-file={files.serving_cert}",
                f"--tls-private-key-file={files.serving_key}",
                f"--client-ca-file={files.ca_cert}",
                # kcm and the scheduler read the request-header CA from the
                # extension-apiserver-authentication ConfigMap and log an error every
                # few seconds while it is missing. No front-proxy client cert is ever
                # issued, so this trusts nobody new.
                f"--requestheader-client-ca-file={files.ca_cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={files.sa_pub}",
                f"--service-account-signing-key-file={files.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                CONTROL_PLANE_FEATURE_GATES,
                DEVICE_TAINT_RULES,
                "--v=1",
            ),
            ports.apiserver,
            f"{api}/readyz",
        ),
        ComponentSpec(
            CONTROLLER_MANAGER,
            (
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kcm_kc}",
                f"--authentication-kubeconfig={kcm_kc}",
                f"--authorization-kubeconfig={kcm_kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports.controller_manager}",
                f"--cert-dir={files.cert_dir(CONTROLLER_MANAGER)}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={files.sa_key}",
                f"--root-ca-file={files.ca_cert}",
                f"--cluster-signing-cert-file={files.ca_cert}",
                f"--cluster-signing-key-file={files.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*",
                "--profiling=false",
                CONTROL_PLANE_FEATURE_GATES,
                "--v=1",
            ),
            ports.controller_manager,
            f"https://127.0.0.1:{ports.controller_manager}/healthz",
        ),
        ComponentSpec(
            SCHEDULER,
            (
                str(bin_dir / "kube-scheduler"),
                f"--config={files.scheduler_config}",
                f"--authentication-kubeconfig={sched_kc}",
                f"--authorization-kubeconfig={sched_kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports.scheduler}",
                f"--cert-dir={files.cert_dir(SCHEDULER)}",
                CONTROL_PLANE_FEATURE_GATES,
                "--v=1",
            ),
            ports.scheduler,
            f"https://127.0.0.1:{ports.scheduler}/healthz",
        ),
        ComponentSpec(
            KWOK,
            (
                str(bin_dir / "kwok"),
                f"--kubeconfig={files.kwok_kubeconfig}",
                f"--config={files.kwok_config}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector="
                f"{SIMULATED_NODE_ANNOTATION}={SIMULATED_NODE_VALUE}",
                f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
                # Plain HTTP /healthz on loopback; kwok's default would be 0.0.0.0.
                f"--server-address=127.0.0.1:{ports.kwok}",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.244.0.1",
            ),
            ports.kwok,
            f"http://127.0.0.1:{ports.kwok}/healthz",
            # kwok also reads ~/.kwok/kwok.yaml when it exists; keep it to our own config.
            (("KWOK_WORKDIR", str(files.kwok_workdir)),),
        ),
    ]
    return {spec.name: spec for spec in specs}


def scheduler_config(kubeconfig: Path) -> str:
    """KubeSchedulerConfiguration: our kubeconfig, no leader election, default plugins (DRA on)."""
    return (
        "apiVersion: kubescheduler.config.k8s.io/v1\n"
        "kind: KubeSchedulerConfiguration\n"
        f"clientConnection:\n  kubeconfig: {kubeconfig}\n"
        "leaderElection:\n  leaderElect: false\n"
    )


# kwok plays nodes only. Pods on simulated nodes belong to our node emulator,
# which reports Running only once the claim is prepared and the VF attached; a
# kwok default pod stage would mark them Running at once. kwok falls back to its
# default pod stages when the config has none, so we give it one that can never
# match (every pod has a name).
KWOK_STAGES: Final = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: NotIn
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $since := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $since | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
      addresses:
      {{ with .status.addresses }}{{ YAML . 1 }}{{ else }}
      - address: {{ NodeIP | Quote }}
        type: InternalIP
      - address: {{ .metadata.name | Quote }}
        type: Hostname
      {{ end }}
      nodeInfo:
        architecture: amd64
        operatingSystem: linux
        kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
        kubeProxyVersion: {{ printf "kwok-%s" Version | Quote }}
        containerRuntimeVersion: "sriov-dra-node-emulator"
        kernelVersion: ""
        osImage: "simulated"
        machineID: ""
        systemUUID: ""
        bootID: ""
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat-with-lease
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: In
      values: ['Running']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: In
      values: ['True']
  # The Lease carries the heartbeat; the status only needs refreshing now and then.
  delay:
    durationMilliseconds: 600000
    jitterDurationMilliseconds: 610000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $since := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $since | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pods-belong-to-the-node-emulator
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.name'
      operator: DoesNotExist
  next: {}
"""
