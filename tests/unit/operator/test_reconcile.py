"""The claim reconciler end to end without a cluster: its writes go to an in-memory store.

The store plays the apiserver's part that matters here: every write carries the
resourceVersion it was based on and is refused with 409 (:class:`StaleClaim`)
when the stored claim has moved on. Events go through the real
:class:`StateEvents` (its de-duplication is under test too) into a list.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import Callable
from typing import Any, cast

import pytest
from sriov_dra.constants import (
    ALLOCATED_CONDITION,
    DRIVER_NAME,
    FINALIZER,
    NODE_LABEL,
    PREFIX,
    RELEASED_CONDITION,
    VFCONFIG_API_VERSION,
    VFCONFIG_KIND,
)
from sriov_dra.nad import device_id_replaced, parse_nad_config, unrun_plugins_warning
from sriov_dra_kube.client import KubeApi
from sriov_dra_kube.events import EventRecorder, StateEvents, every_posted, last_posted
from sriov_dra_operator.cache import ClusterCache
from sriov_dra_operator.claims import ClaimReconciler
from sriov_dra_operator.controller import COMPONENT
from sriov_dra_operator.metrics import OperatorMetrics
from sriov_dra_operator.settings import OperatorSettings
from sriov_dra_operator.status_writer import ClaimWriter, StaleClaim

Body = dict[str, Any]


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


class StoreWriter(ClaimWriter):
    """ClaimWriter's real patches applied to a dict, refused when the resourceVersion is stale."""

    def __init__(self) -> None:
        self.store: dict[str, Body] = {}
        self.versions = itertools.count(100)
        self.status_writes: list[Body] = []
        """Every status patch that was attempted, refused or not."""
        self.before_status_write: Callable[[], None] | None = None
        """Runs once before the next status write: someone else's change lands first."""

    def put(self, body: Body) -> Body:
        """Store ``body`` as a new version (someone else's write); returns the stored copy."""
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self.versions))
        self.store[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    async def _patch(self, claim: Any, body: Body, *, status: bool) -> Body:
        if status:
            self.status_writes.append(copy.deepcopy(body))
            hook, self.before_status_write = self.before_status_write, None
            if hook is not None:
                hook()
        name = claim["metadata"]["name"]
        current = self.store.get(name)
        if current is None:
            raise StaleClaim(404)
        if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise StaleClaim(409)
        patch = copy.deepcopy(body)
        del patch["metadata"]["resourceVersion"]
        return self.put(merge(current, patch))

    async def read(self, claim: Any) -> Body | None:
        found = self.store.get(claim["metadata"]["name"])
        return copy.deepcopy(found) if found else None


class Events:
    """Stands in for KubeApi's create_event: keeps the Events as the apiserver stores them."""

    def __init__(self) -> None:
        self.bodies: list[Body] = []
        self.versions = itertools.count(1)

    async def create_event(self, namespace: str, body: Body) -> Body:
        stored = copy.deepcopy(body)
        version = str(next(self.versions))
        stored["metadata"].update(name=f"{body['metadata']['generateName']}{version}",
                                  resourceVersion=version)  # fmt: skip
        self.bodies.append(stored)
        return copy.deepcopy(stored)

    @property
    def posted(self) -> list[tuple[str, str, str, str]]:
        """(claim, type, reason, message) of each Event, in order."""
        return [
            (b["involvedObject"]["name"], b["type"], b["reason"], b["message"]) for b in self.bodies
        ]


class Queue:
    def __init__(self) -> None:
        self.added: list[str] = []
        self.delayed: list[tuple[str, float]] = []

    def add(self, uid: str) -> None:
        self.added.append(uid)

    def add_after(self, uid: str, delay: float) -> None:
        self.delayed.append((uid, delay))


class Nodes:
    """The apiserver's answer to GET node: these exist."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.asked: list[str] = []

    async def exists(self, name: str) -> bool | None:
        self.asked.append(name)
        return name in self.names


VF0, VF1 = "0000-08-00-2", "0000-08-00-3"
"""The simulated node's VFs (device names are made from PCI addresses)."""
CLASS = {
    "metadata": {"name": DRIVER_NAME},
    "spec": {"selectors": [{"cel": {"expression": f"device.driver == '{DRIVER_NAME}'"}}]},
}


def slice_(node: str, vfs: int) -> Body:
    return {
        "metadata": {"name": f"{node}-slice", "uid": f"{node}-uid", "resourceVersion": "1"},
        "spec": {
            "driver": DRIVER_NAME,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": [{"name": f"0000-08-00-{i + 2}", "attributes": {}} for i in range(vfs)],
        },
    }


def claim_body(
    name: str, *, class_name: str = DRIVER_NAME, nad: str = "", config: bool = True
) -> Body:
    devices: Body = {"requests": [{"name": "vf", "exactly": {"deviceClassName": class_name}}]}
    if config:
        parameters: Body = {"apiVersion": VFCONFIG_API_VERSION, "kind": VFCONFIG_KIND}
        if nad:
            parameters["netAttachDefName"] = nad
        devices["config"] = [
            {"requests": ["vf"], "opaque": {"driver": DRIVER_NAME, "parameters": parameters}}
        ]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {"devices": devices},
    }


