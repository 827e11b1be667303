"""The node emulation against the agent's real kubelet-plugin servers, CDI specs and hook.

What is real here: the API server, the scheduler's reservation, D's
``KubeletPlugin`` gRPC servers on unix sockets, CDI spec files written by
``sriov_dra_agent.kubelet.cdi``, the ``sriov-dra hook`` executable run with the OCI
state on stdin, D's attach socket, and the pod's network namespace and
process. What stands in for the agent: a small preparer/attacher that records
calls and can be told to fail, so the emulator's kubelet behaviour is what is
tested. (The whole agent behind the same sockets is exercised by the e2e test.)
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from sriov_dra.claim_ref import ClaimRef
from sriov_dra.constants import DRIVER_NAME
from sriov_dra.errors import AttachError, DeviceBusy
from sriov_dra_agent.attach.attach_socket import AttachRequest, AttachResult, AttachServer
from sriov_dra_agent.cluster.claim_locks import ClaimLocks
from sriov_dra_agent.kubelet.cdi import (
    CdiHook,
    CdiVf,
    build_claim_spec,
    claim_cdi_device_ids,
    remove_claim_spec,
    write_claim_spec,
)
from sriov_dra_agent.kubelet.plugin import (
    KubeletPlugin,
    KubeletPluginConfig,
    PreparedDevice,
)
from sriov_dra_devcluster import pod_sandbox
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.emulator_state import sweep
from sriov_dra_devcluster.kube_client import KubeClient
from sriov_dra_devcluster.node_emulator import NodeEmulator
from sriov_dra_devcluster.node_layout import RUNTIME_BASE, NodeLayout

pytestmark = [pytest.mark.integration, pytest.mark.netns]

ROOT = Path(__file__).resolve().parents[2]
NODE = "sim-node-1"
DEVICE = "0000-00-08-1"
HOOK = str(Path(sys.executable).parent / "sriov-dra")
T = TypeVar("T")


@dataclass
class FakeAgent:
    """Stands in for the agent's claim business behind D's real servers; records calls."""

    layout: NodeLayout
    prepare_error: str = ""
    attach_error: str = ""
    prepared: list[str] = field(default_factory=list)
    unprepared: list[str] = field(default_factory=list)
    attached: list[AttachRequest] = field(default_factory=list)
    netns_at_unprepare: list[set[str]] = field(default_factory=list)

    @property
    def attach_socket(self) -> Path:
        return self.layout.plugins_dir / DRIVER_NAME / "attach.sock"

    async def prepare(self, claim: ClaimRef) -> list[PreparedDevice]:
        if self.prepare_error:
            raise DeviceBusy(self.prepare_error)
        self.prepared.append(claim.uid)
        hook = CdiHook(path=HOOK, attach_socket=str(self.attach_socket))
        spec = build_claim_spec(claim.uid, [CdiVf(DEVICE, "0000:00:08.1", "net1")], hook)
        write_claim_spec(self.layout.cdi_dir, claim.uid, spec)
        ids = tuple(claim_cdi_device_ids(claim.uid, [DEVICE]))
        return [PreparedDevice((), NODE, DEVICE, ids)]

    async def unprepare(self, claim: ClaimRef) -> None:
        self.unprepared.append(claim.uid)
        self.netns_at_unprepare.append(set(os.listdir(pod_sandbox.NETNS_DIR)))
        remove_claim_spec(self.layout.cdi_dir, claim.uid)

    async def attach(self, request: AttachRequest) -> AttachResult:
        if self.attach_error:
            raise AttachError(self.attach_error)
        self.attached.append(request)
        return AttachResult(("net1",))


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, limit: float = 60) -> T:
    """Poll ``probe`` until it returns something truthy, for at most ``limit`` seconds."""
    deadline = asyncio.get_running_loop().time() + limit
    last: T | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@dataclass
class Harness:
    cluster: DevCluster
    namespace: str
    layout: NodeLayout
    agent: FakeAgent
    kube: KubeClient
    prefix: str
    plugin: KubeletPlugin | None = None
    attach_server: AttachServer | None = None

    async def start_plugin(self) -> None:
        locks = ClaimLocks()
        config = KubeletPluginConfig(
            registrar_dir=self.layout.registrar_dir, plugins_dir=self.layout.plugins_dir
        )
        self.plugin = KubeletPlugin(self.agent, config, locks=locks)
        await self.plugin.start()
        self.attach_server = AttachServer(self.agent, self.agent.attach_socket, locks=locks)
        await self.attach_server.start()

    async def stop_plugin(self) -> None:
        if self.attach_server is not None:
            await self.attach_server.stop()
        if self.plugin is not None:
            await self.plugin.stop()

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.cluster.kubectl(*args, "-o", "json").stdout)

    def create_allocated_claim(self, name: str = "claim") -> dict[str, Any]:
        self.cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "resource.k8s.io/v1",
                    "kind": "ResourceClaim",
                    "metadata": {"name": name, "namespace": self.namespace},
                    "spec": {
                        "devices": {
                            "requests": [
                                {"name": "vf", "exactly": {"deviceClassName": DRIVER_NAME}}
                            ]
                        }
                    },
                }
            ),
        )
        allocation = {
            "devices": {
                "results": [
                    {"request": "vf", "driver": DRIVER_NAME, "pool": NODE, "device": DEVICE}
                ]
            },
            "nodeSelector": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [NODE]}]}
                ]
            },
        }
        self.cluster.kubectl(
            "patch", "resourceclaim", name, "-n", self.namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": {"allocation": allocation}}),
        )  # fmt: skip
        result: dict[str, Any] = self.kubectl_json(
            "get", "resourceclaim", name, "-n", self.namespace
        )
        return result

    def create_pod(self, name: str, claim: str = "claim", node_name: str = "") -> dict[str, Any]:
        spec: dict[str, Any] = {
            "containers": [
                {
                    "name": "ctr0",
                    "image": "quay.io/schseba/toolbox:latest",
                    "command": ["/bin/bash", "-c", "sleep INF"],
                    "resources": {"claims": [{"name": "vf"}]},
                }
            ],
            "resourceClaims": [{"name": "vf", "resourceClaimName": claim}],
        }
        if node_name:
            spec["nodeName"] = node_name
        else:
            spec["nodeSelector"] = {"kubernetes.io/hostname": NODE}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
        result: dict[str, Any] = self.kubectl_json("get", "pod", name, "-n", self.namespace)
        return result

    async def pod(self, name: str) -> dict[str, Any] | None:
        return await self.kube.get_pod(self.namespace, name)

    async def running(self, name: str) -> dict[str, Any] | None:
        pod = await self.pod(name)
        return pod if pod and pod.get("status", {}).get("phase") == "Running" else None

    def events(self, pod: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kubectl_json(
            "get", "events", "-n", self.namespace, "--field-selector", f"involvedObject.name={pod}"
        )["items"]
        return items

    async def event(self, pod: str, reason: str) -> dict[str, Any] | None:
        found = [e for e in self.events(pod) if e["reason"] == reason]
        return found[-1] if found else None

    def netns(self, pod: str) -> str:
        return pod_sandbox.pod_netns_name(self.namespace, pod, self.prefix)


@pytest_asyncio.fixture
async def harness(cluster: DevCluster, namespace: str) -> AsyncIterator[Harness]:
    """Emulator for sim-node-1 in this event loop, node dirs under /run, D's servers ready."""
    if os.geteuid() != 0:
        pytest.fail("the node emulation creates network namespaces: run the tests as root")
    cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "base" / "deviceclass.yaml"))
    root = RUNTIME_BASE / f"t-{secrets.token_hex(4)}"
    layout = NodeLayout(root, NODE)
    layout.create()
    prefix = f"t{secrets.token_hex(2)}-"
    kube = await KubeClient.from_kubeconfig(cluster.kubeconfig)
    h = Harness(cluster, namespace, layout, FakeAgent(layout), kube, prefix)
    emulator = NodeEmulator(kube, [layout], netns_prefix=prefix)
    stop = asyncio.Event()
    task = asyncio.create_task(emulator.run(stop))
    try:
        yield h
    finally:
        try:
            cluster.kubectl("delete", "pods", "--all", "-n", namespace, "--wait=false", check=False)
            await eventually(
                lambda: _no_pods(h), "the emulator to finish deleting the pods", limit=30
            )
        finally:
            stop.set()
            await task
            try:
                await h.stop_plugin()
            finally:
                await kube.close()
                sweep([layout], netns_prefix=prefix)
                shutil.rmtree(root, ignore_errors=True)


