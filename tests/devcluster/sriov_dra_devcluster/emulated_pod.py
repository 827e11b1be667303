"""What the node emulation reads off a pod and its claims, and the statuses it reports (pure).

Which claims a pod uses, whether the pod may use them (the kubelet's reservedFor
check and message), which CDI device IDs each container gets, and the pod
status a running or still-creating pod shows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sriov_dra.errors import SriovDraError

from sriov_dra_devcluster.kubelet_plugins import (
    PreparedDevice,
)

"""``source.component`` of our Events: says plainly who plays the kubelet."""
COMPONENT: Final = "sriov-dra-node-emulator"
"""``source.component`` of our Events: says plainly who plays the kubelet."""
DEFAULT_POD_CIDR: Final = "10.244.0.0/16"
BACKOFF_START: Final = 1.0
BACKOFF_MAX: Final = 30.0
RESYNC_SECONDS: Final = 30.0

REASON_PREPARE: Final = "FailedPrepareDynamicResources"
REASON_UNPREPARE: Final = "FailedUnprepareDynamicResources"
REASON_SANDBOX: Final = "FailedCreatePodSandBox"


class PrepareFailed(SriovDraError):
    """A claim could not be prepared (not reserved, not allocated, plugin error)."""

    reason = REASON_PREPARE


class UnprepareFailed(SriovDraError):
    """NodeUnprepareResources failed; the pod stays Terminating until it succeeds."""

    reason = REASON_UNPREPARE


class SandboxFailed(SriovDraError):
    """The netns, its process or a CDI createRuntime hook failed."""

    reason = REASON_SANDBOX


def api_time_now() -> str:
    """The current time as the API server writes it (RFC 3339, seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- pure parts: which claims a pod uses, which CDI IDs a container gets -----------------


@dataclass(frozen=True)
class PodClaim:
    """One entry of ``pod.spec.resourceClaims`` resolved to a claim name."""

    pod_claim_name: str
    claim_name: str


def pod_claims(pod: Mapping[str, Any]) -> list[PodClaim]:
    """The claims a pod uses; template claims by the name in ``status.resourceClaimStatuses``.

    Raises PrepareFailed when a template's claim has not been created yet.
    """
    statuses = {
        s["name"]: s.get("resourceClaimName")
        for s in pod.get("status", {}).get("resourceClaimStatuses") or []
    }
    result = []
    for entry in pod.get("spec", {}).get("resourceClaims") or []:
        if entry.get("resourceClaimName"):
            result.append(PodClaim(entry["name"], entry["resourceClaimName"]))
            continue
        generated = statuses.get(entry["name"])
        if not generated:
            raise PrepareFailed(
                f"waiting for the ResourceClaim of pod claim {entry['name']!r} "
                "(from its ResourceClaimTemplate) to be created",
                field="status.resourceClaimStatuses",
            )
        result.append(PodClaim(entry["name"], generated))
    return result


def check_reserved(pod: Mapping[str, Any], claim: Mapping[str, Any]) -> None:
    """The kubelet's checks before preparing, in its order: pod in reservedFor, claim allocated.

    (The API server refuses reservedFor without an allocation, so the second
    guards against a torn read only.)
    """
    meta = pod["metadata"]
    cmeta = claim["metadata"]
    status = claim.get("status") or {}
    reserved = {r.get("uid") for r in status.get("reservedFor") or []}
    if meta["uid"] not in reserved:
        raise PrepareFailed(
            f"pod {meta['name']} ({meta['uid']}) is not allowed to use ResourceClaim "
            f"{cmeta['name']} ({cmeta['uid']})"
        )
    if not status.get("allocation"):
        raise PrepareFailed(f"ResourceClaim {cmeta['name']} ({cmeta['uid']}) is not allocated")


def drivers_of(claim: Mapping[str, Any]) -> list[str]:
    """Drivers named in the claim's allocation results, in first-seen order."""
    results = claim["status"]["allocation"].get("devices", {}).get("results") or []
    drivers: list[str] = []
    for result in results:
        if result["driver"] not in drivers:
            drivers.append(result["driver"])
    return drivers


def container_cdi_ids(
    container: Mapping[str, Any],
    claims_by_pod_name: Mapping[str, Sequence[PreparedDevice]],
) -> list[str]:
    """The CDI device IDs one container gets: devices of the claims it lists in resources.claims.

    A container entry without ``request`` gets every device of the claim; a
    device with no request names belongs to every request (kubelet rules).
    """
    ids: list[str] = []
    for entry in (container.get("resources") or {}).get("claims") or []:
        wanted = entry.get("request") or ""
        for device in claims_by_pod_name.get(entry["name"], ()):
            if wanted and device.request_names and wanted not in device.request_names:
                continue
            ids.extend(i for i in device.cdi_device_ids if i not in ids)
    return ids


def running_status(
    pod: Mapping[str, Any],
    *,
    pod_ip: str,
    host_ip: str,
    container_ids: Mapping[str, str],
    started_at: str,
) -> dict[str, Any]:
    """The status patch that reports the pod Running and Ready."""
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": started_at}
        for kind in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
    ]
    statuses = [
        {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "emulated://no-image-pulled",
            "containerID": f"emulated://{container_ids[c['name']]}",
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": started_at}},
        }
        for c in pod["spec"]["containers"]
    ]
    return {
        "status": {
            "phase": "Running",
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": pod.get("status", {}).get("startTime") or started_at,
            "conditions": conditions,
            "containerStatuses": statuses,
        }
    }


def creating_status(pod: Mapping[str, Any], *, host_ip: str, message: str) -> dict[str, Any]:
    """The status patch of a pod whose sandbox or claims are not ready (ContainerCreating)."""
    now = api_time_now()
    started = pod.get("status", {}).get("startTime") or now
    conditions = [
        {"type": "PodReadyToStartContainers", "status": "False", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {
            "type": "ContainersReady",
            "status": "False",
            "reason": "ContainersNotReady",
            "message": message,
            "lastTransitionTime": now,
        },
        {
            "type": "Ready",
            "status": "False",
            "reason": "ContainersNotReady",
            "message": message,
            "lastTransitionTime": now,
        },
    ]
    statuses = [
        {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}},
        }
        for c in pod["spec"]["containers"]
    ]
    return {
        "status": {
            "phase": "Pending",
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": started,
            "conditions": conditions,
            "containerStatuses": statuses,
        }
    }
