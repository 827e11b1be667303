"""The operator's view of the cluster, fed by watch events and by our own writes.

Allocation decisions read only this cache, so it must never go back in time: a
watch event that is older than what one of our writes already returned would
otherwise "free" a device we just handed out. Objects are therefore replaced
only by an equal or newer ``resourceVersion`` (compared as integers: the
apiserver's are etcd revisions; an opaque non-numeric one is always accepted).

It also keeps the indexes the shell needs in O(1): which claims hold a device
(and the taken devices per pool, for the allocator), which claim a
namespace/name is now, which claims unscheduled pods are pending on. What a
claim waits for (a NAD, a freed VF, its agent) is the reconciler's own
bookkeeping (:class:`.claims.Waiting`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sriov_dra.device_pools import DeviceKey, DeviceUsage, held_devices
from sriov_dra.json_interning import interned
from sriov_dra.slice_interning import SliceInterner

Body = dict[str, Any]
Ref = tuple[str, str]
"""(namespace, name)."""


def resource_version(body: Mapping[str, Any]) -> str:
    """The object's ``metadata.resourceVersion`` ('' when absent)."""
    return str(body.get("metadata", {}).get("resourceVersion") or "")


def is_not_older(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """True unless both versions are numeric and ``new``'s is smaller."""
    a, b = resource_version(new), resource_version(old)
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return True


def uid_of(body: Mapping[str, Any]) -> str:
    """The object's ``metadata.uid``."""
    return str(body.get("metadata", {}).get("uid") or "")


MANAGED_FIELDS = ("managedFields",)
"""Left out of cached claims (see :func:`without_managed_fields`)."""


def without_managed_fields(body: Mapping[str, Any]) -> Body:
    """``body`` without ``metadata.managedFields``: nothing here reads them, and on a claim
    they are often larger than the rest of it (each writer's field set, kept for every
    claim and slice in the cache)."""
    meta = body.get("metadata")
    if not isinstance(meta, Mapping) or "managedFields" not in meta:
        return dict(body)
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def ref_of(body: Mapping[str, Any]) -> Ref:
    """(namespace, name) of a namespaced object."""
    meta = body.get("metadata", {})
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def pending_claim_refs(pod: Mapping[str, Any]) -> frozenset[Ref]:
    """Claims (by namespace/name) a not-yet-scheduled pod waits on; empty once it has a node.

    Only ``resourceClaimName`` references count: template claims are never ours.
    """
    spec = pod.get("spec") or {}
    if spec.get("nodeName") or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return frozenset()
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        return frozenset()
    namespace = str((pod.get("metadata") or {}).get("namespace") or "")
    return frozenset(
        (namespace, str(rc["resourceClaimName"]))
        for rc in spec.get("resourceClaims") or []
        if rc.get("resourceClaimName")
    )


@dataclass(frozen=True)
class ClaimChange:
    """What one claim update did to the device holdings."""

    old: Body | None
    new: Body | None
    freed: frozenset[DeviceKey]
    """Devices this claim no longer holds (may now be free)."""

    @property
    def allocation_cleared(self) -> bool:
        """The claim had an allocation before and has none now (claim still exists)."""
        return bool(
            self.old is not None
            and self.new is not None
            and held_devices(self.old)
            and not (self.new.get("status") or {}).get("allocation")
        )


class ClusterCache:
    """Claims, slices, classes, NADs, pending pods and node names as last seen."""

    def __init__(self) -> None:
        self.claims: dict[str, Body] = {}
        self._uid_by_ref: dict[Ref, str] = {}
        self._deleted: set[str] = set()
        self._devices_of: dict[str, frozenset[DeviceKey]] = {}
        self.holders: dict[DeviceKey, set[str]] = defaultdict(set)
        self.usage = DeviceUsage()
        """Taken devices for the allocator: held by an allocation or reserved by a decision
        whose write is in flight (per-pool counts let it skip full nodes)."""
        self._refs: Counter[DeviceKey] = Counter()
        self.slices: dict[str, Body] = {}
        self._interner = SliceInterner()
        """Keeps each distinct device attribute value of the slices once (about 3 KB per VF)."""
        self.slices_version = 0
        """Bumped on every slice change, so derived pools can be cached."""
        self.classes: dict[str, Body] = {}
        self.nads: dict[Ref, Body] = {}
        self._pending_pods: dict[Ref, set[str]] = defaultdict(set)
        self._pod_refs: dict[str, frozenset[Ref]] = {}
        self.nodes: set[str] | None = None
        """Names of the cluster's Nodes; None while unknown (not listed, or not allowed to)."""

    # -- claims ---------------------------------------------------------------------------------

    def upsert_claim(self, body: Mapping[str, Any]) -> ClaimChange | None:
        """Record a claim as seen; None when ``body`` is older than what we have."""
        uid = uid_of(body)
        if not uid or uid in self._deleted:
            return None
        old = self.claims.get(uid)
        if old is not None and not is_not_older(body, old):
            return None
        # Interned: each claim event is decoded on its own, so every claim would keep its
        # own copy of every key and of the driver, pool, node and condition strings.
        new: Body = interned(body, drop=MANAGED_FIELDS)
        self.claims[uid] = new
        self._uid_by_ref[ref_of(new)] = uid
        return ClaimChange(old=old, new=new, freed=self._set_devices(uid, held_devices(new)))

    def remove_claim(self, body: Mapping[str, Any]) -> ClaimChange | None:
        """Forget a deleted claim for good; later (stale) upserts of it are ignored."""
        uid = uid_of(body)
        if not uid:
            return None
        self._deleted.add(uid)
        old = self.claims.pop(uid, None)
        ref = ref_of(body)
        if self._uid_by_ref.get(ref) == uid:
            del self._uid_by_ref[ref]
        return ClaimChange(old=old, new=None, freed=self._set_devices(uid, frozenset()))

    def claim_by_ref(self, ref: Ref) -> Body | None:
        """The current claim named ``ref``."""
        uid = self._uid_by_ref.get(ref)
        return self.claims.get(uid) if uid else None

    def _set_devices(self, uid: str, devices: frozenset[DeviceKey]) -> frozenset[DeviceKey]:
        before = self._devices_of.get(uid, frozenset())
        for key in before - devices:
            holders = self.holders.get(key)
            if holders is not None:
                holders.discard(uid)
                if not holders:
                    del self.holders[key]
            self._unref(key)
        for key in devices - before:
            self.holders[key].add(uid)
            self._ref(key)
        if devices:
            self._devices_of[uid] = devices
        else:
            self._devices_of.pop(uid, None)
        return before - devices

    def _ref(self, key: DeviceKey) -> None:
        self._refs[key] += 1
        if self._refs[key] == 1:
            self.usage.add(key)

    def _unref(self, key: DeviceKey) -> None:
        self._refs[key] -= 1
        if self._refs[key] <= 0:
            del self._refs[key]
            self.usage.discard(key)

    def reserve(self, keys: Iterable[DeviceKey]) -> None:
        """Count ``keys`` as taken while the write that allocates them is in flight."""
        for key in keys:
            self._ref(key)

    def unreserve(self, keys: Iterable[DeviceKey]) -> None:
        """The in-flight write finished (its result, if any, is recorded as a holder)."""
        for key in keys:
            self._unref(key)

    def devices_of(self, uid: str) -> frozenset[DeviceKey]:
        """Devices claim ``uid`` holds according to the cache."""
        return self._devices_of.get(uid, frozenset())

    # -- slices, classes, NADs ------------------------------------------------------------------

    def upsert_slice(self, body: Mapping[str, Any]) -> None:
        """Record a ResourceSlice (any driver; the core filters)."""
        name = str(body["metadata"]["name"])
        old = self.slices.get(name)
        if old is None or is_not_older(body, old):
            self.slices[name] = self._interner.compact(without_managed_fields(body))
            self.slices_version += 1

    def remove_slice(self, body: Mapping[str, Any]) -> None:
        """Forget a deleted ResourceSlice."""
        if self.slices.pop(str(body["metadata"]["name"]), None) is not None:
            self.slices_version += 1

    def upsert_class(self, body: Mapping[str, Any]) -> None:
        """Record a DeviceClass."""
        self.classes[str(body["metadata"]["name"])] = dict(body)

    def remove_class(self, body: Mapping[str, Any]) -> None:
        """Forget a deleted DeviceClass."""
        self.classes.pop(str(body["metadata"]["name"]), None)

    def upsert_nad(self, body: Mapping[str, Any]) -> None:
        """Record a NetworkAttachmentDefinition."""
        self.nads[ref_of(body)] = dict(body)

    def remove_nad(self, body: Mapping[str, Any]) -> None:
        """Forget a deleted NetworkAttachmentDefinition."""
        self.nads.pop(ref_of(body), None)

    # -- nodes ----------------------------------------------------------------------------------

    def upsert_node(self, body: Mapping[str, Any]) -> None:
        """Record that a Node exists (only its name is kept)."""
        if self.nodes is not None:
            self.nodes.add(str(body["metadata"]["name"]))

    def remove_node(self, body: Mapping[str, Any]) -> None:
        """Forget a deleted Node."""
        if self.nodes is not None:
            self.nodes.discard(str(body["metadata"]["name"]))

    def node_missing(self, name: str) -> bool:
        """The Nodes are known and none is called ``name``."""
        return self.nodes is not None and name not in self.nodes

    # -- pods -----------------------------------------------------------------------------------

    def upsert_pod(self, body: Mapping[str, Any]) -> frozenset[Ref]:
        """Track which claims a pod is pending on; returns claims whose pending set changed."""
        return self._set_pod(uid_of(body), pending_claim_refs(body))

    def remove_pod(self, body: Mapping[str, Any]) -> frozenset[Ref]:
        """Forget a pod; returns the claims it was pending on."""
        return self._set_pod(uid_of(body), frozenset())

    def replace_pods(self, bodies: Iterable[Mapping[str, Any]]) -> frozenset[Ref]:
        """Track exactly ``bodies`` (a fresh list); returns claims whose pending set changed."""
        bodies = list(bodies)
        listed = {uid_of(body) for body in bodies}
        changed: set[Ref] = set()
        for pod_uid in set(self._pod_refs) - listed:
            changed |= self._set_pod(pod_uid, frozenset())
        for body in bodies:
            changed |= self.upsert_pod(body)
        return frozenset(changed)

    def _set_pod(self, pod_uid: str, refs: frozenset[Ref]) -> frozenset[Ref]:
        before = self._pod_refs.get(pod_uid, frozenset())
        for ref in before - refs:
            pods = self._pending_pods.get(ref)
            if pods is not None:
                pods.discard(pod_uid)
                if not pods:
                    del self._pending_pods[ref]
        for ref in refs - before:
            self._pending_pods[ref].add(pod_uid)
        if refs:
            self._pod_refs[pod_uid] = refs
        else:
            self._pod_refs.pop(pod_uid, None)
        return before ^ refs

    def has_pending_pod(self, ref: Ref) -> bool:
        """Some unscheduled pod references claim ``ref`` by name."""
        return bool(self._pending_pods.get(ref))

    # -- iteration ------------------------------------------------------------------------------

    def claim_uids(self) -> Iterator[str]:
        """Uids of all cached claims (a snapshot)."""
        return iter(list(self.claims))