def allocation(node: str, device: str) -> Body:
    return {
        "devices": {
            "results": [{"request": "vf", "driver": DRIVER_NAME, "pool": node, "device": device}]
        },
        "nodeSelector": {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
            ]
        },
    }


def devices_of(body: Body | None) -> list[str]:
    results = (((body or {}).get("status") or {}).get("allocation") or {}).get("devices") or {}
    return [r["device"] for r in results.get("results") or []]


class World:
    """A reconciler wired to the store, the recorded Events and a queue that only records."""

    def __init__(self) -> None:
        self.writer = StoreWriter()
        self.events = Events()
        recorder = self.new_recorder()
        self.queue = Queue()
        self.nodes = Nodes("node-a")
        self.metrics = OperatorMetrics()
        self.cache = ClusterCache()
        self.cache.upsert_class(CLASS)
        self.cache.upsert_slice(slice_("node-a", 2))
        self.reconciler = ClaimReconciler(
            settings=OperatorSettings(),
            cache=self.cache,
            writer=self.writer,
            events=recorder,
            metrics=self.metrics,
            requeue=self.queue,
            nodes=self.nodes,
        )
        self.recorder = recorder

    def new_recorder(self) -> StateEvents:
        """The operator's Events, posting into :attr:`events`."""
        return StateEvents(
            EventRecorder(cast(KubeApi, self.events), component=COMPONENT, instance="test")
        )

    def restart_events(self) -> None:
        """What a restarted operator does: a fresh recorder seeded from the Events listed."""
        self.recorder = self.new_recorder()
        self.recorder.seed(
            last_posted(self.events.bodies, component=COMPONENT),
            every_posted(self.events.bodies, component=COMPONENT),
        )
        self.reconciler.events = self.recorder

    def create(self, body: Body) -> Body:
        """A claim created by a user and seen by the watch."""
        stored = self.writer.put(body)
        self.reconciler.record(stored)
        return stored

    def write(self, body: Body) -> Body:
        """Someone else's write, seen by the watch."""
        return self.create(body)

    async def reconcile(self, name: str) -> None:
        await self.reconciler.reconcile(f"uid-{name}")
        await asyncio.gather(*self.recorder._background)

    def stored(self, name: str) -> Body:
        return self.writer.store[name]

    def reasons(self, claim: str) -> list[str]:
        return [reason for name, _, reason, _ in self.events.posted if name == claim]

    def conditions(self, claim: str) -> list[tuple[str, str, str]]:
        """(device, condition type, message) on the stored claim's ``status.devices``."""
        entries = (self.stored(claim).get("status") or {}).get("devices") or []
        return [(e["device"], c["type"], c["message"]) for e in entries for c in e["conditions"]]


@pytest.fixture
def world() -> World:
    return World()


