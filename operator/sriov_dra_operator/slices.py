"""What our driver's ResourceSlices publish: device lookup and per-node VF counts.

Only the newest generation of each pool counts, as for allocation. Device
attributes may be published fully qualified or unqualified (then they belong to
the driver's domain); both spellings are read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sriov_dra.device_pools import DeviceKey


@dataclass(frozen=True, slots=True)
class PublishedDevice:
    """A device of our driver, where it is and what it says about itself."""

    key: DeviceKey
    node: str
    attributes: Mapping[str, Any]

    def attribute(self, qualified: str) -> Any:
        """The attribute's value (``string``/``int``/``bool``/``version``), None if absent."""
        value = self.attributes.get(qualified)
        if value is None and "/" in qualified:
            domain, name = qualified.split("/", 1)
            if domain == self.key.driver:
                value = self.attributes.get(name)
        if not isinstance(value, Mapping):
            return None
        for kind in ("string", "int", "bool", "version"):
            if kind in value:
                return value[kind]
        return None


def published_devices(
    slices: Iterable[Mapping[str, Any]], *, driver: str
) -> dict[DeviceKey, PublishedDevice]:
    """Every device of ``driver`` in the newest generation of its pool."""
    ours = [s for s in slices if (s.get("spec") or {}).get("driver") == driver]
    newest: dict[str, int] = {}
    for s in ours:
        pool = s["spec"]["pool"]
        newest[pool["name"]] = max(newest.get(pool["name"], 0), int(pool.get("generation", 0)))
    devices: dict[DeviceKey, PublishedDevice] = {}
    for s in ours:
        spec = s["spec"]
        pool = spec["pool"]
        if int(pool.get("generation", 0)) != newest[pool["name"]]:
            continue
        for device in spec.get("devices") or []:
            key = DeviceKey(driver, str(pool["name"]), str(device["name"]))
            node = str(device.get("nodeName") or spec.get("nodeName") or "")
            devices[key] = PublishedDevice(key, node, device.get("attributes") or {})
    return devices


def vf_counts(
    devices: Mapping[DeviceKey, PublishedDevice], taken: Collection[DeviceKey]
) -> dict[str, tuple[int, int]]:
    """Per node: (free, allocated) published VFs."""
    free: Counter[str] = Counter()
    allocated: Counter[str] = Counter()
    for key, device in devices.items():
        if key in taken:
            allocated[device.node] += 1
        else:
            free[device.node] += 1
    return {node: (free[node], allocated[node]) for node in free.keys() | allocated.keys()}
