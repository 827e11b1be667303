"""The agent process end to end: real apiserver, real gRPC, real hook, real netns, host-local.

Path under test: slices published -> claim allocated (written here as the
operator would) -> VF programmed and reported in status.devices -> prepare over
gRPC -> attach through the CDI hook -> detach by unprepare -> claim deleted ->
VF restored and reported released (condition Released). Then the agent is SIGKILLed at each
step of attach and detach and restarted: no VF, IP or interface may leak.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import (
    DRIVER,
    AgentProcess,
    Pod,
    agent_service_account,
    allocation_patch,
    built_nic,
    node_object,
    running_agent,
    wait_for,
)
from sriov_dra import constants, release_signal
from sriov_dra.naming import device_name
from sriov_dra_agent.kubelet.cdi import VHOST_DEVICE_NODES
from sriov_dra_agent.vf.backends.simulated import SimulatedBackend
from sriov_dra_agent.vf.backends.simulated_nic import SimPf, SimulatedNic
from sriov_dra_devcluster.cluster import DevCluster

pytestmark = [pytest.mark.integration, pytest.mark.netns]

ROOT = Path(__file__).resolve().parents[2]
HOST_LOCAL = Path("/usr/lib/cni/host-local")
VLAN = 100


@pytest.fixture(scope="module")
def nad_crd(cluster: DevCluster) -> None:
    cluster.kubectl("apply", "-f", str(ROOT / "crds" / "network-attachment-definition.yaml"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/network-attachment-definitions.k8s.cni.cncf.io",
    )  # fmt: skip


@pytest.fixture(scope="module")
def agent_kubeconfig(cluster: DevCluster) -> Path:
    """The agent runs as its ServiceAccount with the shipped RBAC, not as admin."""
    return agent_service_account(cluster)


@pytest.fixture
def node(cluster: DevCluster) -> Iterator[str]:
    """A Node object of its own (no kubelet: the test plays it)."""
    if not HOST_LOCAL.exists():
        pytest.fail(f"{HOST_LOCAL} missing: run .ci/setup (containernetworking-plugins)")
    with node_object(cluster, "e-node") as name:
        yield name


@pytest.fixture
def nic(node: str) -> Iterator[SimulatedNic]:
    with built_nic(node, "e", [SimPf("simpf0", total_vfs=8, num_vfs=4)]) as nic:
        yield nic


@pytest.fixture
def agent(
    node: str, nic: SimulatedNic, agent_kubeconfig: Path, nad_crd: None
) -> Iterator[AgentProcess]:
    with running_agent(node, nic.prefix, agent_kubeconfig, prefix="e-") as proc:
        yield proc


@pytest.fixture
def pods() -> Iterator[list[Pod]]:
    made: list[Pod] = []
    yield made
    for pod in made:
        pod.kill()


def _nad(
    namespace: str,
    name: str,
    *,
    subnet: str = "10.56.0.0/24",
    last: int = 20,
    vlan: int = VLAN,
    mac: str = "",
) -> dict[str, Any]:
    base = subnet.rsplit(".", 1)[0]
    config: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "sriov",
        "vlan": vlan,
        "spoofchk": "on",
        "ipam": {
            "type": "host-local",
            "ranges": [
                [{"subnet": subnet, "rangeStart": f"{base}.10", "rangeEnd": f"{base}.{last}"}]
            ],
        },
    }
    if mac:
        config["mac"] = mac
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"config": json.dumps(config)},
    }


def _claim(
    namespace: str,
    name: str,
    nad: str,
    nad_namespace: str = "",
    more: dict[str, Any] | None = None,
) -> dict[str, Any]:
    parameters = {
        "apiVersion": constants.VFCONFIG_API_VERSION,
        "kind": constants.VFCONFIG_KIND,
        "netAttachDefName": nad,
        "ifName": "net1",
        **(more or {}),
    }
    if nad_namespace:
        parameters["netAttachDefNamespace"] = nad_namespace
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "devices": {
                "requests": [{"name": "vf", "exactly": {"deviceClassName": DRIVER}}],
                "config": [
                    {
                        "requests": ["vf"],
                        "opaque": {"driver": DRIVER, "parameters": parameters},
                    }
                ],
            }
        },
    }


class Scenario:
    """One claim for one VF of the agent's node, driven through its life."""

    def __init__(
        self,
        cluster: DevCluster,
        namespace: str,
        agent: AgentProcess,
        nic: SimulatedNic,
        *,
        vf_number: int = 0,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.agent = agent
        self.nic = nic
        self.backend = SimulatedBackend(nic)
        self.vf = self.backend.discover().vfs()[vf_number]
        self.host_name = self.backend.host_netdev(self.vf)
        self.name = "claim-" + secrets.token_hex(3)

    def get(self) -> dict[str, Any] | None:
        result = self.cluster.kubectl(
            "get", "resourceclaim", self.name, "-n", self.namespace, "-o", "json", check=False
        )
        return json.loads(result.stdout) if result.returncode == 0 else None

    def claim(self) -> dict[str, Any]:
        found = self.get()
        assert found is not None, f"claim {self.name} is gone"
        return found

    def entry(self) -> dict[str, Any] | None:
        for item in (self.claim().get("status") or {}).get("devices") or []:
            if item["device"] == device_name(self.vf.pci_address):
                return dict(item)
        return None

    def condition(self, kind: str) -> dict[str, Any] | None:
        entry = self.entry()
        for cond in (entry or {}).get("conditions") or []:
            if cond["type"] == kind:
                return dict(cond)
        return None

    def create(
        self,
        *,
        nad: str = "",
        make_nad: bool = True,
        last: int = 20,
        as_operator: bool = True,
        wait: bool = True,
        nad_namespace: str = "",
        mac: str = "",
        foreign_status: dict[str, Any] | None = None,
        vfconfig: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create (NAD and) claim and allocate the VF, as the operator or as the scheduler.

        ``foreign_status``: a ``status.devices`` entry of another driver, written (with
        an allocation result for its device) together with the allocation.
        """
        nad = nad or "net-" + secrets.token_hex(2)
        if make_nad:
            self.make_nad(nad, last=last, mac=mac)
        self.cluster.kubectl(
            "create", "-f", "-",
            input=json.dumps(_claim(self.namespace, self.name, nad, nad_namespace, vfconfig)),
        )  # fmt: skip
        claim = self.claim()
        metadata, status = allocation_patch(
            claim,
            node=self.agent.node,
            pci=self.vf.pci_address,
            pf=self.vf.pf_name,
            vf_index=self.vf.vf_index,
            nad=f"{nad_namespace or self.namespace}/{nad}",
        )
        if foreign_status is not None:
            status["status"]["allocation"]["devices"]["results"].append(
                {key: foreign_status[key] for key in ("driver", "pool", "device")}
                | {"request": "vf"}
            )
            status["status"]["devices"] = [foreign_status]
        if as_operator:
            self.cluster.kubectl(
                "patch", "resourceclaim", self.name, "-n", self.namespace, "--type=merge",
                "-p", json.dumps(metadata),
            )  # fmt: skip
        self.cluster.kubectl(
            "patch", "resourceclaim", self.name, "-n", self.namespace, "--type=merge",
            "--subresource=status", "-p", json.dumps(status),
        )  # fmt: skip
        if wait:
            wait_for(
                lambda: (self.condition("VfConfigured") or {}).get("status") == "True",
                what="VfConfigured=True in status.devices",
            )
        return self.claim()

    def make_nad(self, name: str, *, last: int = 20, vlan: int = VLAN, mac: str = "") -> None:
        self.cluster.kubectl(
            "apply", "-f", "-",
            input=json.dumps(_nad(self.namespace, name, last=last, vlan=vlan, mac=mac)),
        )  # fmt: skip

    def events(self) -> list[tuple[str, str, str]]:
        items = self.cluster.kubectl_json(
            "get", "events", "-n", self.namespace,
            "--field-selector", f"involvedObject.name={self.name}",
        )["items"]  # fmt: skip
        return [(e["type"], e["reason"], e["message"]) for e in items]

    def delete_and_release(self) -> dict[str, Any]:
        uid = self.claim()["metadata"]["uid"]
        self.cluster.kubectl(
            "delete", "resourceclaim", self.name, "-n", self.namespace, "--wait=false"
        )
        released: dict[str, Any] = wait_for(
            lambda: (
                (body := self.claim())["metadata"]["uid"] == uid
                and release_signal.released_by_agent(body)
                and body
            ),
            what="condition Released on the agent's status.devices entries",
        )
        # The operator's part: drop our finalizer once released.
        self.cluster.kubectl(
            "patch", "resourceclaim", self.name, "-n", self.namespace, "--type=json",
            "-p", json.dumps([{"op": "remove", "path": "/metadata/finalizers"}]),
        )  # fmt: skip
        return released

    def vf_in_host(self) -> str | None:
        return self.backend.host_netdev(self.vf)

    def host_mac(self) -> str:
        """MAC of the VF's netdev in the node's host netns."""
        host_ns = self.backend.host_netns()
        assert host_ns is not None and self.host_name is not None
        out = subprocess.run(
            ["nsenter", f"--net={host_ns}", "ip", "-j", "link", "show", self.host_name],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        (link,) = json.loads(out)
        return str(link["address"])


@pytest.fixture
def scenario(
    cluster: DevCluster, namespace: str, agent: AgentProcess, nic: SimulatedNic, nad_crd: None
) -> Scenario:
    return Scenario(cluster, namespace, agent, nic)


def test_claim_life_from_allocation_to_release(
    scenario: Scenario, agent: AgentProcess, nic: SimulatedNic, pods: list[Pod], cluster: DevCluster
) -> None:
    vf = scenario.vf
    device = device_name(vf.pci_address)

    # Slices: the node's 4 simulated VFs.
    wait_for(
        lambda: cluster.kubectl_json(
            "get", "resourceslices", "--field-selector", f"spec.nodeName={agent.node}"
        )["items"],
        what="the node's ResourceSlice",
    )
    slices = cluster.kubectl_json(
        "get", "resourceslices", "--field-selector", f"spec.nodeName={agent.node}"
    )["items"]
    assert [len(s["spec"]["devices"]) for s in slices] == [4]
    assert slices[0]["metadata"]["ownerReferences"][0]["kind"] == "Node"

    # Allocation -> VF programmed (VLAN = which bridge its port is on), status says so.
    claim = scenario.create()
    uid = claim["metadata"]["uid"]
    assert nic.vf_vlan(vf.pci_address) == VLAN
    configured = scenario.condition("VfConfigured")
    assert configured is not None and configured["reason"] == "Configured"
    assert "spoofchk" in configured["message"] and "unsupported" in configured["message"]
    assert (scenario.condition("Ready") or {}).get("status") == "True"
    assert (scenario.condition("NetworkReady") or {}).get("status") == "False"

    # Prepare over gRPC: CDI id and spec with our hook.
    prepared = agent.prepare(claim)
    assert prepared.error == ""
    assert [(d.pool_name, d.device_name, list(d.cdi_device_ids)) for d in prepared.devices] == [
        (agent.node, device, [f"{DRIVER}/vf={uid}-{device}"])
    ]
    assert agent.prepare(claim).devices == prepared.devices, "prepare must be idempotent"
    spec = agent.cdi_spec(uid)
    (hook,) = spec["containerEdits"]["hooks"]
    assert hook["hookName"] == "createRuntime"
    # The host-side wrapper the agent installed (--install-hook), as in the DaemonSet.
    assert hook["path"] == str(agent.plugins_dir / DRIVER / "sriov-dra-hook")

    # Attach through the hook: net1 in the pod with an address, networkData reported.
    pod = Pod.start()
    pods.append(pod)
    result = agent.run_hook(uid, pod)
    assert result.returncode == 0, result.stderr
    assert "net1" in pod.links()
    (address,) = pod.addresses("net1")
    assert address.startswith("10.56.0.")
    assert scenario.vf_in_host() is None
    network = wait_for(
        lambda: (scenario.entry() or {}).get("networkData"), what="networkData in status"
    )
    assert network["interfaceName"] == "net1"
    assert network["ips"] == [address]
    assert len(agent.allocated_ips()) == 1
    # The same container's hook again: idempotent.
    again = agent.run_hook(uid, pod)
    assert again.returncode == 0, again.stderr

    # Unprepare (pod gone): VF back with its name, IP released, networkData cleared.
    assert agent.unprepare(claim) == ""
    assert scenario.vf_in_host() == scenario.host_name
    assert "net1" not in pod.links()
    assert agent.allocated_ips() == []
    wait_for(
        lambda: "networkData" not in (scenario.entry() or {"networkData": 1}),
        what="networkData cleared",
    )
    assert not (agent.cdi_dir / f"{DRIVER}-vf_{uid}.json").exists()
    assert agent.unprepare(claim) == "", "unprepare must be idempotent"
    # The claim keeps the VF programmed for the next pod.
    assert nic.vf_vlan(vf.pci_address) == VLAN

    # Claim deleted: VF restored, then condition Released in status.devices.
    scenario.delete_and_release()
    assert nic.vf_vlan(vf.pci_address) == 0
    assert agent.record(vf.pci_address) is None
    wait_for(lambda: scenario.get() is None, what="claim gone after the finalizer")

    # Logs are JSON lines naming claim, PF and VF.
    programmed = [r for r in agent.log_records() if r.get("message") == "VF programmed"]
    assert programmed and programmed[0]["claim"] == f"{scenario.namespace}/{scenario.name}"
    assert programmed[0]["pf"] == vf.pf_name and programmed[0]["vf"] == vf.pci_address


def test_prepare_refuses_claim_of_another_node_and_stale_uid(
    scenario: Scenario, agent: AgentProcess
) -> None:
    claim = scenario.create()
    stale = json.loads(json.dumps(claim))
    stale["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
    answer = agent.prepare(stale)
    assert answer.error == (
        f"prepare claim {scenario.namespace}/{scenario.name} "
        "(00000000-0000-0000-0000-000000000000): "
        f"claim.uid: ResourceClaim {scenario.namespace}/{scenario.name} has uid "
        f"{claim['metadata']['uid']}, not 00000000-0000-0000-0000-000000000000; "
        "fix: the claim was deleted and re-created; delete and re-create the pod"
    )
    scenario.delete_and_release()

    # A claim allocated on another node.
    other = Scenario(scenario.cluster, scenario.namespace, agent, scenario.nic)
    other.cluster.kubectl(
        "create", "-f", "-", input=json.dumps(_claim(other.namespace, other.name, "n"))
    )
    body = other.claim()
    _, status = allocation_patch(
        body, node="other-node", pci=other.vf.pci_address, pf="simpf0", vf_index=0, nad=""
    )
    other.cluster.kubectl(
        "patch", "resourceclaim", other.name, "-n", other.namespace, "--type=merge",
        "--subresource=status", "-p", json.dumps(status),
    )  # fmt: skip
    answer = agent.prepare(other.claim())
    assert answer.error.endswith(
        f"status.allocation: ResourceClaim {other.namespace}/{other.name} has no VF allocated "
        f"on node {agent.node}; fix: the pod runs on a node its claim is not allocated for; "
        "wait for the allocation or delete the pod"
    ), answer.error
    assert agent.record(other.vf.pci_address) is None


@pytest.mark.parametrize(
    "step",
    ["attach-before-ipam", "attached-then-pod-died", "detach-before-move"],
    ids=["attach-before-ipam", "attached-then-pod-died", "detach-before-move"],
)
def test_agent_killed_during_attach_or_detach_leaks_nothing(
    scenario: Scenario, agent: AgentProcess, pods: list[Pod], step: str
) -> None:
    vf = scenario.vf
    claim = scenario.create()
    uid = claim["metadata"]["uid"]
    assert agent.prepare(claim).error == ""
    pod = Pod.start()
    pods.append(pod)
    lock = None
    if step == "attach-before-ipam":
        # Hold host-local's lock: the agent blocks in IPAM ADD after moving the VF in.
        lock = _hold_ipam_lock(agent, scenario)
        hook = agent.run_hook(uid, pod, wait=False)
        wait_for(
            lambda: (
                (agent.record(vf.pci_address) or {}).get("attachment", {})
                and agent.record(vf.pci_address)["attachment"]["phase"] == "attaching"
                and "net1" in pod.links()
            ),
            what="the agent to be half-way through attach",
        )
        agent.crash()
        hook.wait(timeout=30)
        assert hook.returncode == 1
        lock.close()
    elif step == "attached-then-pod-died":
        assert agent.run_hook(uid, pod).returncode == 0
        agent.crash()
        pod.kill()
    else:
        assert agent.run_hook(uid, pod).returncode == 0
        lock = _hold_ipam_lock(agent, scenario)
        unprepare = _unprepare_in_background(agent, claim)
        wait_for(
            lambda: (
                (agent.record(vf.pci_address) or {}).get("attachment")
                and agent.record(vf.pci_address)["attachment"]["phase"] == "detaching"
            ),
            what="the agent to be half-way through detach",
        )
        agent.crash()
        unprepare.join(timeout=30)
        lock.close()

    agent.start()
    # Restarted: the sweep put the VF back and released the address.
    wait_for(lambda: scenario.vf_in_host() == scenario.host_name, what="VF back in the host")
    if pod.proc.poll() is None:
        assert "net1" not in pod.links()
    assert agent.allocated_ips() == []
    record = agent.record(vf.pci_address)
    assert record is not None and record["attachment"] is None
    # The claim is still allocated: the VF stays programmed; a new pod can attach.
    if step != "attached-then-pod-died":
        assert agent.unprepare(claim) == ""
    assert agent.prepare(claim).error == ""
    fresh = Pod.start()
    pods.append(fresh)
    assert agent.run_hook(uid, fresh).returncode == 0
    assert len(fresh.addresses("net1")) == 1
    assert agent.unprepare(claim) == ""
    assert agent.allocated_ips() == []
    scenario.delete_and_release()
    assert agent.record(vf.pci_address) is None
    assert scenario.vf_in_host() == scenario.host_name


def _ipam_network_dir(agent: AgentProcess, scenario: Scenario) -> Path:
    claim = scenario.claim()
    annotation = claim["metadata"]["annotations"][constants.ALLOCATION_ANNOTATION]
    nad: str = json.loads(annotation)[0]["nad"].split("/", 1)[1]
    return Path(agent.cni_data_dir) / nad


class _Lock:
    def __init__(self, path: Path) -> None:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a")  # noqa: SIM115
        fcntl.flock(self.file, fcntl.LOCK_EX)

    def close(self) -> None:
        self.file.close()


def _hold_ipam_lock(agent: AgentProcess, scenario: Scenario) -> _Lock:
    return _Lock(_ipam_network_dir(agent, scenario) / "lock")


def _unprepare_in_background(agent: AgentProcess, claim: dict[str, Any]) -> Any:
    import threading

    def call() -> None:
        # The agent is killed mid-call on purpose: the RPC fails.
        with contextlib.suppress(Exception):
            agent.unprepare(claim)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def test_missing_nad_is_reported_then_picked_up(scenario: Scenario) -> None:
    nad = "late-" + secrets.token_hex(2)
    scenario.create(nad=nad, make_nad=False, wait=False)
    condition = wait_for(
        lambda: scenario.condition("VfConfigured"), what="a VfConfigured condition"
    )
    assert condition["status"] == "False"
    assert condition["reason"] == "NetworkAttachmentDefinitionNotFound"
    assert condition["message"] == (
        f"VfConfig.netAttachDefName: NetworkAttachmentDefinition {scenario.namespace}/{nad} "
        f"does not exist; fix: create NetworkAttachmentDefinition {scenario.namespace}/{nad}"
    )
    warnings = wait_for(
        lambda: [e for e in scenario.events() if e[0] == "Warning"], what="a Warning Event"
    )
    assert warnings[0][1] == "NetworkAttachmentDefinitionNotFound", warnings
    assert scenario.nic.vf_vlan(scenario.vf.pci_address) == 0
    # The NAD appears: the periodic resync programs the VF without any claim change.
    scenario.make_nad(nad)
    wait_for(
        lambda: (scenario.condition("VfConfigured") or {}).get("status") == "True",
        what="VfConfigured=True once the NAD exists",
        timeout=60,
    )
    assert scenario.nic.vf_vlan(scenario.vf.pci_address) == VLAN
    scenario.delete_and_release()


def test_ipam_exhausted_fails_attach_cleanly(
    cluster: DevCluster,
    namespace: str,
    agent: AgentProcess,
    nic: SimulatedNic,
    nad_crd: None,
    pods: list[Pod],
) -> None:
    first = Scenario(cluster, namespace, agent, nic, vf_number=0)
    second = Scenario(cluster, namespace, agent, nic, vf_number=1)
    nad = "one-ip-" + secrets.token_hex(2)
    first.make_nad(nad, last=10)
    claims = [s.create(nad=nad, make_nad=False) for s in (first, second)]
    for claim in claims:
        assert agent.prepare(claim).error == ""
    pod_a, pod_b = Pod.start(), Pod.start()
    pods += [pod_a, pod_b]
    assert agent.run_hook(claims[0]["metadata"]["uid"], pod_a).returncode == 0

    failed = agent.run_hook(claims[1]["metadata"]["uid"], pod_b)
    assert failed.returncode == 1
    assert "no IP addresses available in range set" in failed.stderr
    assert "fix: widen the NAD's ipam range or release claims holding addresses" in failed.stderr
    # Nothing half-configured: VF back in the host, no interface in the pod, one IP held.
    assert second.vf_in_host() == second.host_name
    assert "net1" not in pod_b.links()
    assert len(agent.allocated_ips()) == 1
    warnings = wait_for(
        lambda: [e for e in second.events() if e[0] == "Warning"], what="a Warning Event"
    )
    assert warnings[0][1] == "IpamFailed"
    assert "no IP addresses available" in warnings[0][2]

    for s, claim in zip((first, second), claims, strict=True):
        assert agent.unprepare(claim) == ""
        s.delete_and_release()
    assert agent.allocated_ips() == []


def test_claim_allocated_by_someone_else_is_programmed_and_restored(scenario: Scenario) -> None:
    claim = scenario.create(as_operator=False, wait=False)
    assert constants.NODE_LABEL not in (claim["metadata"].get("labels") or {})
    # The operator's one write to a claim it did not allocate (sriov_dra.node_label): the
    # node label that the agent's watch selects by.
    scenario.cluster.kubectl(
        "label", "resourceclaim", scenario.name, "-n", scenario.namespace,
        f"{constants.NODE_LABEL}={scenario.agent.node}",
    )  # fmt: skip
    wait_for(
        lambda: (scenario.condition("VfConfigured") or {}).get("status") == "True",
        what="VfConfigured=True in status.devices",
    )
    assert scenario.nic.vf_vlan(scenario.vf.pci_address) == VLAN
    # No finalizer of ours: the claim goes at once; the agent restores the VF.
    scenario.cluster.kubectl("delete", "resourceclaim", scenario.name, "-n", scenario.namespace)
    wait_for(
        lambda: scenario.agent.record(scenario.vf.pci_address) is None,
        what="the VF record to be released",
    )
    assert scenario.nic.vf_vlan(scenario.vf.pci_address) == 0


def test_metrics_and_liveness(scenario: Scenario, agent: AgentProcess, pods: list[Pod]) -> None:
    claim = scenario.create()
    assert agent.prepare(claim).error == ""
    pod = Pod.start()
    pods.append(pod)
    assert agent.run_hook(claim["metadata"]["uid"], pod).returncode == 0
    assert agent.unprepare(claim) == ""
    text = agent.metrics()
    for operation in ("program", "prepare", "attach", "detach", "unprepare"):
        line = f'sriov_dra_agent_operations_total{{operation="{operation}",result="ok"}}'
        assert line in text, operation
    assert 'sriov_dra_agent_operation_seconds_count{operation="attach"} 1.0' in text
    assert "sriov_dra_agent_published_devices 4.0" in text
    assert agent.healthy()
    scenario.delete_and_release()


def test_pod_netns_dying_while_agent_runs_detaches(
    scenario: Scenario, agent: AgentProcess, pods: list[Pod]
) -> None:
    claim = scenario.create()
    assert agent.prepare(claim).error == ""
    pod = Pod.start()
    pods.append(pod)
    assert agent.run_hook(claim["metadata"]["uid"], pod).returncode == 0
    wait_for(lambda: (scenario.entry() or {}).get("networkData"), what="networkData")
    # The sandbox dies without an unprepare (runtime crash): the periodic resync
    # brings the VF back, releases the address and clears networkData.
    pod.kill()
    wait_for(
        lambda: "networkData" not in (scenario.entry() or {"networkData": 1}),
        what="networkData cleared after the pod netns died",
        timeout=60,
    )
    assert scenario.vf_in_host() == scenario.host_name
    assert agent.allocated_ips() == []
    attached = [r for r in agent.log_records() if r.get("message") == "attached VFs"]
    assert attached and attached[0]["pod"] == "pod-1"
    assert agent.unprepare(claim) == ""
    scenario.delete_and_release()


def test_unchanged_release_failure_is_one_event_not_one_per_resync(
    cluster: DevCluster, namespace: str, agent: AgentProcess, nic: SimulatedNic, nad_crd: None
) -> None:
    scenario = Scenario(cluster, namespace, agent, nic, vf_number=3)
    scenario.create()
    pci = scenario.vf.pci_address
    # Restoring the VF fails on every resync: its record says the claim rebound it from
    # vfio-pci, which the simulated VF cannot go back to (as a real VF whose original
    # driver was unloaded meanwhile).
    path = agent.records_dir / f"{pci}.json"
    kept = path.read_text()
    record = json.loads(kept)
    _replace(path, json.dumps({**record, "driver": "default", "original_driver": "vfio-pci"}))
    cluster.kubectl("delete", "resourceclaim", scenario.name, "-n", namespace, "--wait=false")
    wait_for(
        lambda: (
            len([r for r in agent.log_records() if r.get("message") == "restoring VF failed"]) >= 3
        ),
        what="three failed release attempts",
        timeout=60,
    )
    failures = [e for e in scenario.events() if e[1] == "VfReleaseFailed"]
    assert len(failures) == 1, failures
    assert failures[0][:2] == ("Warning", "VfReleaseFailed")
    assert failures[0][2] == (
        f"restoring VFs failed: {pci}: driver: the simulated VF {pci} can only use driver "
        "'sriovsim-vf', not 'vfio-pci'; fix: use driver \"\" or \"default\" in the VfConfig "
        "on simulated nodes"
    )
    # The record as it was: the release completes, once.
    _replace(path, kept)
    scenario.delete_and_release()
    assert agent.record(pci) is None
    assert [e[1] for e in scenario.events()].count("VfReleaseFailed") == 1


def _replace(path: Path, text: str) -> None:
    """Write ``path`` as the agent does, atomically: it never reads half a record."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _metric(agent: AgentProcess, name: str) -> float:
    for line in agent.metrics().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the agent's /metrics")


def test_nad_change_reprograms_the_vf_through_the_watch_without_gets(scenario: Scenario) -> None:
    agent, pci = scenario.agent, scenario.vf.pci_address
    nad = "net-" + secrets.token_hex(2)
    uid = scenario.create(nad=nad)["metadata"]["uid"]
    assert scenario.nic.vf_vlan(pci) == VLAN
    fetches = _metric(agent, "sriov_dra_agent_nad_fetches_total")
    reconciles = _metric(agent, "sriov_dra_agent_claim_reconciles_total")
    wait_for(
        lambda: _metric(agent, "sriov_dra_agent_claim_reconciles_total") >= reconciles + 2,
        what="two more reconciles of the claim (resyncs)",
    )
    assert _metric(agent, "sriov_dra_agent_nad_fetches_total") == fetches

    scenario.make_nad(nad, vlan=200)
    wait_for(lambda: scenario.nic.vf_vlan(pci) == 200, what="the VF moved to VLAN 200")
    changed = [
        r
        for r in agent.log_records()
        if r.get("message") == "NAD changed; reconciling the claims using it"
    ]
    assert [(r["nad"], r["uids"]) for r in changed] == [(f"{scenario.namespace}/{nad}", [uid])]
    wait_for(
        lambda: "vlan" in ((scenario.condition("VfConfigured") or {}).get("message") or ""),
        what="VfConfigured after the change",
    )
    assert _metric(agent, "sriov_dra_agent_nad_fetches_total") == fetches
    scenario.delete_and_release()
    assert scenario.nic.vf_vlan(pci) == 0


@pytest.fixture
def other_namespace(cluster: DevCluster) -> Iterator[str]:
    """Another tenant's namespace with NAD ``secret`` (VLAN 300, 10.57.0.0/24)."""
    name = "victim-" + secrets.token_hex(3)
    cluster.kubectl("create", "namespace", name)
    try:
        cluster.kubectl(
            "apply", "-f", "-",
            input=json.dumps(_nad(name, "secret", subnet="10.57.0.0/24", vlan=300)),
        )  # fmt: skip
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_edited_annotation_cannot_select_another_namespaces_nad(
    scenario: Scenario, agent: AgentProcess, pods: list[Pod], other_namespace: str
) -> None:
    pci, device = scenario.vf.pci_address, device_name(scenario.vf.pci_address)
    own = "net-" + secrets.token_hex(2)
    claim = scenario.create(nad=own)
    uid = claim["metadata"]["uid"]
    # A tenant with patch on the claim's metadata points the annotation elsewhere.
    records = json.loads(claim["metadata"]["annotations"][constants.ALLOCATION_ANNOTATION])
    records[0]["nad"] = f"{other_namespace}/secret"
    scenario.cluster.kubectl(
        "annotate", "resourceclaim", scenario.name, "-n", scenario.namespace, "--overwrite",
        f"{constants.ALLOCATION_ANNOTATION}={json.dumps(records)}",
    )  # fmt: skip
    mismatch = (
        f"{device}: nad is '{other_namespace}/secret' in the annotation but "
        f"'{scenario.namespace}/{own}' in status.allocation"
    )
    warnings = wait_for(
        lambda: [e for e in scenario.events() if e[1] == "AllocationAnnotationIgnored"],
        what="the AllocationAnnotationIgnored Warning",
    )
    assert warnings == [
        (
            "Warning",
            "AllocationAnnotationIgnored",
            f"annotation {constants.ALLOCATION_ANNOTATION} disagrees with status.allocation; "
            f"node {agent.node} follows status.allocation: {mismatch}; fix: only the sriov-dra "
            "operator writes this annotation, undo the edit",
        )
    ]
    (logged,) = [
        r
        for r in agent.log_records()
        if r.get("message") == "allocation annotation ignored where it disagrees with "
        "status.allocation"
    ]
    assert (logged["level"], logged["claim"], logged["uid"], logged["mismatches"]) == (
        "warning", f"{scenario.namespace}/{scenario.name}", uid, [mismatch]
    )  # fmt: skip

    # Still the claim's own VLAN and IPAM, before and after a pod.
    assert scenario.nic.vf_vlan(pci) == VLAN
    assert agent.prepare(scenario.claim()).error == ""
    pod = Pod.start()
    pods.append(pod)
    assert agent.run_hook(uid, pod).returncode == 0
    (address,) = pod.addresses("net1")
    assert address.startswith("10.56.0.")
    assert [ip.split("/")[0] for ip in agent.allocated_ips()] == [own]
    assert scenario.nic.vf_vlan(pci) == VLAN
    entry = scenario.entry() or {}
    assert entry["data"]["networkAttachmentDefinition"] == f"{scenario.namespace}/{own}"
    assert agent.unprepare(scenario.claim()) == ""
    scenario.delete_and_release()


def test_cross_namespace_nad_in_status_is_refused_by_the_agent(
    scenario: Scenario, agent: AgentProcess, other_namespace: str
) -> None:
    # As if an operator with --nad-namespaces=<victim> had allocated it: this agent
    # was not started with that namespace allowed.
    claim = scenario.create(nad="secret", nad_namespace=other_namespace, make_nad=False, wait=False)
    uid = claim["metadata"]["uid"]
    message = (
        "status.allocation.devices.config (request 'vf').netAttachDefNamespace: "
        f"NetworkAttachmentDefinition {other_namespace}/secret is outside the claim's "
        f"namespace '{scenario.namespace}' and namespace '{other_namespace}' is not allowed; "
        f"fix: create the NAD in namespace '{scenario.namespace}', or start the operator and "
        f"every node agent with --nad-namespaces={other_namespace}"
    )
    warnings = wait_for(
        lambda: [e for e in scenario.events() if e[1] == "InvalidVfConfig"],
        what="the InvalidVfConfig Warning",
    )
    assert warnings == [("Warning", "InvalidVfConfig", message)]
    assert agent.prepare(claim).error == (
        f"prepare claim {scenario.namespace}/{scenario.name} ({uid}): {message}"
    )
    assert agent.record(scenario.vf.pci_address) is None
    assert scenario.nic.vf_vlan(scenario.vf.pci_address) == 0
    # The refused claim is still released when deleted (the operator can drop its finalizer).
    scenario.delete_and_release()


def test_nad_mac_is_the_pods_interface_mac_and_the_original_comes_back(
    scenario: Scenario, agent: AgentProcess, pods: list[Pod]
) -> None:
    nad_mac = "02:00:00:5e:00:42"
    original = scenario.host_mac()
    assert original != nad_mac
    claim = scenario.create(mac=nad_mac)
    uid = claim["metadata"]["uid"]
    assert agent.prepare(claim).error == ""
    # Two pods one after the other: the second gets the VF after detach restored the
    # netdev's original MAC, so only the attach can give it the NAD's.
    for _ in range(2):
        pod = Pod.start()
        pods.append(pod)
        assert agent.run_hook(uid, pod).returncode == 0
        assert pod.mac("net1") == nad_mac
        network = wait_for(lambda: (scenario.entry() or {}).get("networkData"), what="networkData")
        assert network["hardwareAddress"] == nad_mac
        assert agent.unprepare(claim) == ""
        assert scenario.vf_in_host() == scenario.host_name
        assert scenario.host_mac() == original
        assert agent.prepare(claim).error == ""
    assert agent.unprepare(claim) == ""
    scenario.delete_and_release()


def test_prepare_refuses_a_vf_prepared_for_another_claim(
    scenario: Scenario, agent: AgentProcess, pods: list[Pod]
) -> None:
    first, cluster, namespace, nic = scenario, scenario.cluster, scenario.namespace, scenario.nic
    nad = "net-" + secrets.token_hex(2)
    claim_a = first.create(nad=nad)
    uid_a = claim_a["metadata"]["uid"]
    assert agent.prepare(claim_a).error == ""
    pod = Pod.start()
    pods.append(pod)
    assert agent.run_hook(uid_a, pod).returncode == 0
    (address,) = pod.addresses("net1")

    # Claim B: a hand-written allocation of the very same VF.
    second = Scenario(cluster, namespace, agent, nic, vf_number=0)
    claim_b = second.create(nad=nad, make_nad=False, as_operator=False, wait=False)
    uid_b = claim_b["metadata"]["uid"]
    device = device_name(first.vf.pci_address)
    assert agent.prepare(claim_b).error == (
        f"prepare claim {namespace}/{second.name} ({uid_b}): "
        f"status.allocation.devices.results: VF {device} is prepared for claim "
        f"{namespace}/{first.name} ({uid_a}); fix: the other claim must be unprepared first "
        "(delete its pod)"
    )
    # A stays prepared and attached, B got nothing; deleting B takes nothing from A.
    cluster.kubectl("delete", "resourceclaim", second.name, "-n", namespace)
    wait_for(lambda: second.get() is None, what="claim B gone")
    assert not (agent.cdi_dir / f"{DRIVER}-vf_{uid_b}.json").exists()
    assert agent.cdi_spec(uid_a)["containerEdits"]["hooks"]
    record = agent.record(first.vf.pci_address)
    assert record is not None
    assert (record["claim"]["uid"], record["attachment"]["phase"]) == (uid_a, "attached")
    assert pod.addresses("net1") == [address]
    assert nic.vf_vlan(first.vf.pci_address) == VLAN
    assert (first.condition("NetworkReady") or {}).get("status") == "True"
    assert agent.unprepare(claim_a) == ""
    first.delete_and_release()


def test_status_apply_keeps_another_drivers_entry(
    scenario: Scenario, agent: AgentProcess, pods: list[Pod]
) -> None:
    foreign = {
        "driver": "other.example.com",
        "pool": "other-pool",
        "device": "gpu-0",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Fine",
                "message": "written by another driver",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
            }
        ],
        "data": {"owner": "other.example.com"},
    }

    def foreign_entry() -> dict[str, Any] | None:
        for item in (scenario.claim().get("status") or {}).get("devices") or []:
            if item["driver"] == "other.example.com":
                return dict(item)
        return None

    claim = scenario.create(foreign_status=foreign)
    assert foreign_entry() == foreign
    # Another report (networkData) and its removal: the foreign entry stays as it was.
    assert agent.prepare(claim).error == ""
    pod = Pod.start()
    pods.append(pod)
    assert agent.run_hook(claim["metadata"]["uid"], pod).returncode == 0
    wait_for(lambda: (scenario.entry() or {}).get("networkData"), what="networkData")
    assert foreign_entry() == foreign
    assert agent.unprepare(claim) == ""
    wait_for(
        lambda: "networkData" not in (scenario.entry() or {"networkData": 1}),
        what="networkData cleared",
    )
    assert foreign_entry() == foreign
    devices = scenario.claim()["status"]["devices"]
    assert sorted(d["driver"] for d in devices) == sorted([DRIVER, "other.example.com"])
    scenario.delete_and_release()