# -- which claims get DeviceClassNotFound -----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(claim_body("gpu", class_name="gpu-missing", config=False), [], id="gpu-claim"),
        pytest.param(
            claim_body("vf", class_name="vf-missing"),
            [
                (
                    "vf",
                    "Warning",
                    "DeviceClassNotFound",
                    "spec.devices.requests[0].exactly.deviceClassName: DeviceClass 'vf-missing' "
                    "does not exist; fix: create DeviceClass 'vf-missing' with a selector for "
                    f"driver {DRIVER_NAME}, or correct the name (the class this project ships is "
                    f"'{DRIVER_NAME}': kubectl apply -f manifests/base/deviceclass.yaml); "
                    "the claim is "
                    "allocated as soon as the class exists",
                )
            ],
            id="claim-with-our-config",
        ),
    ],
)
async def test_a_missing_class_is_told_only_to_claims_meant_for_us(
    world: World, body: Body, expected: list[tuple[str, str, str, str]]
) -> None:
    world.create(body)
    await world.reconcile(body["metadata"]["name"])
    assert world.events.posted == expected
    assert world.writer.status_writes == []
    # Either way a DeviceClass created later kicks it.
    assert body["metadata"]["uid"] in world.reconciler.waiting.for_devices


# -- an allocation explains itself in the same write ------------------------------------------


async def test_an_allocation_is_explained_by_a_condition_written_with_it(world: World) -> None:
    world.create(claim_body("one"))
    await world.reconcile("one")
    [write] = world.writer.status_writes
    [entry] = write["status"]["devices"]
    assert (entry["driver"], entry["pool"], entry["device"]) == (DRIVER_NAME, "node-a", VF0)
    assert devices_of(write) == [VF0]
    assert world.conditions("one") == [
        (
            VF0,
            ALLOCATED_CONDITION,
            f"allocated VF 0000:08:00.2 (vfIndex 0, device node-a/{VF0}) of PF ? as vfnet0 "
            "on node node-a",
        )
    ]
    # A Normal Event would be a third write for every claim; nothing is posted.
    assert world.events.posted == []


# -- a refused status write is re-read and decided again --------------------------------------


def _write_conflicts(world: World) -> float:
    value = world.metrics.registry.get_sample_value("sriov_dra_operator_write_conflicts_total")
    return float(value or 0)


async def test_a_stale_status_write_is_recomputed_from_the_fresh_claim(world: World) -> None:
    world.create(claim_body("mine"))
    rival = world.create(claim_body("rival", config=False))

    def rival_takes_vf0_and_mine_is_relabelled() -> None:
        world.write(dict(rival, status={"allocation": allocation("node-a", VF0)}))
        mine = copy.deepcopy(world.stored("mine"))
        mine["metadata"].setdefault("labels", {})["team"] = "blue"
        world.writer.put(mine)

    world.writer.before_status_write = rival_takes_vf0_and_mine_is_relabelled
    await world.reconcile("mine")
    assert devices_of(world.stored("mine")) == []
    assert _write_conflicts(world) == 1
    assert world.queue.added == ["uid-mine"]

    await world.reconcile("mine")
    refused, written = world.writer.status_writes
    assert devices_of(refused) == [VF0]
    assert devices_of(written) == [VF1]
    assert written["metadata"]["resourceVersion"] != refused["metadata"]["resourceVersion"]
    assert devices_of(world.stored("mine")) == [VF1]
    assert world.stored("mine")["metadata"]["labels"]["team"] == "blue"
    assert devices_of(world.stored("rival")) == [VF0]


async def test_a_stale_status_write_never_overwrites_an_allocation_made_meanwhile(
    world: World,
) -> None:
    world.create(claim_body("raced"))

    def scheduler_allocates_it() -> None:
        body = copy.deepcopy(world.stored("raced"))
        world.writer.put(dict(body, status={"allocation": allocation("node-a", VF1)}))

    world.writer.before_status_write = scheduler_allocates_it
    await world.reconcile("raced")
    await world.reconcile("raced")
    assert len(world.writer.status_writes) == 1
    assert devices_of(world.stored("raced")) == [VF1]
    assert [k.device for k in world.cache.devices_of("uid-raced")] == [VF1]
    assert _write_conflicts(world) == 1


