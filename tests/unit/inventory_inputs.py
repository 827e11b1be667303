"""Claims and ``status.devices`` entries for the inventory's tests, as the API serves them."""

from __future__ import annotations

import json
from typing import Any

from sriov_dra.constants import ALLOCATION_ANNOTATION
from unit.allocator_inputs import D

NET = {"interfaceName": "net1", "ips": ["10.0.3.2/24"], "hardwareAddress": "02:00:00:00:00:01"}


def claim(
    name: str,
    *devices: str,
    node: str = "node-a",
    namespace: str = "ns",
    status_devices: list[dict[str, Any]] | None = None,
    pods: tuple[str, ...] = (),
    deleting: bool = False,
    annotation: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A claim of ours, allocated ``devices`` of ``node``'s pool when any are given."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if annotation is not None:
        meta["annotations"] = {ALLOCATION_ANNOTATION: json.dumps(annotation)}
    body: dict[str, Any] = {
        "metadata": meta,
        "spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": D}}]}},
        "status": {},
    }
    if devices:
        body["status"]["allocation"] = {
            "devices": {
                "results": [
                    {"request": "vf", "driver": D, "pool": node, "device": d} for d in devices
                ]
            }
        }
    if status_devices is not None:
        body["status"]["devices"] = status_devices
    if pods:
        body["status"]["reservedFor"] = [
            {"resource": "pods", "name": p, "uid": f"pod-{p}"} for p in pods
        ]
    return body


def entry(
    device: str,
    *,
    configured: str,
    network: dict[str, Any] | None = None,
    reason: str = "Configured",
    message: str = "ok",
    node: str = "node-a",
) -> dict[str, Any]:
    """A ``status.devices`` entry as the agent writes it."""
    out: dict[str, Any] = {
        "driver": D,
        "pool": node,
        "device": device,
        "conditions": [
            {"type": "VfConfigured", "status": configured, "reason": reason, "message": message},
            {"type": "NetworkReady", "status": "True" if network else "False",
             "reason": "Attached" if network else "NotAttached", "message": ""},
        ],
        "data": {"pciAddress": "x", "ifName": "net1", "networkAttachmentDefinition": "ns/nad-a"},
    }  # fmt: skip
    if network is not None:
        out["networkData"] = network
    return out
