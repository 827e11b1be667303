"""The advertisement policies of this node, kept current by list + watch (the shell).

:class:`~sriov_dra_kube.list_watch.ListWatch` loops keep in memory the
SriovResourcePolicies and DeviceAttributes of each policy namespace (the driver's
own by default; ``--policy-namespaces``) and this node's labels; any change that
can alter the outcome calls ``on_change`` (the slice publisher then republishes at
once). :meth:`AdvertisementPolicies.decide` asks the pure core
(:mod:`sriov_dra.advertisement`) which VFs of an inventory to publish, one
namespace at a time: a namespace's policies select its own DeviceAttributes, and
a VF several namespaces select takes the attributes of the first one listed. A
policy or DeviceAttributes it cannot apply gets a Warning Event and a log line,
once per distinct problem.

Where the CRDs are not installed (404) or RBAC forbids reading them (403, an
older ClusterRole) there are no policies: the no-policy setting decides, and a
404 is retried (the CRDs may come later).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sriov_dra.advertisement import (
    API_GROUP,
    ATTRIBUTES_KIND,
    ATTRIBUTES_PLURAL,
    POLICY_KIND,
    POLICY_PLURAL,
    Advertisement,
    NoPolicyMode,
    Problem,
    VfCandidate,
    decide,
)
from sriov_dra.naming import device_name
from sriov_dra_kube.client import ApiException, KubeApi
from sriov_dra_kube.events import EventRecorder
from sriov_dra_kube.list_watch import ListWatch

from sriov_dra_agent.cluster.slices import vf_device
from sriov_dra_agent.vf.inventory import Inventory

logger = logging.getLogger(__name__)

Body = dict[str, Any]
VERSION = "v1alpha1"
FORBIDDEN = {
    "policy": ("SriovResourcePolicies", "advertising as if there were none"),
    "attributes": ("DeviceAttributes", "policies add no attributes"),
    "node": ("this Node", "its labels are unknown, policies with a nodeSelector may not match"),
}
"""What a 403 on each watched kind costs: (what, the consequence)."""


def candidates(inventory: Inventory) -> list[VfCandidate]:
    """What the policies' filters see of each VF of ``inventory``."""
    return [
        VfCandidate(
            device=device_name(vf.pci_address),
            pci_address=vf.pci_address,
            vendor=vf.vendor,
            device_id=vf.device_id,
            pf_name=vf.pf_name,
            pf_pci_address=vf.pf_pci_address,
            driver=vf.driver,
            link_type=vf.link_type,
        )
        for vf in inventory.vfs()
    ]


def built_in_names(inventory: Inventory) -> frozenset[str]:
    """The attribute names the agent publishes itself on ``inventory``'s VFs."""
    return frozenset(
        name for vf in inventory.vfs() for name in vf_device(vf, inventory.node)["attributes"]
    )


def combined(outcomes: Sequence[Advertisement]) -> Advertisement:
    """One advertisement of several namespaces' (in precedence order): first one wins a VF."""
    devices: dict[str, Mapping[str, Mapping[str, Any]]] = {}
    for outcome in outcomes:
        for device, attributes in outcome.devices.items():
            devices.setdefault(device, attributes)
    return Advertisement(devices, tuple(p for outcome in outcomes for p in outcome.problems))