# -- a NAD whose chained plugins never run -----------------------------------------------------


CHAINED = json.dumps(
    {
        "cniVersion": "1.0.0",
        "name": "chained",
        "plugins": [{"type": "sriov", "vlan": 10}, {"type": "tuning"}, {"type": "sbr"}],
    }
)


def nad(name: str, config: str) -> Body:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"config": config}}


async def test_plugins_after_sriov_get_one_warning_per_claim_and_the_claim_is_allocated(
    world: World,
) -> None:
    world.cache.upsert_nad(nad("chained", CHAINED))
    warning = unrun_plugins_warning(parse_nad_config(CHAINED, nad="ns/chained"))
    assert warning is not None
    for name in ("first", "second", "third"):
        world.create(claim_body(name, nad="chained"))
    for name in ("first", "second", "third", "third"):
        await world.reconcile(name)
    assert devices_of(world.stored("first")) == [VF0]
    assert devices_of(world.stored("second")) == [VF1]
    assert world.reasons("first") == ["NadPluginsNotRun"]
    assert [kind for _, kind, _ in world.conditions("first")] == [ALLOCATED_CONDITION]
    # The third waits for a VF: reconciled again, it is told nothing twice.
    assert world.reasons("third") == ["NadPluginsNotRun", "NoDeviceAvailable"]
    told = [(kind, message) for name, kind, reason, message in world.events.posted
            if reason == "NadPluginsNotRun"]  # fmt: skip
    assert told == [("Warning", warning)] * 3
    # Nor after a restart, although its last Event is NoDeviceAvailable.
    world.restart_events()
    await world.reconcile("third")
    assert world.reasons("third") == ["NadPluginsNotRun", "NoDeviceAvailable"]
    # A NAD changed to chain another plugin is a new warning, and only that: the
    # unchanged NoDeviceAvailable is not repeated after it.
    world.cache.upsert_nad(nad("chained", CHAINED.replace("sbr", "bandwidth")))
    await world.reconcile("third")
    assert world.reasons("third")[2:] == ["NadPluginsNotRun"]


# -- a deleted claim whose node agent never answers --------------------------------------------


async def _allocated_then_deleted(world: World, name: str) -> Body:
    world.create(claim_body(name))
    await world.reconcile(name)
    body = copy.deepcopy(world.stored(name))
    assert FINALIZER in body["metadata"]["finalizers"]
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return world.write(body)


async def test_a_deleted_claim_explains_its_wait_for_the_agent(world: World) -> None:
    world.cache.nodes = {"node-a"}
    await _allocated_then_deleted(world, "gone")
    world.reconciler.release_notice_after = 3600.0
    await world.reconcile("gone")
    assert world.reasons("gone") == []
    assert [uid for uid, _ in world.queue.delayed] == ["uid-gone"]
    world.reconciler.release_notice_after = 0.0
    await world.reconcile("gone")
    await world.reconcile("gone")
    [(_, kind, reason, message)] = world.events.posted
    assert (kind, reason) == ("Normal", "AwaitingRelease")
    assert message == (
        f"the claim is deleted; device node-a/{VF0} stays allocated until the sriov-dra agent on "
        f"node node-a has detached and reset it and set condition {RELEASED_CONDITION} on its "
        "status.devices entries of claim uid-gone; then the allocation and finalizer "
        f"{FINALIZER} go; fix: check the agent "
        "pod on node node-a (kubectl -n sriov-dra get pods -o wide --field-selector "
        "spec.nodeName=node-a) and its log; if node node-a is gone for good, delete its Node "
        "object (kubectl delete node node-a) and the operator releases the claim without the "
        "agent"
    )
    assert devices_of(world.stored("gone")) == [VF0]
    assert world.nodes.asked == []


def _released_entry(device: str, status: str = "True") -> dict[str, Any]:
    condition = {"type": RELEASED_CONDITION, "status": status, "reason": "Released"}
    return {"driver": DRIVER_NAME, "pool": "node-a", "device": device, "conditions": [condition]}


