"""What the allocator allocates from: the pools of published devices, and the taken ones.

Inputs are plain API dicts; nothing here does I/O.

**Pools** (:func:`pools_from_slices`): only slices of our driver; per pool only the
slices of the highest ``pool.generation``; a pool is *complete* when it has
``resourceSliceCount`` of them. Only complete pools are allocated from (stricter
than kube-scheduler, which serves ``ExactCount`` from the devices of an
incomplete pool): a pool is incomplete while its driver republishes it, and a
device seen in a half-published generation may be gone from the whole one.
:class:`~sriov_dra.errors.NoDeviceAvailable` names the pools skipped as
incomplete, so the wait is seen to be transient; the caller retries when slices
change. Pools with duplicate device names are unusable (``Pool.problem``). Only
node-local slices (``spec.nodeName``) count: slices for ``nodeSelector``/``allNodes``
cannot be pinned to one node.

**Devices not offered** (``Pool.refused``): the node agent finds an allocated VF
by the PCI address its device name is made from (:func:`~sriov_dra.naming.device_name`).
A device named otherwise (in a slice our agent did not publish) could be allocated
but never prepared, so it is kept out of the pool, and
:class:`~sriov_dra.errors.NoDeviceAvailable` names it with the fix.

**Tainted devices** stay in the pool: whether a taint keeps a device away depends
on the request's tolerations (:mod:`sriov_dra.device_taints`, applied by the search).

**Taken devices**: every device in any claim's ``status.allocation`` (whoever wrote
it, :func:`held_devices`), except ``adminAccess`` results. :class:`DeviceUsage`
keeps them with per-pool counts.

**Memos**: a selector that reads only the driver and named attributes is
evaluated once per the values it reads (kept on the compiled selector: a node
name is evaluated once, not on each of the node's VFs); other results are
memoized per device (for the lifetime of the :class:`Pool`). The matching
devices of a pool are kept per selector set, each device's CEL input is built
once, and devices of unchanged slices are reused.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from sriov_dra.cel_selectors import CompiledSelector, DeviceInput
from sriov_dra.constants import ATTR_PCI_ADDRESS
from sriov_dra.errors import SelectorError
from sriov_dra.naming import is_device_name


class DeviceKey(NamedTuple):
    """The unique name of a device: ``<driver>/<pool>/<device>``."""

    driver: str
    pool: str
    device: str


@dataclass(eq=False, slots=True)
class Device:
    """One published device, with its memoized selector results."""

    key: DeviceKey
    node: str
    data: Mapping[str, Any]
    """The ResourceSlice device dict."""
    input: DeviceInput
    memo: dict[str, bool | SelectorError] | None = None
    """Results by expression, made on the first one to keep: most selectors' results are
    kept per shared key instead, and an empty dict on each of 64,000 VFs was 4 MB."""
    refusal: str = field(init=False)
    """Why the device is not offered (empty when it is): see :func:`refusal`."""
    taints: tuple[Mapping[str, Any], ...] = field(init=False)
    """The device's ``taints`` (resource.k8s.io/v1, gate DRADeviceTaints)."""

    def __post_init__(self) -> None:
        self.refusal = refusal(self)
        self.taints = tuple(t for t in self.data.get("taints") or () if isinstance(t, Mapping))

    def attribute(self, qualified: str) -> tuple[str, Any] | None:
        """``(type, value)`` of a fully qualified attribute, or None."""
        attributes = self.data.get("attributes") or {}
        domain, _, ident = qualified.partition("/")
        raw = attributes.get(qualified)
        if raw is None and domain == self.key.driver:
            raw = attributes.get(ident)
        if not isinstance(raw, Mapping):
            return None
        for kind in ("int", "bool", "string", "version"):
            if kind in raw:
                return kind, raw[kind]
        return None


