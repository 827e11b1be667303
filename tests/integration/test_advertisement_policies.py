"""Advertisement policies against the real API server, with the shipped CRDs and as the
agent's ServiceAccount with the shipped RBAC.

In-process: the agent's SriovResourcePolicy, DeviceAttributes and Node watches drive its
slice publisher, which rescans only every 10 minutes here, so every change the test sees
in the slices came from a watch event waking it. As a process (the agent on a simulated
NIC): a VF allocated and configured stays with its claim when a policy stops advertising
it, and is released as usual.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from agent_harness import AgentProcess, agent_service_account, wait_for
from sriov_dra import constants
from sriov_dra.advertisement import NoPolicyMode
from sriov_dra.naming import device_name
from sriov_dra_agent.cluster.advertisement_policies import AdvertisementPolicies
from sriov_dra_agent.cluster.slice_publisher import SlicePublisher
from sriov_dra_agent.vf.backends.simulated_nic import SimulatedNic
from sriov_dra_agent.vf.inventory import Inventory, PfInfo, VfInfo
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_kube.client import KubeApi
from test_agent_lifecycle import Scenario, agent, nad_crd, nic, node

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DRIVER = constants.DRIVER_NAME
RESOURCE_NAME = f"{DRIVER}/resourceName"
T = TypeVar("T")


def inventory(node: str) -> Inventory:
    """Two simulated PFs, sim0 and sim1, with two VFs each."""
    pfs = []
    for number in range(2):
        pf_pci = f"0000:{0x10 * (number + 1):02x}:00.0"
        vfs = tuple(
            VfInfo(
                pci_address=f"{pf_pci[:-1]}{index + 2}",
                vf_index=index,
                pf_name=f"sim{number}",
                pf_pci_address=pf_pci,
                vendor="8086",
                device_id="154c",
                pf_device_id="1572",
                driver="iavf",
                netdev=None,
                simulated=True,
            )
            for index in range(2)
        )
        pfs.append(
            PfInfo(
                name=f"sim{number}",
                pci_address=pf_pci,
                vendor="8086",
                device_id="1572",
                total_vfs=8,
                num_vfs=2,
                vfs=vfs,
            )
        )
    return Inventory(node=node, pfs=tuple(pfs))


@pytest.fixture(scope="module")
def agent_kubeconfig(cluster: DevCluster) -> Path:
    """The shipped CRDs, and the agent's ServiceAccount with the shipped RBAC."""
    for crd in ("sriovresourcepolicies.yaml", "deviceattributes.yaml"):
        cluster.kubectl("apply", "-f", str(ROOT / "crds" / crd))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        f"crd/sriovresourcepolicies.{DRIVER}", f"crd/deviceattributes.{DRIVER}",
    )  # fmt: skip
    return agent_service_account(cluster)


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """``probe``'s first non-None answer; fails naming ``what`` after a minute."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        found = await probe()
        if found is not None:
            return found
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def apply(cluster: DevCluster, namespace: str, kind: str, name: str, **body: Any) -> None:
    obj = {
        "apiVersion": f"{DRIVER}/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, **body.pop("metadata", {})},
        **body,
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


@pytest_asyncio.fixture
async def shell(agent_kubeconfig: Path, node: str, namespace: str) -> AsyncIterator[KubeApi]:
    """The agent's policies and publisher for ``node``, reading policies in ``namespace``."""
    api = await KubeApi.from_kubeconfig(agent_kubeconfig)
    publisher: SlicePublisher
    policies = AdvertisementPolicies(
        api,
        node=node,
        namespaces=[namespace],
        driver=DRIVER,
        no_policy=NoPolicyMode.ALL,
        component="sriov-dra-agent",
        on_change=lambda: publisher.republish(),
        watch_timeout_seconds=30,
    )
    publisher = SlicePublisher(
        api,
        node=node,
        driver=DRIVER,
        discover=lambda: inventory(node),
        interval=600,
        advertise=policies.decide,
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(policies.run(stop)), asyncio.create_task(publisher.run(stop))]
    try:
        yield api
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await api.close()


async def published(api: KubeApi, node: str) -> dict[str, dict[str, Any]]:
    """Device name -> attributes of the node's pool as the API server holds it."""
    slices = await api.list_slices(node=node, driver=DRIVER)
    return {d["name"]: d["attributes"] for s in slices for d in s["spec"]["devices"]}


