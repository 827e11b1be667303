"""Event correlation: an unchanged failure is one Event whose count goes up, not N Events."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from sriov_dra_kube.events import EventRecorder, event_body

CLAIM: dict[str, Any] = {"metadata": {"name": "c", "namespace": "ns", "uid": "u-1"}}
OTHER: dict[str, Any] = {"metadata": {"name": "d", "namespace": "ns", "uid": "u-2"}}


class EventStore:
    """The two Event calls of KubeApi over a dict, with the API server's answers."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.fail_create = False
        self._names = itertools.count(1)

    async def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        if self.fail_create:
            raise ApiException(status=500, reason="etcd unavailable")
        name = f"{body['metadata']['generateName']}{next(self._names)}"
        event = {**body, "metadata": {"name": name, "namespace": namespace}}
        self.events[name] = event
        return event

    async def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("patch")
        if name not in self.events:
            raise ApiException(status=404, reason=f'events "{name}" not found')
        self.events[name].update(patch)
        return self.events[name]

    def summary(self) -> list[tuple[str, str, int]]:
        return sorted((e["reason"], e["message"], e["count"]) for e in self.events.values())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> EventStore:
    return EventStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recorder(store: EventStore, clock: Clock) -> EventRecorder:
    return EventRecorder(
        store,  # type: ignore[arg-type]
        component="sriov-dra-agent",
        instance="n1",
        host="n1",
        repeat_interval=600,
        forget_after=3600,
        clock=clock,
    )


async def test_unchanged_failure_is_posted_once_per_interval(
    recorder: EventRecorder, store: EventStore, clock: Clock
) -> None:
    for _ in range(20):  # every 15 s resync for 5 minutes
        await recorder.warning(CLAIM, "VfReleaseFailed", "restoring VFs failed: gone")
        clock.now += 15
    assert store.calls == ["create"]
    assert store.summary() == [("VfReleaseFailed", "restoring VFs failed: gone", 1)]

    clock.now += 600  # past the interval: the next repeat bumps the Event's count
    await recorder.warning(CLAIM, "VfReleaseFailed", "restoring VFs failed: gone")
    assert store.calls == ["create", "patch"]
    assert store.summary() == [("VfReleaseFailed", "restoring VFs failed: gone", 21)]
    (event,) = store.events.values()
    assert event["type"] == "Warning" and event["lastTimestamp"] >= event["firstTimestamp"]


@pytest.mark.parametrize(
    ("claim", "warning", "reason", "message"),
    [
        (CLAIM, True, "VfReleaseFailed", "restoring VFs failed: busy"),
        (CLAIM, True, "VfProgrammingFailed", "restoring VFs failed: gone"),
        (CLAIM, False, "VfReleaseFailed", "restoring VFs failed: gone"),
        (OTHER, True, "VfReleaseFailed", "restoring VFs failed: gone"),
    ],
    ids=["message-changed", "reason-changed", "type-changed", "other-claim"],
)
async def test_a_different_event_is_posted_at_once(
    recorder: EventRecorder,
    store: EventStore,
    claim: dict[str, Any],
    warning: bool,
    reason: str,
    message: str,
) -> None:
    await recorder.warning(CLAIM, "VfReleaseFailed", "restoring VFs failed: gone")
    await recorder.post(claim, warning=warning, reason=reason, message=message)
    assert store.calls == ["create", "create"]
    assert len(store.events) == 2


async def test_expired_event_is_posted_afresh(
    recorder: EventRecorder, store: EventStore, clock: Clock
) -> None:
    await recorder.warning(CLAIM, "IpamFailed", "no IP addresses available")
    store.events.clear()  # the API server's Event TTL removed it
    clock.now += 601
    await recorder.warning(CLAIM, "IpamFailed", "no IP addresses available")
    assert store.calls == ["create", "patch", "create"]
    assert store.summary() == [("IpamFailed", "no IP addresses available", 1)]


