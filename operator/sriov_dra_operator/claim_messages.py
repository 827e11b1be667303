"""The texts of the claim reconciler's Events and conditions: what happened, to which VF,
and the fix.

Pure functions of the facts they report, so :mod:`.claims` reads as the state
machine it is and each text can be checked on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sriov_dra.allocation_record import AllocatedVf
from sriov_dra.constants import FINALIZER, KUBE_DELETE_PROTECTION, RELEASED_CONDITION
from sriov_dra.device_pools import DeviceKey
from sriov_dra.errors import NadNotFound

from .cache import Ref


def cleared_by_scheduler(yield_seconds: float) -> str:
    """``AllocationClearedByScheduler``: someone else cleared the allocation we wrote."""
    return (
        "the allocation this operator wrote was cleared by someone else (kube-scheduler "
        "does so when a pod of this claim fits no node where the VF is); the operator "
        f"leaves the claim to the scheduler while a pod is pending on it and for at least "
        f"{yield_seconds:g} s; fix: check the pod's node constraints "
        "(kubectl describe pod) if this repeats"
    )


def nad_not_found(ref: Ref, request: str) -> NadNotFound:
    """The claim waits for the NAD ``ref`` that ``request``'s VfConfig names."""
    return NadNotFound(
        f"NetworkAttachmentDefinition {ref[0]}/{ref[1]} named by request "
        f"{request!r} does not exist",
        field="netAttachDefName",
        fix=f"create NetworkAttachmentDefinition {ref[1]} in namespace {ref[0]} "
        "(the claim is allocated as soon as it exists) or correct netAttachDefName",
    )


def allocated(records: Sequence[AllocatedVf], node: str) -> str:
    """Condition ``Allocated`` (on each VF's ``status.devices`` entry, ``records`` of one):
    every VF with its PF, device, ifName and NAD."""
    vfs = ", ".join(
        f"VF {r.pci_address} (vfIndex {r.vf_index}, device {r.pool}/{r.device}) of PF "
        f"{r.pf or '?'} as {r.if_name}" + (f" for NAD {r.nad}" if r.nad else "")
        for r in records
    )
    return f"allocated {vfs} on node {node}"


def adopted(records: Sequence[AllocatedVf], node: str) -> str:
    """``Adopted``: kube-scheduler allocated the claim first; it now keeps its VF."""
    vfs = ", ".join(f"VF {r.pci_address} as {r.if_name}" for r in records)
    return (
        f"kube-scheduler allocated {vfs} on node {node} for a pod that came before the "
        f"operator; adopted: removed finalizer {KUBE_DELETE_PROTECTION} so the claim "
        "keeps its VF when the pod goes (delete the claim to free it)"
    )


def devices_text(keys: Iterable[DeviceKey]) -> str:
    """``device pool/name, ...`` in key order."""
    return ", ".join(f"device {k.pool}/{k.device}" for k in sorted(keys))


def released_without_agent(node: str, devices: str) -> str:
    """``ReleasedWithoutAgent``: the deleted claim's Node is gone, and its VF with it."""
    return (
        f"node {node} no longer exists (its Node object was deleted), so no node "
        f"agent will release {devices}: the VF went with the node; "
        f"released without the agent: allocation cleared, finalizer {FINALIZER} "
        "removed"
    )


def awaiting_release(uid: str, node: str, devices: str) -> str:
    """``AwaitingRelease``: the deleted claim waits for its node agent, and how to unblock it."""
    return (
        f"the claim is deleted; {devices} stays allocated until the "
        f"sriov-dra agent on node {node} has detached and reset it and set condition "
        f"{RELEASED_CONDITION} on its status.devices entries of claim {uid}; then the "
        f"allocation and finalizer {FINALIZER} go; fix: check the agent pod on node {node} "
        f"(kubectl -n sriov-dra get pods -o wide --field-selector spec.nodeName={node}) and "
        f"its log; if node {node} is gone for good, delete its Node object (kubectl delete "
        f"node {node}) and the operator releases the claim without the agent"
    )


def reconcile_failed(error: Exception, retry_first: float, retry_cap: float) -> str:
    """``ReconcileFailed``: an error nobody expected; the claim is retried with backoff."""
    return (
        f"the operator failed on this claim with {type(error).__name__}: {error}; it is "
        f"retried after {retry_first:g} s, then at growing intervals up to every {retry_cap:g} s; "
        "fix: check what the claim names (DeviceClass, VfConfig, NAD, the ResourceSlices of "
        "its devices) for a value the operator does not expect, and report the operator's "
        "log line 'reconcile failed' as a bug"
    )