def test_add_vhost_mount_gives_vhost_net_and_tun_or_says_which_module_is_missing(
    scenario: Scenario, agent: AgentProcess
) -> None:
    claim = scenario.create(vfconfig={"addVhostMount": True}, wait=False)
    uid = claim["metadata"]["uid"]
    missing = [path for path in VHOST_DEVICE_NODES if not Path(path).exists()]
    if not missing:
        wait_for(
            lambda: (scenario.condition("VfConfigured") or {}).get("status") == "True",
            what="VfConfigured=True",
        )
        assert agent.prepare(claim).error == ""
        (device,) = agent.cdi_spec(uid)["devices"]
        assert device["containerEdits"]["deviceNodes"] == [
            {"path": "/dev/vhost-net"},
            {"path": "/dev/net/tun"},
        ]
    else:
        # This machine cannot load modules: the node lacks a device node, and says so.
        message = (
            f"VfConfig.addVhostMount: {', '.join(missing)} missing on node {agent.node}; "
            f"fix: load the vhost_net and tun kernel modules on {agent.node} "
            "(modprobe vhost_net tun), or set addVhostMount: false"
        )
        warnings = wait_for(
            lambda: [e for e in scenario.events() if e[1] == "DeviceNodeMissing"],
            what="the DeviceNodeMissing Warning",
        )
        assert warnings == [("Warning", "DeviceNodeMissing", message)]
        condition = scenario.condition("VfConfigured") or {}
        assert (condition.get("status"), condition.get("reason")) == ("False", "DeviceNodeMissing")
        assert agent.prepare(claim).error == (
            f"prepare claim {scenario.namespace}/{scenario.name} ({uid}): {message}"
        )
        assert agent.record(scenario.vf.pci_address) is None
    scenario.delete_and_release()