async def _no_pods(h: Harness) -> bool:
    pods = await h.kube.list_pods()
    return not [p for p in pods[0] if p["metadata"]["namespace"] == h.namespace]


async def test_pod_runs_only_after_prepare_and_hook_then_teardown_undoes_all(
    harness: Harness,
) -> None:
    h = harness
    await h.start_plugin()
    claim = h.create_allocated_claim()
    h.create_pod("pod0")

    pod = await eventually(lambda: h.running("pod0"), "pod0 Running")

    uid = claim["metadata"]["uid"]
    assert h.agent.prepared == [uid]
    [attach] = h.agent.attached
    assert attach.claim_uid == uid
    # The hook got the sandbox process's host pid: it lives in the pod's named netns.
    assert os.stat(attach.netns).st_ino == os.stat(f"/var/run/netns/{h.netns('pod0')}").st_ino
    assert attach.annotations["io.kubernetes.cri.sandbox-name"] == "pod0"
    assert attach.annotations["io.kubernetes.cri.sandbox-uid"] == pod["metadata"]["uid"]
    assert _has_oci_config(attach.bundle)
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    assert pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    assert pod["status"]["podIP"].startswith("10.244.1.")
    reasons = [e["reason"] for e in h.events("pod0")]
    assert "Created" in reasons and "Started" in reasons
    registration = h.plugin.registration_status if h.plugin else None
    assert registration is not None and registration.registered

    pid = attach.pid
    h.cluster.kubectl("delete", "pod", "pod0", "-n", h.namespace, "--wait=false")
    await eventually(lambda: _gone(h, "pod0"), "pod0 deleted")
    assert h.agent.unprepared == [uid]
    # The kubelet's order: the sandbox (and its netns) is gone before unprepare.
    assert h.netns("pod0") not in h.agent.netns_at_unprepare[0]
    assert pod_sandbox.process_start_time(pid) is None
    assert not pod_sandbox.netns_exists(h.netns("pod0"))
    # The claim stays allocated and is prepared again for the next pod.
    h.create_pod("pod1")
    await eventually(lambda: h.running("pod1"), "pod1 Running")
    assert h.agent.prepared == [uid, uid]


