"""Live rediscovery end to end: VFs added and removed under the agent process while claims
exist, and a PF removed, on the simulated NIC, against the real API server.

The agent runs with ``--rescan-interval 600``: its periodic rescan never comes during a
test, so every slice change seen here came from a hardware event (the VF netdevs through
the PF link watch's netlink socket, the simulated tree through inotify). A VF allocated,
programmed and attached into a pod (with a host-local address) is then removed: its claim
gets the Warning ``VfGone`` and condition ``Ready`` False, unprepare and release succeed,
and no address, record or CDI spec is left behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from agent_harness import (
    DRIVER,
    AgentProcess,
    Pod,
    agent_service_account,
    built_nic,
    node_object,
    running_agent,
    wait_for,
)
from sriov_dra.naming import device_name
from sriov_dra_agent.vf.backends.simulated_nic import SimPf, SimulatedNic
from sriov_dra_devcluster.cluster import DevCluster
from test_agent_lifecycle import HOST_LOCAL, Scenario
from test_agent_lifecycle import nad_crd as nad_crd  # fixture: the NAD CRD installed
from test_agent_lifecycle import pods as pods  # fixture: pods killed afterwards

pytestmark = [pytest.mark.integration, pytest.mark.netns, pytest.mark.usefixtures("nad_crd")]


PF, OTHER_PF = "simpf0", "simpf1"
PFS = (SimPf(PF, total_vfs=16, num_vfs=4), SimPf(OTHER_PF, total_vfs=2, num_vfs=2))
OTHER_VFS = [device_name("0000:3d:02.0"), device_name("0000:3d:02.1")]


@pytest.fixture
def node(cluster: DevCluster) -> Iterator[str]:
    if not HOST_LOCAL.exists():
        pytest.fail(f"{HOST_LOCAL} missing: run .ci/setup (containernetworking-plugins)")
    with node_object(cluster, "r-node") as name:
        yield name


@pytest.fixture
def nic(node: str) -> Iterator[SimulatedNic]:
    with built_nic(node, "r", PFS) as nic:
        yield nic


@pytest.fixture
def agent(cluster: DevCluster, node: str, nic: SimulatedNic) -> Iterator[AgentProcess]:
    """The agent as its ServiceAccount, its periodic rescan out of the tests' reach."""
    kubeconfig = agent_service_account(cluster)
    with running_agent(
        node, nic.prefix, kubeconfig, prefix="r-", extra_args=["--rescan-interval", "600"]
    ) as proc:
        yield proc


def published(cluster: DevCluster, node: str) -> list[str]:
    """Names of the devices in the node's slices of our driver."""
    out = cluster.kubectl(
        "get", "resourceslices", "-o", "json", "--field-selector", f"spec.nodeName={node}"
    )
    return sorted(
        device["name"]
        for item in json.loads(out.stdout)["items"]
        if item["spec"]["driver"] == DRIVER
        for device in item["spec"].get("devices") or []
    )


def wait_published(
    cluster: DevCluster, node: str, count: int, what: str
) -> tuple[list[str], float]:
    """The devices once ``count`` are published (bounded), and how long that took."""
    start = time.monotonic()
    devices = wait_for(
        lambda: (found := published(cluster, node)) and len(found) == count and found,
        what=what,
    )
    return devices, time.monotonic() - start


def wake_ups(agent: AgentProcess) -> int:
    return sum(1 for r in agent.log_records() if r.get("message") == "hardware changed; rescanning")


def test_vfs_added_and_removed_are_published_without_the_periodic_rescan(
    cluster: DevCluster, node: str, nic: SimulatedNic, agent: AgentProcess
) -> None:
    wait_published(cluster, node, 6, "the 6 VFs published at start")
    before = wake_ups(agent)

    nic.set_num_vfs(PF, 16)
    devices, added_after = wait_published(cluster, node, 18, "the 12 new VFs published")
    assert devices == sorted(
        [device_name(f"0000:3b:{0x02 + n // 8:02x}.{n % 8}") for n in range(16)] + OTHER_VFS
    )
    added = wake_ups(agent) - before

    before = wake_ups(agent)
    nic.set_num_vfs(PF, 1)
    devices, removed_after = wait_published(cluster, node, 3, "the 15 removed VFs unpublished")
    assert devices == sorted([device_name("0000:3b:02.0"), *OTHER_VFS])
    removed = wake_ups(agent) - before
    assert "VfGone" not in agent.log(), "no claim held those VFs"
    print(
        f"4->16 VFs: published after {added_after:.2f} s, {added} wake-ups; "
        f"16->1: after {removed_after:.2f} s, {removed} wake-ups"
    )


