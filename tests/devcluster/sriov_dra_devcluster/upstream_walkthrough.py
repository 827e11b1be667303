"""The Go driver's demos, unchanged, on the dev cluster: apply, check, delete, one at a time.

``make demo`` runs them after the seed scenario; ``tests/e2e/test_upstream_demos.py``
runs the same steps and asserts on each outcome. The cluster is shaped so that the
manifests need no edit (``upstream_demos`` says how): the agent's
``POLICY_NAMESPACES`` names the namespaces their policies live in (created here, as
an installer would), node-1's hostname and the simulated PFs' names are the ones
``demo/resource-policies`` selects, and the stand-in ``gpu.example.com`` driver
(``example_gpu_driver``) serves ``demo/resource-alignment``'s GPU.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from sriov_dra.constants import ATTR_PCIE_ROOT, ATTR_PF_NAME

from sriov_dra_devcluster import example_gpu_driver
from sriov_dra_devcluster.demo_scenario import DemoFailed
from sriov_dra_devcluster.deployment import AGENT, SYSTEM_NAMESPACE
from sriov_dra_devcluster.node_plan import UPSTREAM_DEMO_HOSTNAME
from sriov_dra_devcluster.paths import REPO
from sriov_dra_devcluster.upstream_demos import (
    DEMOS,
    GPU_DRIVER,
    POLICY_NAMESPACES,
    RESOURCE_NAME_ATTRIBUTE,
    WAIT,
    AllocatedDevice,
    DemoOutcome,
    PodCheck,
    UpstreamDemo,
    allocated_devices,
    gpu_environment,
    leftover_leases,
    pod_problems,
    publication_problems,
    published_attributes,
    published_vfs,
    summary_table,
)
from sriov_dra_devcluster.walkthrough import Walkthrough

GPU_MODULE: Path = Path(example_gpu_driver.__file__).resolve()


class UpstreamWalkthrough:
    """The upstream demos on ``walk``'s cluster, printed through ``walk``."""

    def __init__(self, walk: Walkthrough) -> None:
        self.walk = walk
        self.cluster = walk.cluster
        self.outcomes: list[DemoOutcome] = []

    # --- the cluster the demos expect -----------------------------------------------------

    def setup(self) -> None:
        """Policy namespaces for the agents, the demos' nodes and PFs, the example GPU driver."""
        walk = self.walk
        walk.caption("Upstream demos: the Go driver's demo/ manifests, applied unchanged")
        walk.note(
            "tests/data/upstream-demos holds them byte for byte (provenance: its README).\n"
            "Their policies live in dra-sriov-driver or dra-driver-sriov, the Go driver's\n"
            "release namespaces: the agents read those too (POLICY_NAMESPACES, a documented\n"
            "setting), and the namespaces exist, as that driver's installer makes them."
        )
        namespaces = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            for ns in POLICY_NAMESPACES[1:]
        ]
        walk.kubectl(
            "apply", "-f", "-", input=yaml.safe_dump_all(namespaces),
            shown=f"kubectl create namespace {' '.join(POLICY_NAMESPACES[1:])}",
        )  # fmt: skip
        walk.kubectl("set", "env", AGENT, "-n", SYSTEM_NAMESPACE,
                     f"POLICY_NAMESPACES={','.join(POLICY_NAMESPACES)}")  # fmt: skip
        walk.kubectl("rollout", "status", AGENT, "-n", SYSTEM_NAMESPACE, "--timeout=240s")
        walk.driver.wait_for_slices(WAIT)
        walk.note(
            f"demo/resource-policies selects node {UPSTREAM_DEMO_HOSTNAME} and PFs eth0/eth1\n"
            "of vendor 8086: node-1's kubelet has that hostname, and each node's simulated\n"
            "NIC has PFs eth0 and eth1 (Intel's vendor ID 8086), 2 VFs each."
        )
        walk.kubectl("get", "nodes", "-L", "kubernetes.io/hostname")
        node = walk.driver.nodes[0]
        walk.host(["ip", "-n", walk.driver.nic(node).host_ns, "-br", "link", "show", "eth1"])
        self._install_gpu_driver()

    def _install_gpu_driver(self) -> None:
        walk = self.walk
        walk.note(
            "demo/resource-alignment pairs the VF with a GPU of gpu.example.com on the same\n"
            "resource.kubernetes.io/pcieRoot; upstream installs kubernetes-sigs/dra-example-\n"
            "driver for it. Here a test-world stand-in plays it (example_gpu_driver.py: a real\n"
            "kubelet DRA plugin, one GPU per PCIe root of the node, GPU_DEVICE_<n> via CDI),\n"
            "as a DaemonSet of the driver's image with that file mounted from the checkout."
        )
        image = self.cluster.kubectl(
            "get", AGENT, "-n", SYSTEM_NAMESPACE,
            "-o", "jsonpath={.spec.template.spec.containers[0].image}",
        ).stdout.strip()  # fmt: skip
        objects = example_gpu_driver.manifests(image, GPU_MODULE)
        walk.kubectl(
            "apply", "-f", "-", input=yaml.safe_dump_all(objects, sort_keys=False),
            shown="kubectl apply -f example-gpu-driver.yaml   # Namespace, RBAC, DeviceClass "
            f"{GPU_DRIVER}, DaemonSet",
        )  # fmt: skip
        walk.kubectl("rollout", "status", "daemonset/example-gpu-driver", "-n",
                     example_gpu_driver.NAMESPACE, "--timeout=180s")  # fmt: skip
        walk.wait(self._gpus_published, f"every node's {GPU_DRIVER} ResourceSlice", WAIT)
        walk.kubectl(
            "get", "resourceslices", "-o",
            "custom-columns=NAME:.metadata.name,DRIVER:.spec.driver,NODE:.spec.nodeName,"
            "DEVICES:.spec.devices[*].name",
        )  # fmt: skip

    def _gpus_published(self) -> bool:
        slices = self.cluster.kubectl_json("get", "resourceslices")["items"]
        nodes = {
            s["spec"]["nodeName"]
            for s in slices
            if s["spec"]["driver"] == GPU_DRIVER and s["spec"].get("devices")
        }
        return set(self.walk.driver.nodes) <= nodes

    # --- one demo -----------------------------------------------------------------------

    def run(self, demo: UpstreamDemo) -> DemoOutcome:
        """Apply ``demo`` unchanged, check its promises, delete it; the outcome says how it went."""
        walk = self.walk
        facts = demo.facts()
        shown = str(demo.path.relative_to(REPO))
        outcome = DemoOutcome(demo)
        self.outcomes.append(outcome)
        walk.caption(f"Upstream demo {demo.name}: {demo.promise}")
        started = time.monotonic()
        walk.kubectl("apply", "-f", str(demo.path), shown=f"kubectl apply -f {shown}")
        try:
            pods = walk.wait(
                lambda: self._ready_pods(facts.namespace, facts.pods),
                f"{facts.pods} pod(s) of {demo.name} to run",
                WAIT,
            )
            outcome.ready_seconds = time.monotonic() - started
            outcome.pods = len(pods)
            walk.note(
                f"{len(pods)} pod(s) Running and Ready {outcome.ready_seconds:.1f}s after apply"
            )
            checks = self._check_pods(demo, facts.namespace, pods)
        except DemoFailed as exc:
            outcome.failure = str(exc)
            checks = []
            self._diagnose(facts.namespace)
        problems = [p for check in checks for p in pod_problems(demo, facts, check)]
        outcome.checked = [self._describe(demo, check) for check in checks]
        for line in outcome.checked:
            walk.note(line)
        if problems and not outcome.failure:
            outcome.failure = "; ".join(problems)
        devices = [d for check in checks for d in check.devices]
        self._delete(demo, shown, facts.network_names, devices, outcome)
        return outcome

    def _diagnose(self, namespace: str) -> None:
        """What a demo whose pods did not run left to read: pods, claims, Events, GPU plugin."""
        walk = self.walk
        walk.kubectl("get", "pods,resourceclaims", "-n", namespace, "-o", "wide", check=False)
        walk.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False)
        walk.kubectl("get", "resourceclaims", "-n", namespace, "-o", "yaml", check=False)
        walk.kubectl(
            "logs", "-n", example_gpu_driver.NAMESPACE, "-l", "app=example-gpu-driver",
            "--prefix", "--tail=20", check=False,
        )  # fmt: skip

    def _ready_pods(self, namespace: str, count: int) -> list[dict[str, Any]] | None:
        pods = self.cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
        ready = [
            p
            for p in pods
            if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        return ready if len(ready) == count else None

    def _check_pods(
        self, demo: UpstreamDemo, namespace: str, pods: list[dict[str, Any]]
    ) -> list[PodCheck]:
        walk = self.walk
        walk.kubectl("get", "pods", "-n", namespace, "-o", "wide")
        walk.kubectl("get", "resourceclaims", "-n", namespace)
        attributes = published_attributes(
            self.cluster.kubectl_json("get", "resourceslices")["items"]
        )
        checks = []
        for pod in pods:
            name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
            devices = [
                device
                for claim in self._claims_of(pod, namespace)
                for device in allocated_devices(claim, attributes)
            ]
            walk.kubectl("exec", "-n", namespace, name, "--", "ip", "-br", "addr", "show")
            interfaces = {
                n: i.addresses
                for n, i in walk.pod_interfaces(name, namespace).items()
                if n not in ("lo", "eth0")
            }
            check = PodCheck(name, node, devices, interfaces)
            if demo.gpu:
                printenv = walk.kubectl(
                    "exec", "-n", namespace, name, "--", "bash", "-c", "env | grep ^GPU_DEVICE_",
                    check=False,
                )  # fmt: skip
                check.gpu_env = gpu_environment(printenv)
            checks.append(check)
        if demo.policy_hostname:
            self._check_publication(demo)
        return checks

    def _check_publication(self, demo: UpstreamDemo) -> None:
        """The policy's effect on every node's slices: DemoFailed if it is not there in time."""
        walk = self.walk
        walk.kubectl("get", "nodes", "-L", "kubernetes.io/hostname")
        hostnames = {
            n["metadata"]["name"]: n["metadata"]["labels"].get("kubernetes.io/hostname", "")
            for n in self.cluster.kubectl_json("get", "nodes")["items"]
        }
        problems: list[str] = []

        def settled() -> list[AllocatedDevice] | None:
            slices = self.cluster.kubectl_json("get", "resourceslices")["items"]
            published = published_vfs(published_attributes(slices))
            problems[:] = publication_problems(demo, published, hostnames)
            return None if problems else published

        try:
            published = walk.wait(settled, "the policy's ResourceSlices", WAIT)
        except DemoFailed as exc:
            raise DemoFailed(f"{exc}: {'; '.join(problems)}") from exc
        lines = [f"{vf.node} {vf.device} PF {vf.attribute(ATTR_PF_NAME)} resourceName "
                 f"{vf.attribute(RESOURCE_NAME_ATTRIBUTE)}" for vf in published]  # fmt: skip
        walk.note("Published while the policy holds (the other node publishes none):\n"
                  + "\n".join(lines))  # fmt: skip

    def _claims_of(self, pod: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
        names = [
            s.get("resourceClaimName")
            for s in pod["status"].get("resourceClaimStatuses") or []
            if s.get("resourceClaimName")
        ] + [
            c["resourceClaimName"]
            for c in pod["spec"].get("resourceClaims") or []
            if c.get("resourceClaimName")
        ]
        return [
            self.cluster.kubectl_json("get", "resourceclaim", "-n", namespace, name)
            for name in names
        ]

    @staticmethod
    def _describe(demo: UpstreamDemo, check: PodCheck) -> str:
        parts = [f"{check.pod} on {check.node}:"]
        for name, addresses in sorted(check.interfaces.items()):
            parts.append(f"{name} {','.join(addresses)}")
        for device in check.devices:
            if device.driver == GPU_DRIVER:
                parts.append(
                    f"GPU {device.device} (pcieRoot "
                    f"{device.attribute(ATTR_PCIE_ROOT)}, env "
                    + ",".join(f"{k}={v}" for k, v in sorted(check.gpu_env.items()))
                    + ")"
                )
                continue
            extra = [f"PF {device.attribute(ATTR_PF_NAME)}"]
            if demo.resource_name:
                extra.append(f"resourceName {device.attribute(RESOURCE_NAME_ATTRIBUTE)}")
            if demo.gpu:
                extra.append(f"pcieRoot {device.attribute(ATTR_PCIE_ROOT)}")
            parts.append(f"VF {device.device} ({', '.join(extra)})")
        return " ".join(parts)

    # --- clean-up ----------------------------------------------------------------------

    def _delete(
        self,
        demo: UpstreamDemo,
        shown: str,
        networks: tuple[str, ...],
        devices: list[AllocatedDevice],
        outcome: DemoOutcome,
    ) -> None:
        walk = self.walk
        started = time.monotonic()
        walk.kubectl(
            "delete", "-f", str(demo.path), "--timeout=180s", shown=f"kubectl delete -f {shown}"
        )
        vfs = [d for d in devices if d.driver != GPU_DRIVER]
        try:
            walk.wait(lambda: self._released(devices, vfs, networks), "VFs and IPs released", WAIT)
        except DemoFailed as exc:
            outcome.failure = outcome.failure or str(exc)
            return
        outcome.released_seconds = time.monotonic() - started
        for vf in vfs:
            walk.host(["ip", "-n", walk.driver.nic(vf.node).host_ns, "-br", "link", "show",
                       vf.vf_netdev])  # fmt: skip
        walk.note(
            f"Released {outcome.released_seconds:.1f}s after delete: no claim holds its devices, "
            "each VF is back on its node, no host-local lease is left."
        )

    def _released(
        self, devices: list[AllocatedDevice], vfs: list[AllocatedDevice], networks: tuple[str, ...]
    ) -> bool:
        claims = self.cluster.kubectl_json("get", "resourceclaims", "-A")["items"]
        held = {
            (r["driver"], r["pool"], r["device"])
            for c in claims
            for r in ((c.get("status") or {}).get("allocation") or {})
            .get("devices", {})
            .get("results", [])
        }
        if any((d.driver, d.node, d.device) in held for d in devices):
            return False
        for vf in vfs:
            netns = self.walk.driver.nic(vf.node).host_ns
            if not self._host_has_link(netns, vf.vf_netdev):
                return False
        for node in self.walk.driver.nodes:
            for network in networks:
                leases = self.walk.driver.cni_data_dir(node) / "networks" / network
                names = [p.name for p in leases.iterdir()] if leases.is_dir() else []
                if leftover_leases(names):
                    return False
        return True

    @staticmethod
    def _host_has_link(netns: str, name: str) -> bool:
        """True when link ``name`` is in the node's host network namespace ``netns``."""
        found = subprocess.run(
            ["ip", "-n", netns, "link", "show", name], capture_output=True, check=False
        )
        return found.returncode == 0

    # --- all of them --------------------------------------------------------------------

    def run_all(self) -> list[DemoOutcome]:
        """Every demo of ``DEMOS`` in turn, then the summary; DemoFailed if any failed."""
        for demo in DEMOS:
            self.run(demo)
        self.summary()
        failed = [o for o in self.outcomes if not o.passed]
        if failed:
            raise DemoFailed(
                "upstream demos failed: " + "; ".join(f"{o.demo.name}: {o.failure}" for o in failed)
            )
        return self.outcomes

    def summary(self) -> None:
        """The summary table of every upstream demo."""
        self.walk.caption("Upstream demos: summary")
        for line in summary_table(self.outcomes):
            self.walk.echo(line)
