"""Run ``sriov-dra agent`` as a real process against the dev cluster and a simulated NIC.

The test plays the operator (writes allocations), the kubelet (calls the DRA
gRPC service on the agent's socket) and the container runtime (runs the CDI
hook with an OCI state whose pid lives in a pod netns).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from pyroute2 import netns as pyroute2_netns
from sriov_dra import allocation_record, constants
from sriov_dra.naming import device_name
from sriov_dra_agent.proto import dra_v1_pb2, dra_v1_pb2_grpc
from sriov_dra_agent.vf.backends.simulated_nic import SimPf, SimulatedNic
from sriov_dra_devcluster.cluster import DevCluster

ROOT = Path(__file__).resolve().parents[2]
SRIOV_DRA = Path(sys.executable).parent / "sriov-dra"
DRIVER = constants.DRIVER_NAME
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], *, what: str, timeout: float = 30.0) -> T:
    """Poll ``probe`` until truthy; AssertionError naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")


def agent_service_account(cluster: DevCluster) -> Path:
    """The agent's ServiceAccount bound to the shipped RBAC (a missing rule fails there)."""
    for manifest in ("namespace.yaml", "serviceaccounts.yaml", "rbac-agent.yaml"):
        cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "base" / manifest))
    return cluster.kubeconfig_for_service_account("sriov-dra", "sriov-dra-agent")


@contextlib.contextmanager
def node_object(cluster: DevCluster, prefix: str) -> Iterator[str]:
    """A Node object of its own, named ``<prefix>-<hex>`` (no kubelet: the test plays it);
    deleted afterwards with its ResourceSlices."""
    name = f"{prefix}-{os.urandom(3).hex()}"
    cluster.kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    ))  # fmt: skip
    try:
        yield name
    finally:
        cluster.kubectl("delete", "node", name, "--wait=false", check=False)
        cluster.kubectl(
            "delete", "resourceslices", "--field-selector", f"spec.nodeName={name}",
            "--wait=false", check=False,
        )  # fmt: skip


@contextlib.contextmanager
def built_nic(node: str, letter: str, pfs: Sequence[SimPf]) -> Iterator[SimulatedNic]:
    """A simulated NIC for ``node`` (netns prefix ``<letter><hex>``), built from ``pfs``;
    destroyed afterwards, and no netns of it may be left behind."""
    prefix = letter + secrets.token_hex(3)
    nic = SimulatedNic(node, prefix=prefix)
    nic.build(pfs)
    try:
        yield nic
    finally:
        nic.destroy()
        leftover = [ns for ns in pyroute2_netns.listnetns() if ns.startswith(prefix)]
        assert leftover == [], f"netns left behind: {leftover}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Pod:
    """A process in its own netns, as a pod sandbox (``unshare --net sleep``)."""

    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls) -> Pod:
        proc = subprocess.Popen(["unshare", "--net", "sleep", "600"])
        own = os.stat("/proc/self/ns/net").st_ino
        wait_for(
            lambda: os.stat(f"/proc/{proc.pid}/ns/net").st_ino != own,
            what="unshare to enter a new netns",
            timeout=5,
        )
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def run(self, *cmd: str) -> str:
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-n", *cmd],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def addresses(self, ifname: str) -> list[str]:
        out = self.run("ip", "-j", "-4", "addr", "show", "dev", ifname)
        return [f"{a['local']}/{a['prefixlen']}" for i in json.loads(out) for a in i["addr_info"]]

    def links(self) -> list[str]:
        return sorted(i["ifname"] for i in json.loads(self.run("ip", "-j", "link", "show")))

    def mac(self, ifname: str) -> str:
        (link,) = json.loads(self.run("ip", "-j", "link", "show", "dev", ifname))
        return str(link["address"])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@dataclass
