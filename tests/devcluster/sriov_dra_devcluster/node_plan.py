"""Real nodes of the dev cluster, as data: addresses, paths and every config file's text.

A real node is kubelet + containerd + runc + kube-proxy in a network namespace of
its own (its "host" network, where hostNetwork pods such as the agent run) and a
mount namespace of its own (so ``/var/lib/kubelet``, ``/run/containerd``,
``/var/run/cdi``, ``/var/lib/cni`` ... are the node's, as on a machine of its own,
and the manifests' hostPaths need no change). The node's network namespace is
also the host side of its simulated SR-IOV NIC (``sriovsim-<node>``), so the VFs
sit in the node's host network as a real NIC's VFs do.

Nodes reach the control plane, the registry and CoreDNS on the node bridge's host
address; nothing here leaves the machine. Only one real-node cluster runs per
machine: the bridge, the subnet and the netns names are fixed.

Everything in this module is pure: ``real_nodes`` does the I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

NODE_NET: Final = "10.250.0"
"""The /24 joining the nodes and this machine (host end ``.1``, node N ``.10+N``)."""
HOST_IP: Final = f"{NODE_NET}.1"
POD_NET: Final = "10.244"
"""Pod CIDR of node N: 10.244.N.0/24 (cluster CIDR 10.244.0.0/16)."""
CLUSTER_CIDR: Final = f"{POD_NET}.0.0/16"
BRIDGE: Final = "sdra-nodes"
SIM_PREFIX: Final = "sriovsim"
"""The simulated NIC's default netns prefix: the node's netns is ``sriovsim-<node>``."""
SIM_ROOT: Final = Path("/run/sriov-dra-sim")
"""Where the agent looks for the simulated NIC's sysfs tree by default."""
REAL_NODE_PREFIX: Final = "node-"
UPSTREAM_DEMO_HOSTNAME: Final = "dra-ctlplane-0.dra.lab"
"""node-1's hostname (its ``kubernetes.io/hostname`` label, set by its kubelet): the node
the Go driver's ``demo/resource-policies`` selects, so that demo applies unchanged."""
UPLINK: Final = "uplink0"
"""The node's link to the node bridge: its ``eth0``/``eth1`` are the simulated NIC's PFs."""
REGISTRY_PORT: Final = 5000
DNS_DOMAIN: Final = "cluster.local"
PAUSE_IMAGE: Final = "registry.k8s.io/pause:3.10.2"
MIRRORED_REGISTRIES: Final = ("quay.io", "registry.k8s.io", "docker.io", "ghcr.io")
"""Registries containerd pulls from the local registry instead (no internet here)."""
KUBELET_PORT: Final = 10250
KUBELET_HEALTHZ_PORT: Final = 10248
KUBE_PROXY_HEALTHZ_PORT: Final = 10256
CONTAINERD_SOCKET: Final = "/run/containerd/containerd.sock"
RUNC: Final = "/usr/sbin/runc"
CNI_BIN_DIR: Final = "/usr/lib/cni"


def real_node_names(count: int) -> list[str]:
    """The real nodes' names: node-1 .. node-<count>."""
    return [f"{REAL_NODE_PREFIX}{i}" for i in range(1, count + 1)]


def node_index(name: str) -> int:
    """N of ``node-N``; ValueError for any other name."""
    suffix = name.removeprefix(REAL_NODE_PREFIX)
    if suffix == name or not suffix.isdigit() or not 1 <= int(suffix) <= 200:
        raise ValueError(f"{name!r} is not a real node name (node-1 .. node-200)")
    return int(suffix)


def registry_address() -> str:
    """``host:port`` of the local registry, reachable from this machine and every node."""
    return f"{HOST_IP}:{REGISTRY_PORT}"


def local_ref(ref: str) -> str:
    """Where image ``ref`` (with its registry host, e.g. ``quay.io/x/y:t``) is served here."""
    host, _, path = ref.partition("/")
    if host not in MIRRORED_REGISTRIES or not path:
        raise ValueError(
            f"image {ref!r}: name its registry, one of {', '.join(MIRRORED_REGISTRIES)}"
        )
    return f"{registry_address()}/{path}"