async def test_forgotten_after_a_quiet_hour(
    recorder: EventRecorder, store: EventStore, clock: Clock
) -> None:
    await recorder.warning(CLAIM, "IpamFailed", "no IP addresses available")
    clock.now += 3601
    await recorder.warning(CLAIM, "IpamFailed", "no IP addresses available")
    assert store.calls == ["create", "create"]


async def test_failed_create_is_not_remembered(recorder: EventRecorder, store: EventStore) -> None:
    store.fail_create = True
    await recorder.warning(CLAIM, "IpamFailed", "no IP addresses available")
    store.fail_create = False
    await recorder.warning(CLAIM, "IpamFailed", "no IP addresses available")
    assert store.calls == ["create", "create"]
    assert store.summary() == [("IpamFailed", "no IP addresses available", 1)]


async def test_tracking_is_bounded(store: EventStore, clock: Clock) -> None:
    recorder = EventRecorder(
        store,  # type: ignore[arg-type]
        component="sriov-dra-agent",
        instance="n1",
        max_tracked=3,
        clock=clock,
    )
    for i in range(5):
        clock.now += 1
        await recorder.warning(CLAIM, "IpamFailed", f"failure {i}")
    # The oldest ones were dropped from tracking: a repeat of failure 0 posts again,
    # a repeat of the newest is still only counted.
    await recorder.warning(CLAIM, "IpamFailed", "failure 4")
    await recorder.warning(CLAIM, "IpamFailed", "failure 0")
    assert store.calls == ["create"] * 6


def test_event_names_the_claim_and_node() -> None:
    event = event_body(CLAIM, event_type="Warning", reason="IpamFailed", message="m" * 2000,
                       component="sriov-dra-agent", instance="node-a", host="node-a")  # fmt: skip
    assert event["involvedObject"] == {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "name": "c", "namespace": "ns", "uid": "u-1",
    }  # fmt: skip
    assert event["source"] == {"component": "sriov-dra-agent", "host": "node-a"}
    assert event["reportingInstance"] == "node-a"
    assert len(event["message"]) == 1024


def test_event_on_a_watched_claim_names_its_version_and_no_host() -> None:
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "metadata": {**CLAIM["metadata"], "resourceVersion": "42"},
    }
    event = event_body(claim, event_type="Normal", reason="Allocated", message="allocated",
                       component="sriov-dra-operator", instance="op-0")  # fmt: skip
    assert event["involvedObject"]["resourceVersion"] == "42"
    assert event["source"] == {"component": "sriov-dra-operator"}
    assert event["reportingComponent"] == "sriov-dra-operator"
    assert event["reportingInstance"] == "op-0"


def test_event_on_a_listed_pod_defaults_its_api_version() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "p-1"}}
    event = event_body(pod, kind="Pod", event_type="Warning", reason="Failed", message="x",
                       component="sriov-dra-node-emulator", instance="n", host="n")  # fmt: skip
    assert event["involvedObject"]["apiVersion"] == "v1"
    assert event["involvedObject"]["kind"] == "Pod"
    assert event["metadata"] == {"generateName": "p.", "namespace": "ns"}


async def test_every_repeat_is_written_with_no_repeat_interval(
    store: EventStore, clock: Clock
) -> None:
    recorder = EventRecorder(
        store,  # type: ignore[arg-type]
        component="sriov-dra-node-emulator",
        instance="n1",
        kind="Pod",
        repeat_interval=0,
        clock=clock,
    )
    for _ in range(3):
        await recorder.warning(CLAIM, "FailedCreatePodSandBox", "netns busy")
    assert store.calls == ["create", "patch", "patch"]
    assert store.summary() == [("FailedCreatePodSandBox", "netns busy", 3)]


async def test_create_reports_a_refusal_as_none(recorder: EventRecorder, store: EventStore) -> None:
    store.fail_create = True
    assert await recorder.create(CLAIM, warning=True, reason="R", message="m") is None
    store.fail_create = False
    created = await recorder.create(CLAIM, warning=True, reason="R", message="m")
    assert created is not None and created["reason"] == "R"