@dataclass(eq=False)
class Pool:
    """The usable newest generation of one resource pool on one node."""

    driver: str
    name: str
    generation: int
    node: str
    slices: int
    """Slices of the newest generation seen."""
    expected_slices: int
    """``resourceSliceCount`` of that generation."""
    devices: tuple[Device, ...]
    """The devices offered, sorted by name."""
    refused: tuple[Device, ...] = ()
    """Devices published but not offered (``Device.refusal`` says why), sorted by name."""
    problem: str = ""
    """Why the pool cannot be used (empty when it can)."""
    _matching: dict[tuple[str, ...], tuple[Device, ...]] = field(default_factory=dict)
    _keys: dict[tuple[tuple[str, str], ...], dict[Device, Hashable | None]] = field(
        default_factory=dict
    )
    """Per set of attributes read, each device's shared-result key (see :meth:`Selector.test`)."""
    names: frozenset[str] = field(init=False)
    """The device names, for counting taken devices with one set operation."""
    _usage: tuple[int, int, int] | None = None
    """(DeviceUsage serial, its version for this pool, free devices) of the last count."""

    def __post_init__(self) -> None:
        self.names = frozenset(d.key.device for d in self.devices)

    @property
    def complete(self) -> bool:
        """Every slice of the newest generation is published."""
        return self.slices == self.expected_slices

    def matching(self, selectors: Sequence[Selector]) -> tuple[Device, ...]:
        """Devices for which every selector is true (memoized per selector set)."""
        key = tuple(s.compiled.expression for s in selectors)
        return self.matching_key(key, selectors)

    def matching_key(
        self, key: tuple[str, ...], selectors: Sequence[Selector]
    ) -> tuple[Device, ...]:
        """:meth:`matching` with the selector set's key (its expressions) precomputed."""
        found = self._matching.get(key)
        if found is None:
            # One selector at a time over the devices the earlier ones kept (as all() would
            # short-circuit), with the keys of shared results computed once per pool.
            kept: Sequence[Device] = self.devices
            for selector in selectors:
                keys = self.shared_keys(selector.compiled)
                if keys is None:
                    kept = [d for d in kept if selector.test(d)]
                else:
                    kept = [d for d in kept if selector.test_keyed(d, keys[d])]
            found = tuple(kept)
            self._matching[key] = found
        return found

    def shared_keys(self, compiled: CompiledSelector) -> dict[Device, Hashable | None] | None:
        """Each device's :meth:`CompiledSelector.shared_key`, None when the selector has none."""
        reads = compiled.reads
        if reads is None:
            return None
        keys = self._keys.get(reads)
        if keys is None:
            distinct: dict[Hashable, Hashable] = {}
            keys = self._keys[reads] = {}
            for device in self.devices:
                found = compiled.shared_key(device.input)
                keys[device] = None if found is None else distinct.setdefault(found, found)
        return keys


@dataclass(frozen=True)
class Selector:
    """A compiled CEL selector and where it was written, tested with per-device memos."""

    compiled: CompiledSelector
    path: str
    """Where the expression was written, for messages."""

    def test(self, device: Device) -> bool:
        """True when ``device`` is selected; raises SelectorError naming pool, device, path."""
        return self.test_keyed(device, self.compiled.shared_key(device.input))

    def test_keyed(self, device: Device, key: Hashable | None) -> bool:
        """:meth:`test` with the device's shared-result key computed already."""
        compiled = self.compiled
        outcome = device.memo.get(compiled.expression) if device.memo else None
        if outcome is None:
            # A result that depends only on a few attributes is kept once per their values,
            # not per device: a node's or a PF's name is then evaluated once, not per VF.
            if key is not None:
                outcome = compiled.shared.get(key)
            if outcome is None:
                try:
                    outcome = compiled.evaluate(device.input)
                except SelectorError as exc:
                    outcome = exc
                if key is not None and not isinstance(outcome, SelectorError):
                    compiled.shared[key] = outcome
                else:
                    if device.memo is None:
                        device.memo = {}
                    device.memo[compiled.expression] = outcome
        if isinstance(outcome, SelectorError):
            message = outcome.message.removeprefix(f"device {device.key.device}: ")
            raise SelectorError(
                f"device {device.key.pool}/{device.key.device}: {message}",
                field=self.path,
                fix=outcome.fix,
            )
        return outcome


REFUSAL_FIX: Final = (
    "name the device after its VF's PCI address (0000-08-00-2 for 0000:08:00.2) and publish "
    f"that address as attribute {ATTR_PCI_ADDRESS}, as the sriov-dra node agent does; "
    "or let the node agent publish the node's slices"
)
"""How to make a refused device allocatable (the fix of the NoDeviceAvailable naming it)."""


def refusal(device: Device) -> str:
    """Why ``device`` cannot be offered, or ``""`` when it can.

    The node agent finds an allocated VF by the PCI address its device name is made
    from; a device named otherwise could be allocated but never prepared.
    """
    if is_device_name(device.key.device):
        return ""
    if device.attribute(ATTR_PCI_ADDRESS) is None:
        return f"it has no {ATTR_PCI_ADDRESS} attribute and its name is not made from a PCI address"
    return "its name is not made from a PCI address, and the node agent finds the VF by its name"


_DEVICE_CACHE: dict[tuple[str, str, str], tuple[Device, ...]] = {}
_DEVICE_CACHE_LIMIT: Final = 8192


def _slice_devices(slice_: Mapping[str, Any], driver: str, pool: str, node: str) -> list[Device]:
    metadata = slice_.get("metadata") or {}
    uid, version = metadata.get("uid", ""), metadata.get("resourceVersion", "")
    cache_key = (uid, version, driver)
    if uid and version and cache_key in _DEVICE_CACHE:
        return list(_DEVICE_CACHE[cache_key])
    devices = tuple(
        Device(
            key=DeviceKey(driver, pool, str(raw.get("name", ""))),
            node=node,
            data=raw,
            input=DeviceInput(raw, driver=driver),
        )
        for raw in (slice_.get("spec") or {}).get("devices") or ()
    )
    if uid and version:
        if len(_DEVICE_CACHE) >= _DEVICE_CACHE_LIMIT:
            _DEVICE_CACHE.clear()
        _DEVICE_CACHE[cache_key] = devices
    return list(devices)


