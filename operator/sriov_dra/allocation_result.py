"""A claim's chosen devices, and the ``status.allocation`` written for them.

``devices.config`` carries the DeviceClass config of each allocated request
(``FromClass``) and the claim's config entries that apply to an allocated
request (``FromClaim``), so a node agent reads every VF's config from the
allocation alone; ``nodeSelector`` pins the node (:mod:`sriov_dra.node_selector`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sriov_dra.claim_requests import listed, request_classes
from sriov_dra.device_pools import DeviceKey
from sriov_dra.node_selector import node_selector


@dataclass(frozen=True)
class Allocation:
    """The devices chosen for a claim, all on ``node``."""

    node: str
    results: list[dict[str, Any]]
    """``status.allocation.devices.results`` entries: request, driver, pool, device."""
    devices: list[Mapping[str, Any]]
    """The ResourceSlice device dicts, in result order."""

    @property
    def keys(self) -> list[DeviceKey]:
        """The allocated devices' keys, in result order."""
        return [DeviceKey(r["driver"], r["pool"], r["device"]) for r in self.results]

    def status_allocation(
        self, claim: Mapping[str, Any], device_classes: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The exact ``status.allocation`` to write for ``claim``.

        ``devices.config``: for each allocated request (result order), the config of
        its DeviceClass as ``FromClass`` entries naming that request; then the
        claim's config entries that apply to an allocated request (no ``requests``,
        or naming ``req`` or ``req/sub``) as ``FromClaim`` with their ``requests``.
        """
        spec = (claim.get("spec") or {}).get("devices") or {}
        if not self.node:
            return {"devices": {"results": [], "config": []}}
        class_of = request_classes(claim)
        allocated: list[str] = []
        for result in self.results:
            if result["request"] not in allocated:
                allocated.append(result["request"])
        config: list[dict[str, Any]] = []
        for request in allocated:
            device_class = device_classes.get(class_of.get(request, "")) or {}
            for entry in (device_class.get("spec") or {}).get("config") or ():
                if entry.get("opaque"):
                    config.append(
                        {"source": "FromClass", "requests": [request], "opaque": entry["opaque"]}
                    )
        for entry in spec.get("config") or ():
            requests = list(entry.get("requests") or ())
            if not entry.get("opaque") or not any(listed(requests, r) for r in allocated):
                continue
            item: dict[str, Any] = {"source": "FromClaim", "opaque": entry["opaque"]}
            if requests:
                item["requests"] = requests
            config.append(item)
        return {
            "devices": {"results": [dict(r) for r in self.results], "config": config},
            "nodeSelector": node_selector(self.node),
        }