async def test_policies_shrink_label_and_restore_the_pool(
    cluster: DevCluster, shell: KubeApi, node: str, namespace: str
) -> None:
    api = shell

    async def pool_of(size: int) -> dict[str, dict[str, Any]] | None:
        devices = await published(api, node)
        return devices if len(devices) == size else None

    # No policy at all: every VF (the default no-policy setting).
    everything = await eventually(lambda: pool_of(4), "all 4 VFs published")
    assert all(RESOURCE_NAME not in attrs for attrs in everything.values())

    # A policy for sim1's VFs with merged DeviceAttributes: the pool shrinks to them.
    apply(
        cluster,
        namespace,
        "DeviceAttributes",
        "a-fast",
        metadata={"labels": {"pool": "fast"}},
        spec={"attributes": {"resourceName": {"string": "from-a"}, "tier": {"int": 1}}},
    )
    apply(
        cluster,
        namespace,
        "DeviceAttributes",
        "b-fast",
        metadata={"labels": {"pool": "fast"}},
        spec={
            "attributes": {
                "resourceName": {"string": "fast"},
                "vendor": {"string": "not-a-built-in-override"},
            }
        },
    )
    apply(
        cluster,
        namespace,
        "SriovResourcePolicy",
        "fast-nics",
        spec={
            "configs": [
                {
                    "deviceAttributesSelector": {"matchLabels": {"pool": "fast"}},
                    "resourceFilters": [{"pfNames": ["sim1"], "linkType": "eth"}],
                }
            ]
        },
    )
    shrunk = await eventually(lambda: pool_of(2), "the pool shrunk to sim1's 2 VFs")
    for attrs in shrunk.values():
        assert attrs[constants.ATTR_PF_NAME] == {"string": "sim1"}
        assert attrs[RESOURCE_NAME] == {"string": "fast"}
        assert attrs[f"{DRIVER}/tier"] == {"int": 1}
        assert attrs[constants.ATTR_VENDOR] == {"string": "8086"}

    # A policy that applies to labelled nodes only: labelling the node brings sim0 back.
    apply(cluster, namespace, "SriovResourcePolicy", "labelled-nodes",
          spec={"nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [
              {"key": "example.com/sriov", "operator": "In", "values": ["on"]}]}]},
                "configs": [{"resourceFilters": [{"pfNames": ["sim0"]}]}]})  # fmt: skip
    cluster.kubectl("label", "node", node, "example.com/sriov=on")
    grown = await eventually(lambda: pool_of(4), "sim0's VFs back after the node label")
    sim0 = [a for a in grown.values() if a[constants.ATTR_PF_NAME] == {"string": "sim0"}]
    assert len(sim0) == 2 and all(RESOURCE_NAME not in a for a in sim0)

    # A bad linkType: a Warning on that policy naming the field; the others still apply.
    apply(cluster, namespace, "SriovResourcePolicy", "bad-link",
          spec={"configs": [{"resourceFilters": [{"linkType": "token-ring"}]}]})  # fmt: skip

    def event_on(name: str) -> Callable[[], Awaitable[dict[str, Any] | None]]:
        async def first() -> dict[str, Any] | None:
            data = json.loads(cluster.kubectl(
                "get", "events", "-n", namespace, "-o", "json",
                "--field-selector", f"involvedObject.name={name}",
            ).stdout)  # fmt: skip
            return next(iter(data["items"]), None)

        return first

    event = await eventually(event_on("bad-link"), "a Warning Event on policy bad-link")
    assert event["type"] == "Warning"
    assert event["reason"] == "InvalidSriovResourcePolicy"
    assert event["involvedObject"]["kind"] == "SriovResourcePolicy"
    assert event["involvedObject"]["apiVersion"] == f"{DRIVER}/v1alpha1"
    assert event["source"]["host"] == node
    assert "spec.configs[0].resourceFilters[0].linkType" in event["message"]
    assert "token-ring" in event["message"]
    assert len(await published(api, node)) == 4

    # The built-in vendor attribute was not overridden, and that was reported too.
    refused = await eventually(event_on("b-fast"), "a Warning Event on DeviceAttributes b-fast")
    assert refused["involvedObject"]["kind"] == "DeviceAttributes"
    assert "cannot be overridden" in refused["message"]

    # Every policy deleted: all VFs back, without the policy attributes.
    cluster.kubectl("delete", "sriovresourcepolicies", "--all", "-n", namespace)

    async def restored() -> dict[str, dict[str, Any]] | None:
        devices = await pool_of(4)
        if devices is None or any(RESOURCE_NAME in a for a in devices.values()):
            return None
        return devices

    await eventually(restored, "all 4 VFs back without policy attributes")


__all__ = ["agent", "nad_crd", "nic", "node"]
"""A Node object of the test's, the agent process for it on a simulated NIC, and the NAD
CRD, as test_agent_lifecycle makes them."""


@pytest.mark.netns
def test_an_allocated_vf_stays_with_its_claim_when_no_longer_advertised(
    cluster: DevCluster, agent: AgentProcess, nic: SimulatedNic, namespace: str
) -> None:
    agent.terminate()
    agent.extra_args = ["--policy-namespaces", namespace]
    agent.start()

    def devices() -> list[str]:
        slices = cluster.kubectl_json(
            "get", "resourceslices", "--field-selector", f"spec.nodeName={agent.node}"
        )["items"]
        return sorted(d["name"] for s in slices for d in s["spec"]["devices"])

    wait_for(lambda: len(devices()) == 4 or None, what="the node's 4 VFs published")
    scenario = Scenario(cluster, namespace, agent, nic, vf_number=0)
    claim = scenario.create()
    kept = scenario.backend.discover().vfs()[1]

    # A policy that advertises another VF only: the allocated VF leaves the slices ...
    only_kept = {"resourceFilters": [{"pciAddresses": [kept.pci_address]}]}
    apply(cluster, namespace, "SriovResourcePolicy", "only-vf1", spec={"configs": [only_kept]})
    wait_for(
        lambda: devices() == [device_name(kept.pci_address)] or None,
        what="the slices shrunk to the policy's one VF",
    )
    # ... and stays with its claim, configured, as the agent's record says.
    allocated = scenario.claim()["status"]["allocation"]["devices"]["results"]
    assert [r["device"] for r in allocated] == [device_name(scenario.vf.pci_address)]
    assert (scenario.condition("VfConfigured") or {}).get("status") == "True"
    assert scenario.claim()["metadata"]["uid"] == claim["metadata"]["uid"]
    assert agent.record(scenario.vf.pci_address) is not None

    # Released as usual although unadvertised; the policy gone, every VF is back.
    scenario.delete_and_release()
    cluster.kubectl("delete", "sriovresourcepolicy", "only-vf1", "-n", namespace)
    wait_for(lambda: len(devices()) == 4 or None, what="all 4 VFs back")
