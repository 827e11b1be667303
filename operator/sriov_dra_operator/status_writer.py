"""Every write the operator makes to a ResourceClaim, each guarded by resourceVersion,
and the re-read that follows a refused one.

All writes are JSON merge patches that carry ``metadata.resourceVersion``: the
apiserver then refuses them with 409 Conflict if the claim changed since we
read it. A conflict is never retried blindly: the caller re-reads and decides
again (:class:`StaleClaim`). Status writes touch ``status.allocation`` and, with
the allocation, the operator's ``status.devices`` entries (:func:`allocated_entry`).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes_asyncio import client
from sriov_dra.constants import (
    ALLOCATED_CONDITION,
    ALLOCATION_ANNOTATION,
    FINALIZER,
    KUBE_DELETE_PROTECTION,
    NODE_LABEL,
)

GROUP = "resource.k8s.io"
VERSION = "v1"
PLURAL = "resourceclaims"
MERGE_PATCH = "application/merge-patch+json"

Body = dict[str, Any]


class StaleClaim(Exception):
    """The claim changed (409) or vanished (404) since it was read: re-read, decide again."""

    def __init__(self, status: int) -> None:
        super().__init__(f"claim write refused with HTTP {status}")
        self.status = status


def rejection_message(status: int | None, body: object, *, retry_cap: float) -> str:
    """The Event text for a write the apiserver refused as invalid (HTTP 422).

    Carries the apiserver's own message (its ``Status.message``), which names the
    field it refused.
    """
    text = str(body or "")
    try:
        parsed = json.loads(text)
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict) and parsed.get("message"):
        text = str(parsed["message"])
    return (
        f"the apiserver refused the operator's write to this claim (HTTP {status}): {text}; "
        f"retried with a growing back-off (at most every {retry_cap:g} s); fix: if the claim's "
        "spec or its DeviceClass is at fault, correct it (re-create the claim), otherwise "
        "report an sriov-dra bug with `kubectl get resourceclaim -o yaml` and the operator log"
    )


def _meta(claim: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = claim["metadata"]
    return str(meta["namespace"]), str(meta["name"]), str(meta["resourceVersion"])


def finalizers_with(claim: Mapping[str, Any], present: bool) -> list[str]:
    """The claim's finalizers with ours added (``present``) or removed, order kept."""
    current = [str(f) for f in claim["metadata"].get("finalizers") or []]
    others = [f for f in current if f != FINALIZER]
    return [*others, FINALIZER] if present else others


def has_marks(claim: Mapping[str, Any]) -> bool:
    """The claim carries our finalizer, node label or allocation annotation (:func:`mark_patch`)."""
    meta = claim.get("metadata") or {}
    return (
        FINALIZER in (meta.get("finalizers") or [])
        or NODE_LABEL in (meta.get("labels") or {})
        or ALLOCATION_ANNOTATION in (meta.get("annotations") or {})
    )


def mark_patch(claim: Mapping[str, Any], *, node: str, annotation: str) -> Body:
    """Merge patch: our finalizer, the node label and the allocation annotation."""
    return {
        "metadata": {
            "resourceVersion": _meta(claim)[2],
            "finalizers": finalizers_with(claim, True),
            "labels": {NODE_LABEL: node},
            "annotations": {ALLOCATION_ANNOTATION: annotation},
        }
    }


def adopt_patch(claim: Mapping[str, Any], *, node: str, annotation: str) -> Body:
    """Merge patch taking over a claim kube-scheduler allocated: our marks, not its finalizer.

    With ``resource.kubernetes.io/delete-protection`` the claim controller clears
    the allocation when the last pod goes; a static claim must keep its VF.
    """
    patch = mark_patch(claim, node=node, annotation=annotation)
    finalizers = patch["metadata"]["finalizers"]
    patch["metadata"]["finalizers"] = [f for f in finalizers if f != KUBE_DELETE_PROTECTION]
    return patch


def unmark_patch(claim: Mapping[str, Any], *, drop_finalizer: bool) -> Body:
    """Merge patch removing the node label and allocation annotation (and our finalizer)."""
    metadata: Body = {
        "resourceVersion": _meta(claim)[2],
        "labels": {NODE_LABEL: None},
        "annotations": {ALLOCATION_ANNOTATION: None},
    }
    if drop_finalizer:
        metadata["finalizers"] = finalizers_with(claim, False)
    return {"metadata": metadata}