@pytest.mark.parametrize(
    ("annotations", "devices", "handed_on"),
    [
        pytest.param({f"{PREFIX}/released": "uid-gone"}, [], False, id="tenant-annotation"),
        pytest.param({}, [_released_entry(VF0, status="False")], False, id="not-yet"),
        pytest.param({}, [_released_entry(VF0)], True, id="agent-condition"),
    ],
)
async def test_a_deleted_claims_vf_is_handed_on_only_on_the_agents_released_condition(
    world: World, annotations: dict[str, str], devices: list[dict[str, Any]], handed_on: bool
) -> None:
    world.cache.nodes = {"node-a"}
    body = copy.deepcopy(await _allocated_then_deleted(world, "gone"))
    body["metadata"].setdefault("annotations", {}).update(annotations)
    body["status"]["devices"] = devices
    world.write(body)
    await world.reconcile("gone")
    stored = world.stored("gone")
    assert devices_of(stored) == ([] if handed_on else [VF0])
    assert (FINALIZER in (stored["metadata"].get("finalizers") or [])) is not handed_on


@pytest.mark.parametrize(
    ("known", "apiserver", "released"),
    [
        pytest.param(set(), set(), True, id="node-gone"),
        pytest.param(set(), {"node-a"}, False, id="watch-lags-apiserver-has-it"),
        pytest.param(None, set(), False, id="nodes-not-watched"),
    ],
)
async def test_a_deleted_claim_of_a_removed_node_is_released_without_the_agent(
    world: World, known: set[str] | None, apiserver: set[str], released: bool
) -> None:
    await _allocated_then_deleted(world, "orphan")
    world.cache.nodes = known
    world.nodes.names = apiserver
    world.reconciler.release_notice_after = 0.0
    await world.reconcile("orphan")
    stored = world.stored("orphan")
    if not released:
        assert devices_of(stored) == [VF0]
        assert FINALIZER in stored["metadata"]["finalizers"]
        assert world.reasons("orphan") == ["AwaitingRelease"]
        return
    assert devices_of(stored) == []
    assert FINALIZER not in (stored["metadata"].get("finalizers") or [])
    assert NODE_LABEL not in (stored["metadata"].get("labels") or {})
    [(_, kind, reason, message)] = world.events.posted
    assert (kind, reason) == ("Warning", "ReleasedWithoutAgent")
    assert message == (
        "node node-a no longer exists (its Node object was deleted), so no node agent will "
        f"release device node-a/{VF0}: the VF went with the node; released without the agent: "
        f"allocation cleared, finalizer {FINALIZER} removed"
    )


# -- other drivers' devices are not ours to police ---------------------------------------------


async def test_two_claims_sharing_another_drivers_device_are_left_alone(world: World) -> None:
    # Drivers may hand one device to several claims (e.g. devices that allow multiple
    # allocations); only our driver's devices are ours to keep unique.
    shared = {
        "devices": {
            "results": [
                {"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu0"}
            ]
        }
    }
    for name in ("gpu-a", "gpu-b"):
        body = claim_body(name, class_name="gpu", config=False)
        body["status"] = {"allocation": copy.deepcopy(shared)}
        world.create(body)
    for name in ("gpu-a", "gpu-b"):
        await world.reconcile(name)
    assert world.events.posted == []
    assert world.writer.status_writes == []
    assert [devices_of(world.stored(n)) for n in ("gpu-a", "gpu-b")] == [["gpu0"], ["gpu0"]]


# -- an error nobody expected is told on the claim, counted, and retried with backoff ---------


def _reconcile_errors(world: World, exception: str) -> float:
    value = world.metrics.registry.get_sample_value(
        "sriov_dra_operator_reconcile_errors_total", {"exception": exception}
    )
    return float(value or 0)