def _has_oci_config(bundle: str) -> bool:
    return Path(bundle, "config.json").is_file()


async def _gone(h: Harness, name: str) -> bool:
    return await h.pod(name) is None


async def test_unregistered_driver_is_a_pod_event_and_the_pod_waits(harness: Harness) -> None:
    h = harness
    h.create_allocated_claim()
    h.create_pod("pod0")

    event = await eventually(
        lambda: h.event("pod0", "FailedPrepareDynamicResources"), "the prepare failure event"
    )
    assert event["type"] == "Warning"
    assert event["message"] == f"DRA driver {DRIVER_NAME} is not registered"
    assert event["source"]["component"] == "sriov-dra-node-emulator"
    pod = await h.pod("pod0")
    assert pod is not None and pod["status"]["phase"] == "Pending"
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ContainerCreating"
    assert not pod_sandbox.netns_exists(h.netns("pod0"))

    await h.start_plugin()
    await eventually(lambda: h.running("pod0"), "pod0 Running once the plugin registered")


async def test_plugin_prepare_error_is_reported_with_its_message(harness: Harness) -> None:
    h = harness
    h.agent.prepare_error = "VF 0000:00:08.1 is prepared for claim other/claim"
    await h.start_plugin()
    claim = h.create_allocated_claim()
    h.create_pod("pod0")

    event = await eventually(
        lambda: h.event("pod0", "FailedPrepareDynamicResources"), "the prepare failure event"
    )
    uid = claim["metadata"]["uid"]
    assert event["message"] == (
        "NodePrepareResources failed for ResourceClaim claim: prepare claim "
        f"{h.namespace}/claim ({uid}): VF 0000:00:08.1 is prepared for claim other/claim"
    )
    h.agent.prepare_error = ""
    await eventually(lambda: h.running("pod0"), "pod0 Running after the retry")


async def test_hook_failure_keeps_the_pod_creating_with_the_hook_error(harness: Harness) -> None:
    h = harness
    h.agent.attach_error = "IPAM host-local: no IP addresses available in range set"
    await h.start_plugin()
    claim = h.create_allocated_claim()
    h.create_pod("pod0")

    event = await eventually(
        lambda: h.event("pod0", "FailedCreatePodSandBox"), "the hook failure event"
    )
    uid = claim["metadata"]["uid"]
    assert event["type"] == "Warning"
    assert f"error running createRuntime hook #0 ({HOOK}): exit status 1" in event["message"]
    assert f"sriov-dra hook: claim {uid}" in event["message"]
    assert "no IP addresses available in range set" in event["message"]
    pod = await h.pod("pod0")
    assert pod is not None and pod["status"]["phase"] == "Pending"

    h.agent.attach_error = ""
    await eventually(lambda: h.running("pod0"), "pod0 Running after the retry")
    assert len(h.agent.attached) == 1


async def test_pod_not_in_reserved_for_is_refused_like_the_kubelet_does(harness: Harness) -> None:
    h = harness
    await h.start_plugin()
    h.cluster.kubectl(
        "create", "-n", h.namespace, "-f", "-",
        input=json.dumps(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaim",
                "metadata": {"name": "unallocated"},
                "spec": {
                    "devices": {
                        "requests": [{"name": "vf", "exactly": {"deviceClassName": DRIVER_NAME}}]
                    }
                },
            }
        ),
    )  # fmt: skip
    claim = h.kubectl_json("get", "resourceclaim", "unallocated", "-n", h.namespace)
    # Bound by hand, past the scheduler: nobody allocated or reserved the claim for it.
    # (An allocated claim would be reserved by the resourceclaim controller for such
    # a pod, so an unallocated one is the way to reach the kubelet's check.)
    pod = h.create_pod("pod0", claim="unallocated", node_name=NODE)

    event = await eventually(
        lambda: h.event("pod0", "FailedPrepareDynamicResources"), "the refusal event"
    )
    assert event["message"] == (
        f"pod pod0 ({pod['metadata']['uid']}) is not allowed to use ResourceClaim unallocated "
        f"({claim['metadata']['uid']})"
    )
    assert h.agent.prepared == []
    assert not pod_sandbox.netns_exists(h.netns("pod0"))