def node_label_patch(claim: Mapping[str, Any], node: str | None) -> Body:
    """Merge patch setting the node label to ``node`` (None removes it), nothing else.

    For claims someone else allocated (:mod:`sriov_dra.node_label`): the agents'
    label-filtered watches see them only with it.
    """
    return {"metadata": {"resourceVersion": _meta(claim)[2], "labels": {NODE_LABEL: node}}}


def allocated_entry(*, driver: str, pool: str, device: str, message: str) -> Body:
    """A ``status.devices`` entry with condition :data:`~sriov_dra.constants.ALLOCATED_CONDITION`
    True, written together with the allocation: the explanation ``kubectl describe`` shows,
    at no extra write (an Event would be one more per claim).

    The node agent applies its own conditions (``Ready`` and others) to the same entry
    under its own field manager; the list of conditions is a map by type, so neither
    removes the other's.
    """
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {
        "type": ALLOCATED_CONDITION,
        "status": "True",
        "reason": ALLOCATED_CONDITION,
        "message": message,
        "lastTransitionTime": now,
    }
    return {"driver": driver, "pool": pool, "device": device, "conditions": [condition]}


class ClaimWriter:
    """Guarded writes to claims; each returns the claim as the apiserver stored it."""

    def __init__(self, api: client.ApiClient) -> None:
        self._objects = client.CustomObjectsApi(api)

    async def _patch(self, claim: Mapping[str, Any], body: Body, *, status: bool) -> Body:
        namespace, name, _ = _meta(claim)
        call: Any = (
            self._objects.patch_namespaced_custom_object_status
            if status
            else self._objects.patch_namespaced_custom_object
        )
        try:
            result: Body = await call(
                GROUP, VERSION, namespace, PLURAL, name, body, _content_type=MERGE_PATCH
            )
        except client.ApiException as exc:
            if exc.status in (404, 409):
                raise StaleClaim(exc.status) from exc
            raise
        return result

    async def read(self, claim: Mapping[str, Any]) -> Body | None:
        """The claim as stored now (None when it is gone), to decide again after a conflict."""
        namespace, name = str(claim["metadata"]["namespace"]), str(claim["metadata"]["name"])
        try:
            result: Body = await self._objects.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def mark(self, claim: Mapping[str, Any], *, node: str, annotation: str) -> Body:
        """Add our finalizer, node label and allocation annotation."""
        return await self._patch(
            claim, mark_patch(claim, node=node, annotation=annotation), status=False
        )

    async def adopt(self, claim: Mapping[str, Any], *, node: str, annotation: str) -> Body:
        """Mark a scheduler-allocated claim as ours and drop the scheduler's finalizer."""
        return await self._patch(
            claim, adopt_patch(claim, node=node, annotation=annotation), status=False
        )

    async def unmark(self, claim: Mapping[str, Any], *, drop_finalizer: bool) -> Body:
        """Remove the node label and annotation, and our finalizer if asked."""
        return await self._patch(
            claim, unmark_patch(claim, drop_finalizer=drop_finalizer), status=False
        )

    async def set_node_label(self, claim: Mapping[str, Any], node: str | None) -> Body:
        """Set (or with None remove) only the node label."""
        return await self._patch(claim, node_label_patch(claim, node), status=False)

    async def write_allocation(
        self,
        claim: Mapping[str, Any],
        allocation: Mapping[str, Any],
        devices: Sequence[Mapping[str, Any]] = (),
    ) -> Body:
        """Set ``status.allocation`` (write-once in the API) and, when given, ``status.devices``.

        An unallocated claim has no ``status.devices`` (the apiserver accepts entries
        only for allocated devices), so replacing the list loses nobody's entries.
        """
        status: Body = {"allocation": dict(allocation)}
        if devices:
            status["devices"] = [dict(d) for d in devices]
        body = {"metadata": {"resourceVersion": _meta(claim)[2]}, "status": status}
        return await self._patch(claim, body, status=True)

    async def clear_allocation(self, claim: Mapping[str, Any]) -> Body:
        """Clear ``status.allocation``; callers ensure ``reservedFor`` is already empty.

        ``status.devices`` is left alone: the apiserver itself drops the entries of
        devices that are no longer allocated.
        """
        body = {"metadata": {"resourceVersion": _meta(claim)[2]}, "status": {"allocation": None}}
        return await self._patch(claim, body, status=True)