class AgentProcess:
    """One ``sriov-dra agent`` for ``node``, its directories under ``root``."""

    node: str
    sim_prefix: str
    kubeconfig: Path
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    health_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    starts: int = 0
    extra_args: list[str] = field(default_factory=list)
    """More ``sriov-dra agent`` flags for the next start."""

    @property
    def plugins_dir(self) -> Path:
        return self.root / "p"

    @property
    def registrar_dir(self) -> Path:
        return self.root / "r"

    @property
    def cdi_dir(self) -> Path:
        return self.root / "cdi"

    @property
    def cni_data_dir(self) -> Path:
        return self.root / "cni"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def dra_socket(self) -> Path:
        return self.plugins_dir / DRIVER / "dra.sock"

    @property
    def records_dir(self) -> Path:
        return self.state_dir / "vfs"

    @property
    def log_path(self) -> Path:
        return self.root / f"agent-{self.starts}.log"

    def command(self) -> list[str]:
        return [
            str(SRIOV_DRA), "agent",
            "--node-name", self.node,
            "--backend", "simulated",
            "--sim-prefix", self.sim_prefix,
            "--kubeconfig", str(self.kubeconfig),
            "--kubelet-registrar-dir", str(self.registrar_dir),
            "--kubelet-plugins-dir", str(self.plugins_dir),
            "--cdi-dir", str(self.cdi_dir),
            "--cni-data-dir", str(self.cni_data_dir),
            "--state-dir", str(self.state_dir),
            "--install-hook",
            "--metrics-port", str(self.metrics_port),
            "--health-port", str(self.health_port),
            "--bind-address", "127.0.0.1",
            "--rescan-interval", "1",
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "agent already running"
        self.starts += 1
        with open(self.log_path, "wb") as log:
            # Own session: a SIGKILL of the group also kills the CNI plugin it may be
            # running, as a crash of the agent's container would.
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        # /healthz answers only after the start-up sweep and once every server is up
        # (a socket file may be left over by a killed predecessor).
        wait_for(
            lambda: self.healthy() or self.proc.poll() is not None,  # type: ignore[union-attr]
            what=f"agent {self.node} to answer /healthz",
        )
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.log()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=1
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as response:
            return str(response.read().decode())

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def terminate(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def crash(self) -> None:
        """SIGKILL the agent and everything it runs."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def record(self, pci: str) -> dict[str, Any] | None:
        path = self.records_dir / f"{pci}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def allocated_ips(self) -> list[str]:
        """IP files host-local holds in this agent's data dir (all networks)."""
        if not self.cni_data_dir.is_dir():
            return []
        return sorted(
            f"{net.name}/{f.name}"
            for net in self.cni_data_dir.iterdir()
            if net.is_dir()
            for f in net.iterdir()
            if f.name[0].isdigit()
        )

    # -- the kubelet's side --------------------------------------------------------------

    def _stub(self) -> tuple[grpc.Channel, Any]:
        channel = grpc.insecure_channel(f"unix://{self.dra_socket}")
        return channel, dra_v1_pb2_grpc.DRAPluginStub(channel)  # type: ignore[no-untyped-call]

    def prepare(self, claim: dict[str, Any]) -> Any:
        meta = claim["metadata"]
        channel, stub = self._stub()
        with channel:
            response = stub.NodePrepareResources(
                dra_v1_pb2.NodePrepareResourcesRequest(
                    claims=[
                        dra_v1_pb2.Claim(
                            namespace=meta["namespace"], name=meta["name"], uid=meta["uid"]
                        )
                    ]
                ),
                timeout=45,
            )
        return response.claims[meta["uid"]]

    def unprepare(self, claim: dict[str, Any]) -> str:
        meta = claim["metadata"]
        channel, stub = self._stub()
        with channel:
            response = stub.NodeUnprepareResources(
                dra_v1_pb2.NodeUnprepareResourcesRequest(
                    claims=[
                        dra_v1_pb2.Claim(
                            namespace=meta["namespace"], name=meta["name"], uid=meta["uid"]
                        )
                    ]
                ),
                timeout=45,
            )
        error: str = response.claims[meta["uid"]].error
        return error

    # -- the container runtime's side ----------------------------------------------------

    def cdi_spec(self, claim_uid: str) -> dict[str, Any]:
        path = self.cdi_dir / f"{DRIVER}-vf_{claim_uid}.json"
        spec: dict[str, Any] = json.loads(path.read_text())
        return spec

    def run_hook(
        self, claim_uid: str, pod: Pod, *, container: str = "ctr-1", wait: bool = True
    ) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
        """Run the claim's createRuntime hook exactly as the CDI spec says."""
        (hook,) = self.cdi_spec(claim_uid)["containerEdits"]["hooks"]
        state = {
            "ociVersion": "1.0.2",
            "id": container,
            "status": "creating",
            "pid": pod.pid,
            "bundle": str(self.root),
            "annotations": {"io.kubernetes.pod.name": "pod-1"},
        }
        argv = [hook["path"], *hook["args"][1:]]
        if not wait:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(state))
            proc.stdin.close()
            return proc
        return subprocess.run(
            argv, input=json.dumps(state), capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip


def allocation_patch(
    claim: dict[str, Any], *, node: str, pci: str, pf: str, vf_index: int, nad: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata patch, status patch) an operator writes to allocate VF ``pci`` on ``node``."""
    device = device_name(pci)
    record = allocation_record.AllocatedVf(
        request="vf", pool=node, device=device, node=node, pf=pf,
        pciAddress=pci, vfIndex=vf_index, ifName="net1", nad=nad,
    )  # fmt: skip
    metadata = {
        "metadata": {
            "labels": {constants.NODE_LABEL: node},
            "annotations": {constants.ALLOCATION_ANNOTATION: allocation_record.encode([record])},
            "finalizers": [constants.FINALIZER],
        }
    }
    status = {
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "vf", "driver": DRIVER, "pool": node, "device": device}
                    ],
                    "config": [
                        {"source": "FromClaim", "requests": ["vf"], "opaque": c["opaque"]}
                        for c in claim["spec"]["devices"]["config"]
                    ],
                },
                "nodeSelector": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [node]}
                            ]
                        }
                    ]
                },
            }
        }
    }
    return metadata, status


@contextlib.contextmanager
def running_agent(
    node: str, sim_prefix: str, kubeconfig: Path, *, prefix: str, extra_args: Sequence[str] = ()
) -> Iterator[AgentProcess]:
    """An agent for ``node`` (with ``extra_args`` flags) in a fresh directory
    ``/tmp/<prefix>*``, started; afterwards terminated if still running, the tail of its log
    printed, the directory removed."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    proc = AgentProcess(
        node=node, sim_prefix=sim_prefix, kubeconfig=kubeconfig, root=root,
        extra_args=list(extra_args),
    )  # fmt: skip
    proc.start()
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.terminate()
        print(proc.log()[-4000:])
        shutil.rmtree(root, ignore_errors=True)
