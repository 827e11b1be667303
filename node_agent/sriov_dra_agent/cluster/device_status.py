"""``status.devices`` entries for this node's VFs, written by server-side apply.

Building is pure (:func:`build_entries`): conditions ``Ready``, ``VfConfigured``
and ``NetworkReady`` with a reason and a message, ``networkData`` only while the
VF is in a pod, and a small ``data`` object. :class:`DeviceStatusWriter` applies
them on ``resourceclaims/status`` under a per-node field manager, so it owns
exactly its entries (listType=map on driver/pool/device): other drivers' and
other nodes' entries are never touched, and an entry or field we stop sending
(``networkData`` after detach) is removed by the API server.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sriov_dra.constants import RELEASED_CONDITION
from sriov_dra_kube.client import ApiException, KubeApi

from sriov_dra_agent.cluster.claim_devices import ClaimDevice, meta, ref
from sriov_dra_agent.vf.records import NetworkData

logger = logging.getLogger(__name__)

MAX_DATA_BYTES: Final = 10 * 1024
MAX_CONDITION_MESSAGE: Final = 32768


@dataclass(frozen=True)
class DeviceState:
    """What the agent knows about one VF of a claim."""

    device: ClaimDevice
    configured: bool
    config_reason: str
    config_message: str
    network: NetworkData | None = None
    network_reason: str = "NotAttached"
    network_message: str = "the VF is not in a pod"
    data: Mapping[str, Any] = field(default_factory=dict)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(
    kind: str, ok: bool, reason: str, message: str, previous: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    status = "True" if ok else "False"
    old = previous.get(kind)
    # Keep the transition time while the status stays, so re-applies are no-ops.
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:MAX_CONDITION_MESSAGE],
        "lastTransitionTime": since or _now(),
    }


def _previous_conditions(
    claim: Mapping[str, Any], *, driver: str, pool: str, device: str
) -> dict[str, Mapping[str, Any]]:
    for entry in (claim.get("status") or {}).get("devices") or []:
        if (entry.get("driver"), entry.get("pool"), entry.get("device")) == (driver, pool, device):
            return {c["type"]: c for c in entry.get("conditions") or [] if "type" in c}
    return {}


def small_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` within the API's 10 KiB limit (drops the biggest keys until it fits)."""
    out = dict(data)
    while out and len(json.dumps(out)) > MAX_DATA_BYTES:
        largest = max(out, key=lambda k: len(json.dumps(out[k])))
        out[largest] = "(omitted: status.devices[].data is limited to 10 KiB)"
        if len(json.dumps(out)) > MAX_DATA_BYTES:
            del out[largest]
    return out


def build_entries(
    claim: Mapping[str, Any], states: Sequence[DeviceState], *, driver: str
) -> list[dict[str, Any]]:
    """Our ``status.devices`` entries for ``states`` (transition times kept from ``claim``)."""
    entries = []
    for state in states:
        dev = state.device
        previous = _previous_conditions(claim, driver=driver, pool=dev.pool, device=dev.device)
        attached = state.network is not None
        ready = state.configured
        ready_message = (
            f"VF {dev.pci_address} is configured for request {dev.request}"
            + (f" and attached as {dev.if_name}" if attached else "")
            if ready
            else state.config_message
        )
        conditions = [
            _condition("Ready", ready, "Ready" if ready else state.config_reason, ready_message,
                       previous),
            _condition("VfConfigured", state.configured, state.config_reason,
                       state.config_message, previous),
            _condition("NetworkReady", attached,
                       "Attached" if attached else state.network_reason,
                       f"{dev.if_name} is up in the pod" if attached else state.network_message,
                       previous),
        ]  # fmt: skip
        entry: dict[str, Any] = {
            "driver": driver,
            "pool": dev.pool,
            "device": dev.device,
            "conditions": conditions,
        }
        if state.network is not None:
            entry["networkData"] = state.network.as_status()
        data = small_data(state.data)
        if data:
            entry["data"] = data
        entries.append(entry)
    return entries


def released_entries(
    claim: Mapping[str, Any], results: Sequence[Mapping[str, Any]], *, driver: str, node: str
) -> list[dict[str, Any]]:
    """Our entries saying each VF of ``results`` is detached and reset: condition
    :data:`~sriov_dra.constants.RELEASED_CONDITION` True, on which the operator hands the
    VF on (:mod:`sriov_dra.release_signal`), and ``Ready`` False."""
    entries = []
    for result in results:
        pool, device = str(result["pool"]), str(result["device"])
        previous = _previous_conditions(claim, driver=driver, pool=pool, device=device)
        message = f"node {node} detached {device} and restored its settings"
        conditions = [
            _condition(RELEASED_CONDITION, True, "Released", message, previous),
            _condition("Ready", False, "Released", message, previous),
        ]
        entries.append({"driver": driver, "pool": pool, "device": device, "conditions": conditions})
    return entries


def apply_body(claim: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The server-side apply body: just our entries (an empty list drops all of ours)."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": meta(claim)["name"], "namespace": meta(claim)["namespace"]},
        "status": {"devices": list(entries)},
    }


def _comparable(entries: Sequence[Mapping[str, Any]]) -> str:
    stripped = []
    for entry in entries:
        copy = dict(entry)
        copy["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in entry.get("conditions") or []
        ]
        stripped.append(copy)
    return json.dumps(stripped, sort_keys=True)


class DeviceStatusWriter:
    """Applies this node's entries; skips the call when nothing changed since the last one."""

    def __init__(self, api: KubeApi, *, driver: str, field_manager: str) -> None:
        self.api = api
        self.driver = driver
        self.field_manager = field_manager
        self._last: dict[str, str] = {}

    async def write(
        self, claim: Mapping[str, Any], states: Sequence[DeviceState]
    ) -> dict[str, Any] | None:
        """Apply ``states``; returns the updated claim, None when skipped or the claim is gone."""
        return await self.apply(claim, build_entries(claim, states, driver=self.driver))

    async def apply(
        self, claim: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any] | None:
        """Apply ``entries`` as all of ours; None when unchanged since the last call or gone."""
        key = str(meta(claim).get("uid", ""))
        fingerprint = _comparable(entries)
        if self._last.get(key) == fingerprint:
            return None
        try:
            updated = await self.api.apply_claim_status(
                str(meta(claim)["namespace"]),
                str(meta(claim)["name"]),
                apply_body(claim, entries),
                field_manager=self.field_manager,
            )
        except ApiException as exc:
            if exc.status == 404:
                self._last.pop(key, None)
                return None
            logger.warning(
                "status.devices apply failed: %s %s",
                exc.status,
                exc.reason,
                extra={"claim": ref(claim), "uid": key},
            )
            raise
        self._last[key] = fingerprint
        return updated

    def forget(self, uid: str) -> None:
        self._last.pop(uid, None)