@dataclass(frozen=True)
class NodePlan:
    """One real node: its names, addresses and directories."""

    name: str
    state_root: Path
    """``<state dir>/nodes``: every node keeps its files in ``<state_root>/<name>``."""

    @property
    def index(self) -> int:
        return node_index(self.name)

    @property
    def ip(self) -> str:
        return f"{NODE_NET}.{10 + self.index}"

    @property
    def hostname(self) -> str:
        """The node's ``kubernetes.io/hostname``: its name, but node-1's is the upstream demo's."""
        return UPSTREAM_DEMO_HOSTNAME if self.index == 1 else self.name

    @property
    def pod_cidr(self) -> str:
        return f"{POD_NET}.{self.index}.0/24"

    @property
    def netns(self) -> str:
        """The node's network namespace, also its simulated NIC's host netns."""
        return f"{SIM_PREFIX}-{self.name}"

    @property
    def host_veth(self) -> str:
        """This machine's end of the node's link to the bridge (the node's end is ``UPLINK``)."""
        return f"sdra-{self.name}"[:15]

    @property
    def directory(self) -> Path:
        return self.state_root / self.name

    @property
    def config_dir(self) -> Path:
        return self.directory / "config"

    def bind_mounts(self, sim_node_dir: Path) -> list[tuple[Path, Path]]:
        """(source in the state dir, node path) pairs: the node's private directories.

        ``sim_node_dir`` is the simulated NIC's directory of this node; it appears at
        ``/run/sriov-dra-sim/<node>``, where the agent's simulated backend looks.
        """
        d = self.directory
        return [
            (d / "kubelet", Path("/var/lib/kubelet")),
            (d / "containerd", Path("/var/lib/containerd")),
            (d / "containerd-run", Path("/run/containerd")),
            (d / "cdi", Path("/run/cdi")),
            (d / "etc-cdi", Path("/etc/cdi")),
            (d / "cni", Path("/var/lib/cni")),
            (d / "cni-conf", Path("/etc/cni/net.d")),
            (d / "opt-cni-bin", Path("/opt/cni/bin")),
            (d / "pod-logs", Path("/var/log/pods")),
            (d / "container-logs", Path("/var/log/containers")),
            (sim_node_dir, SIM_ROOT / self.name),
        ]

    # --- config files ---------------------------------------------------------------

    def containerd_config(self) -> str:
        """containerd 2.x (config version 3): CRI with CDI, runc, CNI, local mirrors."""
        return f"""\
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "{CONTAINERD_SOCKET}"

# NRI would put its socket in this machine's /run/nri, shared by every node.
[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{self.config_dir / "certs.d"}"

[plugins."io.containerd.cri.v1.runtime"]
  enable_cdi = true
  cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]
  # This machine does not let a process lower its OOM score (runc init fails otherwise).
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        SystemdCgroup = false
"""

    def cni_conflist(self) -> str:
        """eth0: a bridge per node with host-local addresses from the node's pod CIDR."""
        return json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "sriov-dra-podnet",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": "cni0",
                        "isGateway": True,
                        # Pods reach the API server and CoreDNS as the node: this
                        # machine needs no route back to every pod CIDR.
                        "ipMasq": True,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": self.pod_cidr}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            },
            indent=2,
        )

    def kubelet_config(self, ca_cert: Path) -> str:
        """KubeletConfiguration for a cgroup v1 machine that may not lower OOM scores."""
        return f"""\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {self.ip}
port: {KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: {self.ip}
healthzPort: {KUBELET_HEALTHZ_PORT}
containerRuntimeEndpoint: unix://{CONTAINERD_SOCKET}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
clusterDNS: [{HOST_IP}]
clusterDomain: {DNS_DOMAIN}
resolvConf: {self.config_dir / "resolv.conf"}
volumePluginDir: {self.directory / "volume-plugins"}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca_cert}}}
authorization: {{mode: Webhook}}
serializeImagePulls: false
# A dev machine's disk is shared with everything else: never evict for disk.
evictionHard: {{memory.available: "100Mi", nodefs.available: "0%", imagefs.available: "0%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
registerNode: true
# Alpha in 1.34: the kubelet watches the DRA health stream (NodeWatchResources) and shows
# device health in the pods' status.
featureGates: {{ResourceHealthStatus: true}}
"""

    def kube_proxy_config(self, kubeconfig: Path) -> str:
        """kube-proxy in iptables mode; conntrack sysctls are the machine's, left alone."""
        return f"""\
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
mode: iptables
clusterCIDR: {CLUSTER_CIDR}
hostnameOverride: {self.name}
bindAddress: {self.ip}
healthzBindAddress: {self.ip}:{KUBE_PROXY_HEALTHZ_PORT}
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"""

    def resolv_conf(self) -> str:
        """The node's own resolver (dnsPolicy Default): CoreDNS, there being no other."""
        return f"nameserver {HOST_IP}\n"


def hosts_toml(registry: str) -> str:
    """containerd's hosts.toml for one mirrored registry: pull from the local one."""
    return (
        f'[host."http://{registry_address()}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        "  skip_verify = true\n"
        f"# mirrors {registry}\n"
    )


def corefile(kubeconfig: Path, health_port: int) -> str:
    """CoreDNS on the bridge's host address, serving cluster.local from the API server."""
    return f"""\
.:53 {{
    bind {HOST_IP}
    errors
    health 127.0.0.1:{health_port}
    kubernetes {DNS_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
"""