def test_a_claim_the_restarted_agent_refuses_keeps_its_vf_in_the_pod(
    scenario: Scenario, agent: AgentProcess, pods: list[Pod], other_namespace: str
) -> None:
    agent.terminate()
    agent.extra_args = [f"--nad-namespaces={other_namespace}"]
    agent.start()
    claim = scenario.create(nad="secret", nad_namespace=other_namespace, make_nad=False)
    uid = claim["metadata"]["uid"]
    assert agent.prepare(claim).error == ""
    pod = Pod.start()
    pods.append(pod)
    assert agent.run_hook(uid, pod).returncode == 0
    # Restarted without that namespace allowed: the claim's config is refused from now
    # on, but the start-up sweep must not take its VF out of the running pod.
    agent.terminate()
    agent.extra_args = []
    agent.start()
    assert "net1" in pod.links()
    record = agent.record(scenario.vf.pci_address)
    assert record is not None and record["attachment"] is not None
    assert agent.unprepare(claim) == ""
    scenario.delete_and_release()


def test_multus_mode_publishes_the_resource_name_and_writes_device_info_without_a_hook(
    scenario: Scenario, agent: AgentProcess, cluster: DevCluster
) -> None:
    vf = scenario.vf
    device = device_name(vf.pci_address)
    devinfo = agent.root / "devinfo"
    agent.terminate()
    agent.extra_args = [
        "--attach-mode", "multus",
        "--resource-name", f"{vf.pf_name}=sriov_nic_1",
        "--device-info-dir", str(devinfo),
    ]  # fmt: skip
    agent.start()

    def attributes() -> dict[str, Any] | None:
        for item in cluster.kubectl_json(
            "get", "resourceslices", "--field-selector", f"spec.nodeName={agent.node}"
        )["items"]:
            for published in item["spec"]["devices"]:
                if published["name"] == device:
                    return dict(published["attributes"])
        return None

    published = wait_for(
        lambda: (a := attributes()) and constants.ATTR_CNI_RESOURCE_NAME in a and a,
        what="k8s.cni.cncf.io/resourceName on the VF's device",
    )
    assert published[constants.ATTR_CNI_RESOURCE_NAME] == {"string": "sriov_nic_1"}
    assert published[constants.ATTR_CNI_DEVICE_ID] == {"string": vf.pci_address}

    claim = scenario.create()
    uid = claim["metadata"]["uid"]
    assert agent.prepare(claim).error == ""
    spec = agent.cdi_spec(uid)
    assert "containerEdits" not in spec, "Multus attaches: no createRuntime hook"
    info_file = devinfo / f"sriov_nic_1-{vf.pci_address}-device.json"
    assert json.loads(info_file.read_text()) == {
        "type": "pci",
        "version": "1.1.0",
        "pci": {"pci-address": vf.pci_address, "pf-pci-address": vf.pf_pci_address},
    }

    # A crash left a file for a VF no claim holds: the restarted agent's sweep removes it,
    # and leaves the prepared claim's file and a device plugin's file alone.
    agent.crash()
    stray = devinfo / "sriov_nic_1-0000:ff:1f.7-device.json"
    theirs = devinfo / f"example.com-sriov-{vf.pci_address}-device.json"
    for path in (stray, theirs):
        path.write_text(info_file.read_text())
    agent.start()
    assert not stray.exists()
    assert info_file.exists() and theirs.exists()

    assert agent.unprepare(claim) == ""
    assert not info_file.exists()
    assert not (agent.cdi_dir / f"{DRIVER}-vf_{uid}.json").exists()
    scenario.delete_and_release()