def test_an_attached_vf_that_vanishes_warns_its_claim_and_leaks_nothing(
    cluster: DevCluster,
    namespace: str,
    node: str,
    nic: SimulatedNic,
    agent: AgentProcess,
    pods: list[Pod],
) -> None:
    wait_published(cluster, node, 6, "the 6 VFs published at start")
    gone = Scenario(cluster, namespace, agent, nic, vf_number=3)
    stays = Scenario(cluster, namespace, agent, nic, vf_number=1)
    claim = gone.create()
    stays.create()
    uid = claim["metadata"]["uid"]
    assert agent.prepare(claim).error == ""
    pod = Pod.start()
    pods.append(pod)
    hooked = agent.run_hook(uid, pod)
    assert hooked.returncode == 0, hooked.stderr  # type: ignore[union-attr]
    assert "net1" in pod.links()
    assert len(agent.allocated_ips()) == 1

    # sriov_numvfs 4 -> 3: VF 3 goes, with its netdev in the pod; VF 1 stays.
    nic.set_num_vfs(PF, 3)
    wait_published(cluster, node, 5, "VF 3 unpublished")
    pci = gone.vf.pci_address
    event = wait_for(
        lambda: [e for e in gone.events() if e[1] == "VfGone"],
        what="Warning VfGone on the claim",
    )
    ((kind, _, message),) = event
    assert kind == "Warning"
    for part in (f"node {node}", pci, f"PF {PF}", "fix: delete the pod"):
        assert part in message
    ready = wait_for(
        lambda: (c := gone.condition("Ready")) and c["reason"] == "VfGone" and c,
        what="Ready False with reason VfGone",
    )
    assert ready["status"] == "False"
    # It was in the pod: no networkData or NetworkReady is claimed for it any more.
    assert (gone.condition("NetworkReady") or {}).get("reason") == "VfGone"
    assert "networkData" not in (gone.entry() or {})
    assert (stays.condition("Ready") or {}).get("status") == "True", "VF 1 is untouched"
    assert "net1" not in pod.links()
    logged = [r for r in agent.log_records() if str(r.get("message", "")).startswith("VF vanished")]
    assert logged and logged[0]["claim"] == f"{namespace}/{gone.name}"
    assert (logged[0]["pf"], logged[0]["vf"], logged[0]["uid"]) == (PF, pci, uid)

    # The pod goes: unprepare succeeds at once and releases the address.
    assert agent.unprepare(claim) == ""
    assert agent.allocated_ips() == []
    record = agent.record(pci)
    assert record is not None and record["attachment"] is None
    assert not (agent.cdi_dir / f"{DRIVER}-vf_{uid}.json").exists()

    # The claim deleted: released (condition Released), nothing left of the VF.
    gone.delete_and_release()
    assert agent.record(pci) is None
    assert agent.healthy()
    assert [e for e in gone.events() if e[0] == "Warning" and e[1] != "VfGone"] == []

    # The VF comes back: published again, free for the next claim.
    nic.set_num_vfs(PF, 4)
    devices, _ = wait_published(cluster, node, 6, "VF 3 published again")
    assert device_name(pci) in devices
    stays.delete_and_release()


def test_a_pf_removed_under_a_claim_unpublishes_its_vfs_and_warns_the_claim(
    cluster: DevCluster, namespace: str, node: str, nic: SimulatedNic, agent: AgentProcess
) -> None:
    wait_published(cluster, node, 6, "the 6 VFs published at start")
    held = Scenario(cluster, namespace, agent, nic, vf_number=4)
    assert held.vf.pf_name == OTHER_PF
    held.create()

    nic.remove_pf(OTHER_PF)  # hot-unplug: the PF and both its VFs go
    devices, _ = wait_published(cluster, node, 4, f"the VFs of {OTHER_PF} unpublished")
    assert not set(OTHER_VFS) & set(devices)
    ((kind, _, message),) = wait_for(
        lambda: [e for e in held.events() if e[1] == "VfGone"], what="Warning VfGone"
    )
    assert kind == "Warning" and f"PF {OTHER_PF}" in message
    held.delete_and_release()
    assert agent.record(held.vf.pci_address) is None

    nic.build(PFS)  # plugged back in
    devices, _ = wait_published(cluster, node, 6, f"the VFs of {OTHER_PF} published again")
    assert set(OTHER_VFS) <= set(devices)