class _Objects:
    """One watched kind of one policy namespace, by name."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.items: dict[str, Body] = {}

    @staticmethod
    def _state(obj: Body) -> Any:
        return (obj.get("spec"), (obj.get("metadata") or {}).get("labels"))

    def replace(self, items: list[Body]) -> bool:
        fresh = {str(item["metadata"]["name"]): item for item in items}
        changed = {k: self._state(v) for k, v in fresh.items()} != {
            k: self._state(v) for k, v in self.items.items()
        }
        self.items = fresh
        return changed

    def apply(self, kind: str, obj: Body) -> bool:
        name = str(obj["metadata"]["name"])
        if kind == "DELETED":
            return self.items.pop(name, None) is not None
        old = self.items.get(name)
        self.items[name] = obj
        return old is None or self._state(old) != self._state(obj)


class AdvertisementPolicies:
    """Policies, DeviceAttributes and node labels; ``run`` keeps them, ``decide`` uses them."""

    def __init__(
        self,
        api: KubeApi,
        *,
        node: str,
        namespaces: Sequence[str],
        driver: str,
        no_policy: NoPolicyMode,
        component: str,
        on_change: Callable[[], None] = lambda: None,
        watch_timeout_seconds: int = 300,
    ) -> None:
        self.api = api
        self.node = node
        self.namespaces = tuple(namespaces)
        self.driver = driver
        self.no_policy = no_policy
        self.recorders = {
            kind: EventRecorder(api, component=component, instance=node, host=node, kind=kind)
            for kind in (POLICY_KIND, ATTRIBUTES_KIND)
        }
        """Warnings on policies and DeviceAttributes that cannot be applied."""
        self.on_change = on_change
        self.watch_timeout_seconds = watch_timeout_seconds
        self.policies = {ns: _Objects(POLICY_KIND) for ns in self.namespaces}
        self.attributes = {ns: _Objects(ATTRIBUTES_KIND) for ns in self.namespaces}
        self.labels: dict[str, str] = {}
        self._synced = {
            key: asyncio.Event()
            for key in (
                "node",
                *(f"{what}/{ns}" for what in ("policy", "attributes") for ns in self.namespaces),
            )
        }
        self._reported: set[tuple[str, str, str]] = set()

    async def synced(self) -> None:
        """Wait until each kind has been listed once (or found missing or forbidden)."""
        await asyncio.gather(*(event.wait() for event in self._synced.values()))

    async def decide(self, inventory: Inventory) -> Advertisement:
        """Which VFs of ``inventory`` to publish; warns about problems not reported yet."""
        await self.synced()
        vfs = candidates(inventory)
        reserved = built_in_names(inventory)
        inputs = [
            (list(self.policies[ns].items.values()), list(self.attributes[ns].items.values()))
            for ns in self.namespaces
            if self.policies[ns].items
        ]
        # With no policy in any namespace, the no-policy setting decides.
        outcomes = [
            decide(
                node=self.node,
                node_labels=self.labels,
                vfs=vfs,
                policies=policies,
                device_attributes=attributes,
                no_policy=self.no_policy,
                driver=self.driver,
                reserved=reserved,
            )
            for policies, attributes in inputs or [([], [])]
        ]
        result = combined(outcomes)
        await self._report(result.problems)
        return result

    async def _report(self, problems: tuple[Problem, ...]) -> None:
        current = set()
        for problem in problems:
            key = (problem.subject.uid, problem.subject.name, problem.error.describe())
            current.add(key)
            if key in self._reported:
                continue
            subject = problem.subject
            logger.warning(
                "%s %s/%s left out of advertisement: %s",
                subject.kind,
                subject.namespace,
                subject.name,
                problem.error.describe(),
                extra={
                    "node": self.node,
                    "kind": subject.kind,
                    "object": f"{subject.namespace}/{subject.name}",
                    "uid": subject.uid,
                    "field": problem.error.field,
                    "reason": problem.error.reason,
                },
            )
            await self.recorders[subject.kind].warning(
                subject.as_object(), problem.error.reason, problem.error.describe()
            )
        # A problem fixed and made again is reported again.
        self._reported = current

    def _changed(self, what: str) -> None:
        logger.info("advertisement input changed", extra={"node": self.node, "changed": what})
        self.on_change()

    def _forbidden(self, what: str, namespace: str = "") -> Callable[[ApiException], bool]:
        synced = self._synced[f"{what}/{namespace}" if namespace else what]

        def give_up(exc: ApiException) -> bool:
            if exc.status != 403:
                return False
            logger.warning(
                "may not list/watch %s: %s; fix: grant the agent list and watch on them",
                FORBIDDEN[what][0],
                FORBIDDEN[what][1],
                extra={"node": self.node, "namespace": namespace},
            )
            synced.set()
            return True

        return give_up

    def _custom_loop(self, what: str, plural: str, namespace: str) -> ListWatch:
        objects = (self.policies if what == "policy" else self.attributes)[namespace]
        synced = self._synced[f"{what}/{namespace}"]

        async def relist() -> str:
            try:
                items, version = await self.api.list_custom(API_GROUP, VERSION, namespace, plural)
            except ApiException as exc:
                if exc.status == 404:
                    # The CRD is not installed: no such objects (retried with back-off).
                    if objects.replace([]):
                        self._changed(what)
                    synced.set()
                raise
            if objects.replace(items):
                self._changed(what)
            synced.set()
            return version

        def on_event(kind: str, obj: Body) -> None:
            if objects.apply(kind, obj):
                self._changed(what)

        return ListWatch(
            what=objects.what,
            relist=relist,
            watch=lambda version, timeout: self.api.watch_custom(
                API_GROUP, VERSION, namespace, plural, version, timeout_seconds=timeout
            ),
            on_event=on_event,
            timeout_seconds=self.watch_timeout_seconds,
            give_up=self._forbidden(what, namespace),
        )

    def _set_labels(self, items: list[Body]) -> None:
        labels = {
            str(k): str(v)
            for item in items
            for k, v in ((item.get("metadata") or {}).get("labels") or {}).items()
        }
        if labels != self.labels:
            self.labels = labels
            self._changed("node")

    def _node_loop(self) -> ListWatch:
        async def relist() -> str:
            items, version = await self.api.list_node(self.node)
            self._set_labels(items)
            self._synced["node"].set()
            return version

        def on_event(kind: str, obj: Body) -> None:
            self._set_labels([] if kind == "DELETED" else [obj])

        return ListWatch(
            what="node",
            relist=relist,
            watch=lambda version, timeout: self.api.watch_node(
                self.node, version, timeout_seconds=timeout
            ),
            on_event=on_event,
            timeout_seconds=self.watch_timeout_seconds,
            give_up=self._forbidden("node"),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the node's labels and each namespace's two kinds current until ``stop``."""
        loops = [
            *(self._custom_loop("policy", POLICY_PLURAL, ns) for ns in self.namespaces),
            *(self._custom_loop("attributes", ATTRIBUTES_PLURAL, ns) for ns in self.namespaces),
            self._node_loop(),
        ]
        # The watches block until the server ends them: cancel them on ``stop``.
        tasks = [asyncio.create_task(loop.run(stop)) for loop in loops]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