async def test_an_unexpected_error_is_a_warning_a_metric_and_a_retry_with_backoff(
    world: World,
) -> None:
    world.create(claim_body("mine"))
    world.create(claim_body("other"))

    def fail() -> None:
        raise RuntimeError("the disk is on fire")

    for expected_delay in (10.0, 20.0):
        world.writer.before_status_write = fail
        await world.reconcile("mine")
        assert world.queue.delayed[-1] == ("uid-mine", expected_delay)
    assert _reconcile_errors(world, "RuntimeError") == 2
    # Told once while the error stays the same, not at every retry.
    [(_, kind, reason, message)] = world.events.posted
    assert (kind, reason) == ("Warning", "ReconcileFailed")
    assert message == (
        "the operator failed on this claim with RuntimeError: the disk is on fire; it is "
        "retried after 10 s, then at growing intervals up to every 300 s; fix: check what the "
        "claim names (DeviceClass, VfConfig, NAD, the ResourceSlices of its devices) for a "
        "value the operator does not expect, and report the operator's log line 'reconcile "
        "failed' as a bug"
    )
    # The operator keeps serving the others, and the failed claim once the error is gone,
    # after which its backoff starts over.
    await world.reconcile("other")
    await world.reconcile("mine")
    assert devices_of(world.stored("other")) == [VF0]
    assert devices_of(world.stored("mine")) == [VF1]
    assert world.reasons("mine") == ["ReconcileFailed"]
    assert [kind for _, kind, _ in world.conditions("mine")] == [ALLOCATED_CONDITION]
    assert world.reconciler.backoff.next_delay("uid-mine") == 10.0


# -- a NAD written for the classic stack: deviceID -------------------------------------------


CLASSIC = json.dumps(
    {"cniVersion": "1.0.0", "name": "classic", "type": "sriov", "deviceID": "0000:5e:00.9"}
)


async def test_a_nad_with_a_device_id_is_accepted_and_the_claim_told_its_vf_is_used(
    world: World,
) -> None:
    world.cache.upsert_nad(nad("classic", CLASSIC))
    world.create(claim_body("classic", nad="classic"))
    await world.reconcile("classic")
    assert devices_of(world.stored("classic")) == [VF0]
    told = [(kind, message) for name, kind, reason, message in world.events.posted
            if reason == "NadDeviceIdReplaced"]  # fmt: skip
    expected = device_id_replaced(parse_nad_config(CLASSIC, nad="ns/classic"), "vf", "0000:08:00.2")
    assert told == [("Normal", expected)]
    assert "0000:5e:00.9" in str(expected) and "0000:08:00.2" in str(expected)
    assert world.reasons("classic") == ["NadDeviceIdReplaced"]


# -- the node label on claims someone else allocated ------------------------------------------


def template_claim(name: str) -> Body:
    """A claim generated for a pod from a template: the scheduler's, never ours to allocate."""
    body = claim_body(name)
    body["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "Pod", "name": "pod", "uid": "pod-uid", "controller": True}
    ]
    body["metadata"]["finalizers"] = ["resource.kubernetes.io/delete-protection"]
    return body


async def test_a_claim_the_scheduler_allocated_gets_its_nodes_label_and_loses_it(
    world: World,
) -> None:
    body = template_claim("tpl")
    body["status"] = {"allocation": allocation("node-a", VF0)}
    world.create(body)
    await world.reconcile("tpl")
    stored = world.stored("tpl")
    assert stored["metadata"]["labels"] == {NODE_LABEL: "node-a"}
    # Only the label: the claim stays the scheduler's (no finalizer, no annotation, no Event).
    assert FINALIZER not in stored["metadata"]["finalizers"]
    assert "annotations" not in stored["metadata"]
    assert world.writer.status_writes == []
    assert world.events.posted == []

    world.write(dict(stored, status={}))
    await world.reconcile("tpl")
    assert NODE_LABEL not in (world.stored("tpl")["metadata"].get("labels") or {})


async def test_a_removed_label_on_an_allocated_claim_of_ours_comes_back(world: World) -> None:
    world.create(claim_body("mine"))
    await world.reconcile("mine")
    allocated = world.stored("mine")
    assert allocated["metadata"]["labels"] == {NODE_LABEL: "node-a"}
    world.write(dict(allocated, metadata=dict(allocated["metadata"], labels={})))
    await world.reconcile("mine")
    assert world.stored("mine")["metadata"]["labels"] == {NODE_LABEL: "node-a"}
    assert devices_of(world.stored("mine")) == [VF0]
