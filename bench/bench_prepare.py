"""NodePrepareResources as the kubelet sees it: the gRPC round trip on the agent's socket.

Runs a real ``sriov-dra agent`` process (simulated NIC, its own Node object, as
its ServiceAccount) against a dev cluster's control plane, creates a NAD and a
claim allocated to one VF as the operator would, waits until the agent has
programmed the VF, then, over one gRPC channel on the DRA socket as the kubelet
keeps it, measures over N rounds (default 50), the claim's prepare + unprepare and
the baseline taking turns in alternating order, so that load from other processes
weighs on them alike:

- NodePrepareResources of the claim (fresh each round: the previous round
  unprepared it): the claim's GET, the programming check, the status write, the
  CDI spec and the checkpoint;
- NodeUnprepareResources of the claim;
- the baseline: NodePrepareResources with no claims (the transport alone: gRPC over
  the unix socket, the server's dispatch and an empty answer).

Prints p50/p99 per row and each row's p50 as a multiple of the baseline's p50.
Needs root (the simulated NIC's netns) and the dev cluster binaries.

    .venv/bin/python bench/bench_prepare.py [--rounds 50] [--kubeconfig K]

Without ``--kubeconfig`` it starts a dev cluster of its own (the control plane and
one kwok node; the bench plays the kubelet of its own Node object) in its own state
dir and stops it at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [
    str(ROOT / "operator"),
    str(ROOT / "node_agent"),
    str(ROOT / "tests" / "devcluster"),
    str(ROOT / "tests" / "integration"),
]

import grpc  # noqa: E402
from agent_harness import (  # noqa: E402
    DRIVER,
    agent_service_account,
    allocation_patch,
    node_object,
    running_agent,
    wait_for,
)
from latency_table import percentile, print_ratio_table  # noqa: E402
from sriov_dra import constants  # noqa: E402
from sriov_dra.naming import device_name  # noqa: E402
from sriov_dra_agent.proto import dra_v1_pb2, dra_v1_pb2_grpc  # noqa: E402
from sriov_dra_agent.vf.backends.simulated import SimulatedBackend  # noqa: E402
from sriov_dra_agent.vf.backends.simulated_nic import SimPf, SimulatedNic  # noqa: E402
from sriov_dra_devcluster.cluster import DevCluster  # noqa: E402

NAMESPACE = "bench-prepare"
STATE_ROOT = Path("/var/tmp/sriov-dra")


def _nad(name: str) -> dict[str, Any]:
    config = {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "sriov",
        "vlan": 100,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.57.0.0/24"}]]},
    }
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"config": json.dumps(config)},
    }


def _claim(name: str, nad: str) -> dict[str, Any]:
    parameters = {
        "apiVersion": constants.VFCONFIG_API_VERSION,
        "kind": constants.VFCONFIG_KIND,
        "netAttachDefName": nad,
        "ifName": "net1",
    }
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "devices": {
                "requests": [{"name": "vf", "exactly": {"deviceClassName": DRIVER}}],
                "config": [
                    {"requests": ["vf"], "opaque": {"driver": DRIVER, "parameters": parameters}}
                ],
            }
        },
    }


def _vf_configured(cluster: DevCluster, name: str, device: str) -> bool:
    claim = cluster.kubectl_json("get", "resourceclaim", name, "-n", NAMESPACE)
    for entry in (claim.get("status") or {}).get("devices") or []:
        if entry.get("device") == device:
            return any(
                c["type"] == "VfConfigured" and c["status"] == "True"
                for c in entry.get("conditions") or []
            )
    return False


def _measure(cluster: DevCluster, rounds: int) -> list[tuple[str, list[float]]]:
    cluster.kubectl("apply", "-f", str(ROOT / "crds" / "network-attachment-definition.yaml"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/network-attachment-definitions.k8s.cni.cncf.io",
    )  # fmt: skip
    kubeconfig = agent_service_account(cluster)
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    with node_object(cluster, "bench-prepare") as node:
        nic = SimulatedNic(node, prefix="bp" + secrets.token_hex(3))
        nic.build([SimPf("simpf0", total_vfs=4, num_vfs=2)])
        try:
            with running_agent(node, nic.prefix, kubeconfig, prefix="bench-prepare-") as agent:
                vf = SimulatedBackend(nic).discover().vfs()[0]
                nad, name = "net-" + secrets.token_hex(2), "claim-" + secrets.token_hex(3)
                cluster.kubectl("create", "-f", "-", input=json.dumps(_nad(nad)))
                cluster.kubectl("create", "-f", "-", input=json.dumps(_claim(name, nad)))
                claim = cluster.kubectl_json("get", "resourceclaim", name, "-n", NAMESPACE)
                metadata, status = allocation_patch(
                    claim, node=node, pci=vf.pci_address, pf=vf.pf_name,
                    vf_index=vf.vf_index, nad=f"{NAMESPACE}/{nad}",
                )  # fmt: skip
                cluster.kubectl(
                    "patch", "resourceclaim", name, "-n", NAMESPACE, "--type=merge",
                    "-p", json.dumps(metadata),
                )  # fmt: skip
                cluster.kubectl(
                    "patch", "resourceclaim", name, "-n", NAMESPACE, "--type=merge",
                    "--subresource=status", "-p", json.dumps(status),
                )  # fmt: skip
                wait_for(
                    lambda: _vf_configured(cluster, name, device_name(vf.pci_address)),
                    what=f"the agent to program {vf.pci_address} for claim {name}",
                    timeout=60,
                )
                ref = dra_v1_pb2.Claim(namespace=NAMESPACE, name=name, uid=claim["metadata"]["uid"])
                with grpc.insecure_channel(f"unix://{agent.dra_socket}") as channel:
                    stub = dra_v1_pb2_grpc.DRAPluginStub(channel)  # type: ignore[no-untyped-call]

                    def timed(samples: list[float], call: Callable[[], Any]) -> Any:
                        start = time.perf_counter()
                        answer = call()
                        samples.append((time.perf_counter() - start) * 1000)
                        return answer

                    prepares: list[float] = []
                    unprepares: list[float] = []
                    baseline: list[float] = []

                    def cycle() -> None:
                        answer = timed(prepares, lambda: stub.NodePrepareResources(
                            dra_v1_pb2.NodePrepareResourcesRequest(claims=[ref]), timeout=45
                        ))  # fmt: skip
                        entry = answer.claims[ref.uid]
                        if entry.error or not entry.devices:
                            raise RuntimeError(f"prepare failed: {entry.error or 'no devices'}")
                        answer = timed(unprepares, lambda: stub.NodeUnprepareResources(
                            dra_v1_pb2.NodeUnprepareResourcesRequest(claims=[ref]), timeout=45
                        ))  # fmt: skip
                        if answer.claims[ref.uid].error:
                            raise RuntimeError(f"unprepare failed: {answer.claims[ref.uid].error}")

                    def empty() -> None:
                        timed(baseline, lambda: stub.NodePrepareResources(
                            dra_v1_pb2.NodePrepareResourcesRequest(), timeout=45
                        ))  # fmt: skip

                    for i in range(rounds + 1):
                        for step in (cycle, empty) if i % 2 else (empty, cycle):
                            step()
                        if i == 0:  # warm-up
                            for samples in (prepares, unprepares, baseline):
                                samples.clear()
                cluster.kubectl("delete", "resourceclaim", name, "-n", NAMESPACE, "--wait=false")
        finally:
            nic.destroy()
    return [
        ("NodePrepareResources (1 claim, 1 VF)", prepares),
        ("NodeUnprepareResources (1 claim)", unprepares),
        ("NodePrepareResources, no claims", baseline),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--kubeconfig", type=Path, help="an existing dev cluster to use")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (the simulated NIC's netns)", file=sys.stderr)
        return 2
    if args.kubeconfig:
        cluster, owned = DevCluster.attach(args.kubeconfig), False
    else:
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        state = Path(tempfile.mkdtemp(prefix="bench-prepare-", dir=STATE_ROOT))
        cluster, owned = DevCluster(state), True
    try:
        if owned:
            cluster.up(nodes=1, log=lambda msg: print(msg, file=sys.stderr))
        # The harness prints the agent's log tail when it stops: keep it off the table.
        with contextlib.redirect_stdout(sys.stderr):
            rows = _measure(cluster, args.rounds)
    finally:
        if owned:
            cluster.down(log=lambda _msg: None)
            shutil.rmtree(cluster.state_dir, ignore_errors=True)
    baseline = percentile(rows[-1][1], 0.5)
    print_ratio_table(
        f"{args.rounds} rounds over one gRPC channel, milliseconds; ratio = p50 / baseline p50",
        "call",
        rows,
        baseline,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
