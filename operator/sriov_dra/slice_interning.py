"""ResourceSlices kept with one copy of each attribute value, not one per device.

A decoded slice holds a fresh ``{"string": "8086"}`` for every attribute of every
device: about 3 KB per VF, 190 MB of the 257 MB that 1,000 nodes of 64 VFs take.
Most of these values repeat (vendor, PF name, VF index, the node's name on each of
its VFs; on identical servers even the PCI addresses), so a cache that keeps many
slices stores each distinct value once. The shared values must not be changed:
nothing that reads a cached slice writes to it.

Each device's attributes become an :class:`Attributes`: a read-only mapping whose
names are shared by every device that publishes the same ones (all VFs of a driver
do) and whose values sit in a tuple, about 200 bytes a device where a dict of 14
attributes took 460.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from typing import Any, Final

INTERNED_LIMIT: Final = 262_144
"""Distinct values kept before the table starts over (devices already compacted keep
theirs); bounds the table when nodes and their values come and go for long."""


class Attributes(Mapping[str, Any]):
    """A device's attributes by name, read-only; ``index`` is shared between devices."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: Mapping[str, int], values: tuple[Any, ...]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, name: str) -> Any:
        return self._values[self._index[name]]

    def get(self, name: str, default: Any = None) -> Any:
        """The attribute's value, ``default`` when the device has none of that name."""
        i = self._index.get(name)
        return default if i is None else self._values[i]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Attributes({dict(self)!r})"


class SliceInterner:
    """Compacts slices against a table of the attribute values seen so far."""

    def __init__(self, limit: int = INTERNED_LIMIT) -> None:
        self.limit = limit
        self._values: dict[Hashable, Mapping[str, Any]] = {}
        self._indexes: dict[tuple[str, ...], Mapping[str, int]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def _value(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        try:
            key = tuple(sorted(value.items()))
            found = self._values.get(key)
        except TypeError:  # an unhashable member: keep it as it is
            return value
        if found is None:
            if len(self._values) >= self.limit:
                self._values.clear()
                self._indexes.clear()
            found = self._values[key] = value
        return found

    def _attributes(self, attributes: Mapping[str, Any]) -> Attributes:
        names = tuple(attributes)
        index = self._indexes.get(names)
        if index is None:
            index = self._indexes[names] = {name: i for i, name in enumerate(names)}
        return Attributes(index, tuple(self._value(v) for v in attributes.values()))

    def compact(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``body`` with each device's attribute values taken from the table.

        Only ``spec.devices[].attributes`` is rebuilt; everything else is ``body``'s.
        """
        spec = body.get("spec")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("devices"), list):
            return dict(body)
        devices: list[Any] = spec["devices"]
        compacted = []
        for device in devices:
            attributes = device.get("attributes") if isinstance(device, Mapping) else None
            if not isinstance(attributes, Mapping):
                compacted.append(device)
                continue
            compacted.append({**device, "attributes": self._attributes(attributes)})
        return {**body, "spec": {**spec, "devices": compacted}}
