"""The seed's Usage section as steps, each printed (command and output) and checked.

``make demo`` runs them in order and prints; ``tests/e2e/test_seed_scenario.py``
runs the same steps and asserts on what each returns.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

import yaml
from sriov_dra.constants import ALLOCATION_ANNOTATION

from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.demo_scenario import (
    CLAIM,
    EXAMPLE,
    NAMESPACE,
    PEER_RANGE,
    POD1,
    SUBNET,
    WAIT,
    ClaimView,
    CleanupResult,
    DemoFailed,
    NetIf,
    PingResult,
    PodView,
    ReuseResult,
    T,
    peer_manifests,
    ping_counts,
    resolved_address,
    unreserved,
)
from sriov_dra_devcluster.deployment import SYSTEM_NAMESPACE, DriverDeployment
from sriov_dra_devcluster.paths import CRDS, REPO, SIMULATED_KUSTOMIZATION


class Walkthrough:
    """The seed's Usage section as steps; ``echo`` receives everything it prints."""

    def __init__(
        self, cluster: DevCluster, driver: DriverDeployment, *, echo: Callable[[str], None] = print
    ):
        self.cluster = cluster
        self.driver = driver
        self.echo = echo
        self.claim_view: ClaimView | None = None

    # --- printing and running --------------------------------------------------------

    def caption(self, text: str) -> None:
        self.echo("")
        self.echo("=" * 78)
        self.echo(text)
        self.echo("=" * 78)

    def note(self, text: str) -> None:
        for line in text.splitlines():
            self.echo(f"# {line}")

    def _show(self, shown: str, output: str) -> None:
        self.echo(f"$ {shown}")
        for line in output.rstrip("\n").splitlines():
            self.echo(f"  {line}")

    def kubectl(
        self, *args: str, input: str | None = None, shown: str = "", check: bool = True
    ) -> str:
        """Run kubectl (as the cluster admin), print command and output; DemoFailed if it fails."""
        result = self.cluster.kubectl(*args, input=input, check=False, timeout=180)
        output = result.stdout + (result.stderr if result.returncode else "")
        self._show(shown or "kubectl " + shlex.join(args), output)
        if check and result.returncode != 0:
            raise DemoFailed(f"kubectl {shlex.join(args)} exited {result.returncode}")
        return output

    def exec_in(self, pod: str, *argv: str, check: bool = True) -> str:
        """``kubectl exec -n <ns> <pod> -- argv``, printed with its output."""
        return self.kubectl("exec", "-n", NAMESPACE, pod, "--", *argv, check=check)

    def host(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a host command (``ip netns exec ...``), print it and its output."""
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        self._show(shlex.join(argv), result.stdout + result.stderr)
        if check and result.returncode != 0:
            raise DemoFailed(f"{shlex.join(argv)} exited {result.returncode}")
        return result

    def _json(self, *args: str) -> Any:
        return json.loads(self.cluster.kubectl(*args, "-o", "json").stdout)

    def _get(self, kind: str, name: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        result = self.cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if result.returncode != 0:
            return None
        obj: dict[str, Any] = json.loads(result.stdout)
        return obj

    def wait(self, probe: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
        """Poll until ``probe`` returns something truthy; DemoFailed naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise DemoFailed(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(0.3)

    # --- facts ------------------------------------------------------------------------

    def _pod_running(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        pod = self._get("pod", name, namespace)
        if not pod or pod.get("status", {}).get("phase") != "Running":
            return None
        return pod

    def _claim_network_ready(self, name: str) -> dict[str, Any] | None:
        claim = self._get("resourceclaim", name)
        if not claim:
            return None
        devices = claim.get("status", {}).get("devices") or []
        ready = [d for d in devices if (d.get("networkData") or {}).get("ips")]
        return claim if ready else None

    def pod_interfaces(self, pod: str, namespace: str = NAMESPACE) -> dict[str, NetIf]:
        """The pod's interfaces (``kubectl exec ... ip -j addr``), silently."""
        out = self.cluster.kubectl(
            "exec", "-n", namespace, pod, "--", "ip", "-j", "-d", "addr", "show", check=False
        )
        if out.returncode != 0:
            raise DemoFailed(f"cannot read pod {pod}'s interfaces: {out.stderr.strip()}")
        result = {}
        for link in json.loads(out.stdout):
            addresses = tuple(
                f"{a['local']}/{a['prefixlen']}"
                for a in link.get("addr_info", [])
                if a.get("family") == "inet"
            )
            result[link["ifname"]] = NetIf(
                link["ifname"], link.get("address", ""), addresses, link.get("ifalias", "")
            )
        return result

    def _events_of(self, kind: str, name: str) -> list[str]:
        items = self._json(
            "get", "events", "-n", NAMESPACE,
            "--field-selector", f"involvedObject.kind={kind},involvedObject.name={name}",
        )["items"]  # fmt: skip
        return [f"{e['type']} {e['reason']}: {e['message']}" for e in items]

    # --- the steps ----------------------------------------------------------------------

    def step0_install(self) -> None:
        """0. Install the driver as users do: CRDs, then the manifests (Deployment, DaemonSet)."""
        self.caption("0. Install sriov-dra (CRDs, then manifests/ with the simulated NIC backend)")
        self.kubectl("get", "nodes", "-o", "wide")
        self.note(
            "Two real nodes: kubelet + containerd + runc + kube-proxy each, in namespaces of\n"
            "their own on this machine, each with a simulated SR-IOV NIC (PFs eth0 and eth1,\n"
            "2 VFs each; node-1's hostname is dra-ctlplane-0.dra.lab, for the upstream demos).\n"
            "manifests/simulated is manifests/ with the agent on that NIC instead of sysfs."
        )
        self.kubectl("apply", "-f", str(CRDS), shown="kubectl apply -f crds/")
        self.kubectl(
            "apply",
            "-k",
            str(SIMULATED_KUSTOMIZATION),
            shown="kubectl apply -k manifests/simulated",
        )
        self.kubectl("rollout", "status", "daemonset/sriov-dra-agent", "-n", SYSTEM_NAMESPACE,
                     "--timeout=240s")  # fmt: skip
        self.kubectl("rollout", "status", "deployment/sriov-dra-operator", "-n",
                     SYSTEM_NAMESPACE, "--timeout=240s")  # fmt: skip
        self.driver.wait_for_slices(WAIT)
        self.kubectl("get", "pods", "-n", SYSTEM_NAMESPACE, "-o", "wide")
        self.kubectl(
            "get", "pods", "-n", SYSTEM_NAMESPACE, "-o",
            "custom-columns=POD:.metadata.name,IMAGE:.spec.containers[0].image,"
            "CONTAINER:.status.containerStatuses[0].containerID",
        )  # fmt: skip
        self.kubectl("get", "resourceslices")

    def step1_apply(self) -> None:
        """1. Deploy the configuration, the ResourceClaim first."""
        self.caption("1. Deploy the configuration (ResourceClaim created first)")
        if self.cluster.kubectl("get", "namespace", NAMESPACE, check=False).returncode == 0:
            self.note("Left over from an earlier run; starting from scratch:")
            self.kubectl("delete", "namespace", NAMESPACE, "--timeout=180s")
        docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
        without_pod = [d for d in docs if d["kind"] != "Pod"]
        self.note(
            f"{EXAMPLE.relative_to(REPO)} holds a Namespace, a NetworkAttachmentDefinition,\n"
            "the ResourceClaim and pod0. The claim goes first, as the seed says: the\n"
            "sriov-dra operator allocates it before any pod asks for it. (Applied in one go,\n"
            "kube-scheduler may win the race and allocate it for the pending pod, with a\n"
            "finalizer that would deallocate it when the pod goes; the operator then adopts\n"
            "the claim and drops that finalizer, so the claim still keeps its VF.)"
        )
        self.kubectl(
            "apply", "-f", "-",
            input=yaml.safe_dump_all(without_pod, sort_keys=False),
            shown=f"kubectl apply -f {EXAMPLE.name}   # its Namespace, NAD and ResourceClaim",
        )  # fmt: skip
        self.note("The operator allocates the claim from the agents' ResourceSlices:")
        self.wait(
            lambda: (self._get("resourceclaim", CLAIM) or {}).get("status", {}).get("allocation"),
            "the operator to allocate static-vf-claim",
        )
        self.kubectl("get", "resourceclaims", "-n", NAMESPACE)
        self.note(
            'Now the whole file, pod0 included. (kubectl says the claim is "configured";\n'
            "its spec is unchanged, see docs/platform-facts.md (a).)"
        )
        self.kubectl(
            "apply", "-f", str(EXAMPLE), shown=f"kubectl apply -f {EXAMPLE.relative_to(REPO)}"
        )
        self.wait(lambda: self._pod_running("pod0"), "pod0 to run (claim prepared, VF attached)")
        self.wait(lambda: self._claim_network_ready(CLAIM), "net1's IP in the claim's status")

    def step2_claim(self) -> ClaimView:
        """2. The claim: allocated VF, node, reservedFor, device status, Events."""
        self.caption("2. Verify resource claim allocation")
        self.kubectl("get", "resourceclaims", "-n", NAMESPACE)
        describe = self.kubectl("describe", "resourceclaim", CLAIM, "-n", NAMESPACE)
        claim = self._get("resourceclaim", CLAIM)
        if claim is None:
            raise DemoFailed(f"resourceclaim {CLAIM} is gone")
        status = claim["status"]
        result = status["allocation"]["devices"]["results"][0]
        device_status = next(
            d for d in status.get("devices") or [] if d["device"] == result["device"]
        )
        network = device_status.get("networkData") or {}
        view = ClaimView(
            node=result["pool"],
            device=result["device"],
            pci_address=(device_status.get("data") or {}).get("pciAddress", ""),
            reserved_for=[r["name"] for r in status.get("reservedFor") or []],
            net1_ips=list(network.get("ips") or []),
            net1_mac=network.get("hardwareAddress", ""),
            allocated_by_operator=ALLOCATION_ANNOTATION in claim["metadata"].get("annotations", {}),
            describe=describe,
            events=self._events_of("ResourceClaim", CLAIM),
        )
        self.note(
            f"VF {view.pci_address} (device {view.device}) on node {view.node}, reserved for "
            f"{', '.join(view.reserved_for)}; net1 {', '.join(view.net1_ips)} {view.net1_mac}"
        )
        if not view.allocated_by_operator:
            raise DemoFailed("the claim was not allocated by the sriov-dra operator")
        if view.reserved_for != ["pod0"] or not view.net1_ips:
            raise DemoFailed(f"expected pod0 in reservedFor and net1's IP, got {view}")
        self.claim_view = view
        return view

    def step3_pod(self) -> PodView:
        """3. The pod: Running and Ready on the claim's node."""
        self.caption("3. Verify pod deployment")
        self.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide")
        describe = self.kubectl("describe", "pod", "pod0", "-n", NAMESPACE)
        pod = self._get("pod", "pod0")
        if pod is None:
            raise DemoFailed("pod0 is gone")
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        statuses = pod["status"].get("containerStatuses") or [{}]
        view = PodView(
            name="pod0",
            node=pod["spec"].get("nodeName", ""),
            phase=pod["status"].get("phase", ""),
            ready=conditions.get("Ready") == "True",
            pod_ip=pod["status"].get("podIP", ""),
            describe=describe,
            container_id=statuses[0].get("containerID", ""),
        )
        self.note(
            f"pod0 runs on {view.node} as {view.container_id[:25]}...: the kubelet prepared the\n"
            "claim through the agent's DRA plugin (gRPC), containerd read the agent's CDI spec\n"
            "and runc ran its createRuntime hook, which moved the VF into the pod as net1."
        )
        expected_node = self.claim_view.node if self.claim_view else view.node
        if view.phase != "Running" or not view.ready or view.node != expected_node:
            raise DemoFailed(f"pod0 is not Running and Ready on {expected_node}: {view}")
        return view

    def step4_interfaces(self) -> dict[str, NetIf]:
        """4. pod0's interfaces: net1 with an address of 10.0.3.0/24."""
        self.caption("4. Check network configuration")
        for argv in (
            ["ip", "link", "show"],
            ["ip", "addr", "show"],
            ["ip", "addr", "show", "net1"],
        ):
            self.exec_in("pod0", *argv)
        interfaces = self.pod_interfaces("pod0")
        net1 = interfaces.get("net1")
        if net1 is None or not any(
            ipaddress.IPv4Interface(a).network == SUBNET for a in net1.addresses
        ):
            raise DemoFailed(f"net1 has no address in {SUBNET}: {net1}")
        return interfaces

    def step5_ping(self) -> PingResult:
        """5. Ping from pod0's net1 to a second pod's net1 on the other node."""
        self.caption("5. Test network connectivity")
        self.note("eth0: the cluster network (CNI bridge + host-local); names resolve via CoreDNS.")
        out = self.exec_in(
            "pod0", "ping", "-c", "2", "-W", "2", "kubernetes.default.svc.cluster.local",
            check=False,
        )  # fmt: skip
        resolved = resolved_address(out)
        if resolved is None:
            raise DemoFailed("kubernetes.default.svc.cluster.local did not resolve in pod0")
        self.note(
            f"The name resolved through CoreDNS to the kubernetes Service's ClusterIP {resolved}.\n"
            "A ClusterIP answers ICMP only when kube-proxy runs in IPVS mode, and this kernel has\n"
            "no IPVS; kube-proxy runs in iptables mode, which forwards TCP and UDP only. So the\n"
            "ping gets no reply, as on any such cluster. eth0 does reach the API server behind\n"
            "that Service, over TCP:"
        )
        self.exec_in(
            "pod0", "bash", "-c",
            "exec 3<>/dev/tcp/kubernetes.default.svc.cluster.local/443 && "
            "echo connected to kubernetes.default.svc.cluster.local:443 over eth0",
        )  # fmt: skip
        self.note(
            "net1: a second pod on the other node, its VF from a ResourceClaimTemplate (the\n"
            "scheduler allocates those), on the same VLAN 0. host-local keeps leases per node,\n"
            f"so its NAD hands out {PEER_RANGE[0]}-{PEER_RANGE[1]} of the same subnet."
        )
        pod0_node = self.claim_view.node if self.claim_view else self.driver.nodes[0]
        peer_node = next(n for n in self.driver.nodes if n != pod0_node)
        self.kubectl(
            "apply", "-f", "-", input=peer_manifests(peer_node),
            shown="kubectl apply -f peer.yaml   # NAD vf-peer, ResourceClaimTemplate peer-vf, "
            f"pod peer (node affinity {peer_node})",
        )  # fmt: skip
        self.wait(lambda: self._pod_running("peer"), "the peer pod to run")
        self.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide")
        peer_net1 = self.wait(
            lambda: self.pod_interfaces("peer").get("net1"), "net1 in the peer pod"
        )
        self.exec_in("peer", "ip", "addr", "show", "net1")
        peer_ip = peer_net1.addresses[0].split("/")[0]
        output = self.exec_in(
            "pod0", "ping", "-c", "3", "-W", "2", "-I", "net1", peer_ip, check=False
        )
        transmitted, received = ping_counts(output)
        ping = PingResult(peer_node, peer_ip, transmitted, received, output, resolved)
        if received == 0:
            raise DemoFailed(f"no reply from {peer_ip} ({transmitted} sent)")
        return ping

    def step6_reuse(self) -> ReuseResult:
        """Reusing Claims: delete pod0, the claim keeps its VF, pod1 gets the same VF."""
        self.caption("Reusing Claims: delete the pod, keep the ResourceClaim")
        before = self._get("resourceclaim", CLAIM)
        if before is None:
            raise DemoFailed(f"resourceclaim {CLAIM} is gone")
        result_before = before["status"]["allocation"]["devices"]["results"][0]
        self.kubectl("delete", "pod", "pod0", "-n", NAMESPACE, "--timeout=90s")
        self.note("The ResourceClaim remains allocated (no longer reserved):")
        after_delete = self.wait(
            lambda: unreserved(self._get("resourceclaim", CLAIM)), "reservedFor to empty"
        )
        self.kubectl("get", "resourceclaims", "-n", NAMESPACE)
        self.note("A new pod that uses the same claim (the seed's pod1, verbatim):")
        self.kubectl(
            "apply", "-f", "-", input=POD1, shown="kubectl apply -f - <<EOF\n" + POD1 + "EOF"
        )
        pod1 = self.wait(lambda: self._pod_running("pod1"), "pod1 to run")
        self.wait(lambda: self._claim_network_ready(CLAIM), "net1's IP in the claim's status")
        self.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide")
        self.kubectl(
            "get", "resourceclaim", CLAIM, "-n", NAMESPACE, "-o",
            "custom-columns=NAME:.metadata.name,NODE:.status.allocation.devices.results[0].pool,"
            "DEVICE:.status.allocation.devices.results[0].device,"
            "RESERVED-FOR:.status.reservedFor[*].name,NET1:.status.devices[0].networkData.ips",
        )  # fmt: skip
        self.exec_in("pod1", "ip", "addr", "show", "net1")
        after = self._get("resourceclaim", CLAIM)
        if after is None:
            raise DemoFailed(f"resourceclaim {CLAIM} is gone")
        result_after = after["status"]["allocation"]["devices"]["results"][0]
        net1 = self.pod_interfaces("pod1").get("net1")
        reuse = ReuseResult(
            device_before=result_before["device"],
            device_after=result_after["device"],
            node_before=result_before["pool"],
            node_after=result_after["pool"],
            reserved_after_delete=[
                r["name"] for r in after_delete["status"].get("reservedFor", [])
            ],
            pod1_node=pod1["spec"]["nodeName"],
            pod1_net1=net1 or NetIf("", "", ()),
        )
        if (reuse.device_before, reuse.node_before) != (reuse.device_after, reuse.node_after):
            raise DemoFailed(f"pod1 got another VF: {reuse}")
        if net1 is None or not net1.addresses:
            raise DemoFailed("pod1 has no net1 with an address")
        self.note(f"Same VF {reuse.device_after} on {reuse.node_after}, now net1 of pod1.")
        return reuse

    def step7_cleanup(self) -> CleanupResult:
        """Clean-up: delete the claim; the VF is reset and free, the IP released."""
        self.caption("Clean-up: delete the pod and the ResourceClaim")
        claim = self._get("resourceclaim", CLAIM)
        if claim is None:
            raise DemoFailed(f"resourceclaim {CLAIM} is gone")
        record = json.loads(claim["metadata"]["annotations"][ALLOCATION_ANNOTATION])[0]
        node, pf, vf_index = record["node"], record["pf"], record["vfIndex"]
        ips = [ip.split("/")[0] for d in claim["status"].get("devices") or []
               for ip in (d.get("networkData") or {}).get("ips") or []]  # fmt: skip
        self.kubectl("delete", "pod", "pod1", "-n", NAMESPACE, "--timeout=90s")
        self.kubectl("delete", "resourceclaim", CLAIM, "-n", NAMESPACE, "--timeout=90s")
        self.kubectl("get", "resourceclaims", "-n", NAMESPACE)
        vf_netdev = f"{pf}v{vf_index}"
        host_ns = self.driver.nic(node).host_ns
        self.note(f"The VF is back on {node}'s host side under its own name ({vf_netdev}), reset:")
        shown = self.host(
            ["ip", "netns", "exec", host_ns, "ip", "-d", "link", "show", vf_netdev], check=False
        )
        # host-local keeps a network's leases in networks/<CNI config name>; the seed's NAD
        # names its config after the namespace.
        leases_dir = self.driver.cni_data_dir(node) / "networks" / NAMESPACE
        if not leases_dir.is_dir():
            # IPAM ran for pod0 and pod1: a missing directory means we look in the wrong place.
            raise DemoFailed(f"host-local's lease directory {leases_dir} does not exist")
        self.note(
            f"host-local's leases for the NAD on {node} ({leases_dir}): {', '.join(ips)} released"
        )
        self.host(["ls", "-A", str(leases_dir)], check=False)
        leases_left = sorted(p.name for p in leases_dir.glob("*") if p.name in ips)
        result = CleanupResult(
            claim_gone=self._get("resourceclaim", CLAIM) is None,
            vf_netdev=vf_netdev,
            vf_in_host=shown.returncode == 0,
            leases_left=leases_left,
        )
        self.note("The rest of the example (and the peer pod):")
        self.kubectl("delete", "namespace", NAMESPACE, "--timeout=120s")
        if not result.claim_gone or not result.vf_in_host or result.leases_left:
            raise DemoFailed(f"clean-up incomplete: {result}")
        return result

    def step8_logs(self) -> list[dict[str, Any]]:
        """The operator's logs: JSON lines naming claim, node, PF and VF."""
        self.caption("Logs: the leading operator replica's JSON lines")
        leader = self.operator_leader()
        out = self.cluster.kubectl(
            "logs", "-n", SYSTEM_NAMESPACE, f"pod/{leader}", "--tail=400"
        ).stdout
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        about_claim = [line for line in lines if line.get("claim") == f"{NAMESPACE}/{CLAIM}"]
        self._show(
            f"kubectl logs -n sriov-dra {leader} | grep {NAMESPACE}/{CLAIM}",
            "\n".join(json.dumps(line) for line in about_claim[-4:]),
        )
        if not about_claim:
            raise DemoFailed("the operator logged no JSON line about static-vf-claim")
        return about_claim

    def operator_leader(self) -> str:
        """The operator pod holding the leader-election Lease (its identity is pod_uuid)."""
        holder = ""
        deadline = time.monotonic() + 60
        # A replica takes the Lease within a retry period of starting; wait that long.
        while not holder and time.monotonic() < deadline:
            found = self.cluster.kubectl(
                "get", "lease", "-n", SYSTEM_NAMESPACE, "sriov-dra-operator",
                "-o", "jsonpath={.spec.holderIdentity}", check=False,
            )  # fmt: skip
            holder = found.stdout.strip() if found.returncode == 0 else ""
            if not holder:
                time.sleep(1)
        self._show(
            "kubectl get lease -n sriov-dra sriov-dra-operator -o jsonpath={.spec.holderIdentity}",
            holder,
        )
        if not holder:
            raise DemoFailed("no operator replica holds the Lease sriov-dra/sriov-dra-operator")
        return holder.rpartition("_")[0]

    def steps(self) -> list[Callable[[], object]]:
        """The walkthrough, in order."""
        return [
            self.step0_install,
            self.step1_apply,
            self.step2_claim,
            self.step3_pod,
            self.step4_interfaces,
            self.step5_ping,
            self.step6_reuse,
            self.step7_cleanup,
            self.step8_logs,
        ]