def pools_from_slices(slices: Iterable[Mapping[str, Any]], *, driver: str) -> list[Pool]:
    """Pools of ``driver`` from ResourceSlice dicts, newest generation only, by name.

    Devices of unchanged slices (same uid and resourceVersion) are reused between
    calls, so their memoized selector results survive.
    """
    newest: dict[str, list[Mapping[str, Any]]] = {}
    generations: dict[str, int] = {}
    for slice_ in slices:
        spec = slice_.get("spec") or {}
        if spec.get("driver") != driver:
            continue
        pool = spec.get("pool") or {}
        name = str(pool.get("name", ""))
        generation = int(pool.get("generation", 0))
        if generation > generations.get(name, -1):
            generations[name] = generation
            newest[name] = []
        if generation == generations[name]:
            newest[name].append(slice_)
    pools: list[Pool] = []
    for name in sorted(newest):
        group = newest[name]
        expected = max(
            int((s["spec"].get("pool") or {}).get("resourceSliceCount", 1)) for s in group
        )
        nodes = {str(s["spec"].get("nodeName") or "") for s in group}
        node = next(iter(nodes)) if len(nodes) == 1 else ""
        devices: list[Device] = []
        for slice_ in group:
            devices.extend(_slice_devices(slice_, driver, name, node))
        devices.sort(key=lambda d: d.key.device)
        problem = ""
        if len(nodes) != 1:
            problem = f"pool {name} spans nodes {sorted(nodes)}"
        elif not node:
            problem = f"pool {name} is not node-local (no spec.nodeName)"
        else:
            names = [d.key.device for d in devices]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                problem = f"pool {name} publishes device {duplicates[0]} more than once"
        pools.append(
            Pool(
                driver=driver,
                name=name,
                generation=generations[name],
                node=node,
                slices=len(group),
                expected_slices=expected,
                devices=tuple(d for d in devices if not d.refusal),
                refused=tuple(d for d in devices if d.refusal),
                problem=problem,
            )
        )
    return pools


def held_devices(claim: Mapping[str, Any]) -> frozenset[DeviceKey]:
    """Devices a claim's ``status.allocation`` holds (adminAccess results excluded).

    Whoever wrote the allocation, these devices are taken: the scheduler treats
    them the same way.
    """
    allocation = (claim.get("status") or {}).get("allocation") or {}
    results = (allocation.get("devices") or {}).get("results") or []
    return frozenset(
        DeviceKey(str(r["driver"]), str(r["pool"]), str(r["device"]))
        for r in results
        if not r.get("adminAccess")
    )


_USAGE_SERIALS: Final = itertools.count(1)


class DeviceUsage(Collection[DeviceKey]):
    """Taken devices with per-pool counts, kept up to date by the caller.

    A plain set works as ``in_use`` too; this one lets
    :func:`~sriov_dra.allocator.allocate` skip nodes that have too few free devices
    without scanning them.
    """

    def __init__(self, held: Mapping[DeviceKey, str] | Iterable[DeviceKey] = ()) -> None:
        self._owners: dict[DeviceKey, str] = {}
        self._by_pool: dict[tuple[str, str], set[str]] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._serial = next(_USAGE_SERIALS)
        self.releases = 0
        """Devices marked free so far (the allocator's known-full nodes hold until one is)."""
        owners = held.items() if isinstance(held, Mapping) else ((k, "") for k in held)
        for key, owner in owners:
            self.add(key, owner)

    def __contains__(self, key: object) -> bool:
        return key in self._owners

    def __iter__(self) -> Iterator[DeviceKey]:
        return iter(self._owners)

    def __len__(self) -> int:
        return len(self._owners)

    @property
    def serial(self) -> int:
        """Tells this DeviceUsage from every other one made in this process."""
        return self._serial

    @property
    def held(self) -> Collection[DeviceKey]:
        """The taken keys as a view with C-speed membership tests."""
        return self._owners.keys()

    def owner(self, key: DeviceKey) -> str | None:
        """``namespace/name`` of the claim holding ``key``, or None."""
        return self._owners.get(key)

    def add(self, key: DeviceKey, owner: str = "") -> None:
        """Mark ``key`` taken by ``owner``."""
        self._owners[key] = owner
        pool = (key.driver, key.pool)
        self._by_pool.setdefault(pool, set()).add(key.device)
        self._versions[pool] = self._versions.get(pool, 0) + 1

    def discard(self, key: DeviceKey) -> None:
        """Mark ``key`` free."""
        if key not in self._owners:
            return
        del self._owners[key]
        self.releases += 1
        pool = (key.driver, key.pool)
        self._by_pool.get(pool, set()).discard(key.device)
        self._versions[pool] = self._versions.get(pool, 0) + 1

    def free_in(self, pool: Pool) -> int:
        """How many devices of ``pool`` are not taken (cached until the pool's usage changes)."""
        ident = (pool.driver, pool.name)
        version = self._versions.get(ident, 0)
        cached = pool._usage
        if cached is not None and cached[0] == self._serial and cached[1] == version:
            return cached[2]
        used = self._by_pool.get(ident)
        free = len(pool.devices) - (len(pool.names & used) if used else 0)
        pool._usage = (self._serial, version, free)
        return free
