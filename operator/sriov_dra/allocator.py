"""Allocate devices from ResourceSlices to a static ResourceClaim, as kube-scheduler would.

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

**Taken devices**: every device in any claim's ``status.allocation`` (whoever wrote
it, :func:`allocated_devices`), except ``adminAccess`` results. A request with
``adminAccess: true`` may use taken devices (as in Kubernetes).

**Requests**: ``exactly`` (``ExactCount`` with ``count``, or ``All`` = every
matching device of the chosen node, all free, at least one)
and ``firstAvailable`` (subrequests tried in order). A device matches when every
CEL selector of the DeviceClass, then of the request, is true; an evaluation
error aborts the allocation with :class:`SelectorError`, never a silent no-match.
``constraints[].matchAttribute``: every device of the named requests (all when
none are named; ``req`` covers its subrequests) has the attribute, with the same
type and value.

**Node choice (deterministic)**: every device of a claim comes from one node.
Nodes are tried in name order and the first node where the whole claim fits
wins. On a node, devices are ordered by (pool name, device name); requests are
filled in claim order, each alternative in order, each with the first devices
that fit, backtracking when a later request or a constraint fails.

**Speed**: selector results are memoized per device (for the lifetime of the
:class:`Pool`), the matching devices of a pool per selector set, and each
device's CEL input is built once. Pass a :class:`DeviceUsage` as ``in_use`` to let
:func:`allocate` skip full nodes without scanning them.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from sriov_dra.cel_selectors import CompiledSelector, DeviceInput, compile_selector
from sriov_dra.claim_requests import Alternative, claim_requests, request_classes
from sriov_dra.errors import NoDeviceAvailable, SelectorError
from sriov_dra.node_selector import node_selector


class DeviceKey(NamedTuple):
    """The unique name of a device: ``<driver>/<pool>/<device>``."""

    driver: str
    pool: str
    device: str


_FIX_BUSY: Final = (
    "delete a claim that holds a matching VF, publish more VFs, or relax the request's selectors"
)
_FIX_NONE: Final = (
    "no published VF matches: check the DeviceClass and request selectors, or publish matching VFs"
)


@dataclass(eq=False)
class Device:
    """One published device, with its memoized selector results."""

    key: DeviceKey
    node: str
    data: Mapping[str, Any]
    """The ResourceSlice device dict."""
    input: DeviceInput
    memo: dict[str, bool | SelectorError] = field(default_factory=dict)

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
    """Sorted by device name."""
    problem: str = ""
    """Why the pool cannot be used (empty when it can)."""
    _matching: dict[tuple[str, ...], tuple[Device, ...]] = field(default_factory=dict)
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

    def matching(self, selectors: Sequence[_Selector]) -> tuple[Device, ...]:
        """Devices for which every selector is true (memoized per selector set)."""
        key = tuple(s.compiled.expression for s in selectors)
        return self.matching_key(key, selectors)

    def matching_key(
        self, key: tuple[str, ...], selectors: Sequence[_Selector]
    ) -> tuple[Device, ...]:
        """:meth:`matching` with the selector set's key (its expressions) precomputed."""
        found = self._matching.get(key)
        if found is None:
            found = tuple(d for d in self.devices if all(s.test(d) for s in selectors))
            self._matching[key] = found
        return found


@dataclass(frozen=True)
class _Selector:
    compiled: CompiledSelector
    path: str
    """Where the expression was written, for messages."""

    def test(self, device: Device) -> bool:
        expression = self.compiled.expression
        outcome = device.memo.get(expression)
        if outcome is None:
            try:
                outcome = self.compiled.evaluate(device.input)
            except SelectorError as exc:
                outcome = exc
            device.memo[expression] = outcome
        if isinstance(outcome, SelectorError):
            message = outcome.message.removeprefix(f"device {device.key.device}: ")
            raise SelectorError(
                f"device {device.key.pool}/{device.key.device}: {message}",
                field=self.path,
                fix=outcome.fix,
            )
        return outcome


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
                devices=tuple(devices),
                problem=problem,
            )
        )
    return pools


def allocated_devices(claims: Iterable[Mapping[str, Any]]) -> dict[DeviceKey, str]:
    """Every device some claim's ``status.allocation`` holds -> ``namespace/name``.

    Results with ``adminAccess: true`` do not take the device.
    """
    held: dict[DeviceKey, str] = {}
    for claim in claims:
        allocation = (claim.get("status") or {}).get("allocation") or {}
        metadata = claim.get("metadata") or {}
        owner = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
        for result in (allocation.get("devices") or {}).get("results") or ():
            if result.get("adminAccess"):
                continue
            held[DeviceKey(result["driver"], result["pool"], result["device"])] = owner
    return held


_USAGE_SERIALS: Final = itertools.count(1)


class DeviceUsage(Collection[DeviceKey]):
    """Taken devices with per-pool counts, kept up to date by the caller.

    A plain set works as ``in_use`` too; this one lets :func:`allocate` skip nodes
    that have too few free devices without scanning them.
    """

    def __init__(self, held: Mapping[DeviceKey, str] | Iterable[DeviceKey] = ()) -> None:
        self._owners: dict[DeviceKey, str] = {}
        self._by_pool: dict[tuple[str, str], set[str]] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._serial = next(_USAGE_SERIALS)
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


@dataclass(frozen=True)
class _Alternative:
    name: str
    """Result request name: ``req`` or ``req/sub``."""
    class_name: str
    selectors: tuple[_Selector, ...]
    all_mode: bool
    count: int
    admin: bool
    path: str
    key: tuple[str, ...] = ()
    """The selector expressions: the memo key of :meth:`Pool.matching`."""

    @property
    def need(self) -> int:
        """Fewest devices this alternative takes from the free ones."""
        return 0 if self.admin else (1 if self.all_mode else self.count)


@dataclass(frozen=True)
class _Request:
    name: str
    index: int
    alternatives: tuple[_Alternative, ...]


@dataclass(frozen=True)
class _Constraint:
    attribute: str
    requests: frozenset[str]

    def applies(self, alternative: str) -> bool:
        return not self.requests or bool(
            {alternative, alternative.split("/", 1)[0]} & self.requests
        )


def _selectors(raw: Iterable[Mapping[str, Any]], path: str) -> list[_Selector]:
    found = []
    for index, selector in enumerate(raw or ()):
        expression = (selector.get("cel") or {}).get("expression")
        where = f"{path}[{index}].cel.expression"
        if not isinstance(expression, str):
            raise SelectorError(
                "only CEL selectors are supported",
                field=where,
                fix="write the selector as cel: {expression: ...}",
            )
        try:
            compiled = compile_selector(expression)
        except SelectorError as exc:
            raise SelectorError(exc.message, field=where, fix=exc.fix) from exc
        found.append(_Selector(compiled, where))
    return found


def _alternative(
    alternative: Alternative, device_classes: Mapping[str, Mapping[str, Any]]
) -> _Alternative:
    raw, path, class_name = alternative.spec, alternative.path, alternative.class_name
    device_class = device_classes.get(class_name)
    if device_class is None:
        raise NoDeviceAvailable(
            f"DeviceClass {class_name!r} does not exist",
            field=f"{path}.deviceClassName",
            fix=f"create DeviceClass {class_name!r} or name an existing one",
        )
    class_selectors = _selectors(
        (device_class.get("spec") or {}).get("selectors") or (),
        f"DeviceClass {class_name} spec.selectors",
    )
    request_selectors = _selectors(raw.get("selectors") or (), f"{path}.selectors")
    all_mode = raw.get("allocationMode", "ExactCount") == "All"
    return _Alternative(
        name=alternative.name,
        class_name=class_name,
        selectors=tuple(class_selectors + request_selectors),
        key=tuple(s.compiled.expression for s in class_selectors + request_selectors),
        all_mode=all_mode,
        count=0 if all_mode else int(raw.get("count") or 1),
        admin=bool(raw.get("adminAccess")),
        path=path,
    )


def _requests(
    claim: Mapping[str, Any], device_classes: Mapping[str, Mapping[str, Any]]
) -> list[_Request]:
    return [
        _Request(
            name=request.name,
            index=request.index,
            alternatives=tuple(_alternative(a, device_classes) for a in request.alternatives),
        )
        for request in claim_requests(claim)
    ]


class _Search:
    """Backtracking search for one node (see the module doc for the order)."""

    def __init__(
        self,
        pools: Sequence[Pool],
        requests: Sequence[_Request],
        constraints: Sequence[_Constraint],
        in_use: Collection[DeviceKey],
    ) -> None:
        self.pools = pools
        self.requests = requests
        self.constraints = constraints
        self.in_use = in_use
        self.picked: list[tuple[_Alternative, Device]] = []
        self.taken: set[int] = set()
        self.fixed: dict[int, tuple[str, Any]] = {}

    def candidates(self, alternative: _Alternative) -> list[Device] | None:
        """Devices the alternative may take here; None when it cannot be met here."""
        key, selectors = alternative.key, alternative.selectors
        matching = [d for pool in self.pools for d in pool.matching_key(key, selectors)]
        if alternative.all_mode:
            if not matching:
                return None
            if not alternative.admin and any(d.key in self.in_use for d in matching):
                return None
            return matching
        if alternative.admin:
            return matching
        return [d for d in matching if d.key not in self.in_use]

    def run(self) -> list[tuple[_Alternative, Device]] | None:
        return list(self.picked) if self._request(0) else None

    def _request(self, index: int) -> bool:
        if index == len(self.requests):
            return True
        for alternative in self.requests[index].alternatives:
            devices = self.candidates(alternative)
            if devices is None:
                continue
            applicable = [i for i, c in enumerate(self.constraints) if c.applies(alternative.name)]
            needed = len(devices) if alternative.all_mode else alternative.count
            if self._slot(index, alternative, devices, applicable, needed, 0):
                return True
        return False

    def _slot(
        self,
        index: int,
        alternative: _Alternative,
        devices: list[Device],
        applicable: list[int],
        remaining: int,
        start: int,
    ) -> bool:
        if remaining == 0:
            return self._request(index + 1)
        for position in range(start, len(devices) - remaining + 1):
            device = devices[position]
            if id(device) in self.taken:
                if alternative.all_mode:
                    return False
                continue
            newly_fixed = self._fits(device, applicable)
            if newly_fixed is None:
                if alternative.all_mode:
                    return False
                continue
            self.taken.add(id(device))
            self.picked.append((alternative, device))
            if self._slot(index, alternative, devices, applicable, remaining - 1, position + 1):
                return True
            self.picked.pop()
            self.taken.discard(id(device))
            for constraint in newly_fixed:
                del self.fixed[constraint]
            if alternative.all_mode:
                return False
        return False

    def _fits(self, device: Device, applicable: list[int]) -> list[int] | None:
        """Constraints this device fixes now, or None when it violates one."""
        newly: list[int] = []
        for constraint in applicable:
            value = device.attribute(self.constraints[constraint].attribute)
            if value is None:
                break
            fixed = self.fixed.get(constraint)
            if fixed is None:
                newly.append(constraint)
            elif fixed != value:
                break
        else:
            for constraint in newly:
                value = device.attribute(self.constraints[constraint].attribute)
                assert value is not None
                self.fixed[constraint] = value
            return newly
        return None


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
        names = set(allocated) | {r.split("/", 1)[0] for r in allocated}
        for entry in spec.get("config") or ():
            requests = list(entry.get("requests") or ())
            if not entry.get("opaque") or (requests and not names & set(requests)):
                continue
            item: dict[str, Any] = {"source": "FromClaim", "opaque": entry["opaque"]}
            if requests:
                item["requests"] = requests
            config.append(item)
        return {
            "devices": {"results": [dict(r) for r in self.results], "config": config},
            "nodeSelector": node_selector(self.node),
        }


def _plural(count: int) -> str:
    return f"{count} VF matches" if count == 1 else f"{count} VFs match"


_NAMED_INCOMPLETE: Final = 3
"""Incomplete pools named in a NoDeviceAvailable message; the rest are counted."""


def _incomplete_note(incomplete: Sequence[Pool]) -> str:
    """``; not counted: pool a is being republished (1 of 2 slices), ...`` or ''."""
    if not incomplete:
        return ""
    named = [
        f"pool {p.name} is being republished ({p.slices} of {p.expected_slices} slices)"
        for p in incomplete[:_NAMED_INCOMPLETE]
    ]
    more = len(incomplete) - len(named)
    if more:
        named.append(f"{more} more pool{'s' if more > 1 else ''} likewise")
    return "; not counted until complete: " + ", ".join(named)


def _explain(
    requests: Sequence[_Request],
    constraints: Sequence[_Constraint],
    nodes: Mapping[str, Sequence[Pool]],
    in_use: Collection[DeviceKey],
    incomplete: Sequence[Pool],
) -> NoDeviceAvailable:
    """Why nothing fits: the first request that fits no node alone, else the combination.

    Pools skipped as ``incomplete`` are named, with a fix that says the wait is transient.
    """
    note = _incomplete_note(incomplete)
    transient = (
        "; or just wait: the claim is retried by itself as soon as the pools named are complete"
        if incomplete
        else ""
    )
    summaries = []
    for request in requests:
        matching: dict[int, Device] = {}
        fits_somewhere = False
        for pools in nodes.values():
            search = _Search(pools, [request], [], in_use)
            for alternative in request.alternatives:
                for pool in pools:
                    for device in pool.matching(alternative.selectors):
                        matching[id(device)] = device
                found = search.candidates(alternative)
                needed = 1 if alternative.all_mode else alternative.count
                fits_somewhere |= found is not None and len(found) >= needed
        total = len(matching)
        free = sum(1 for d in matching.values() if d.key not in in_use)
        counts = f"{_plural(total)}, {free} free"
        summaries.append(f'request "{request.name}": {counts}')
        if fits_somewhere:
            continue
        detail = ""
        first = request.alternatives[0]
        if len(request.alternatives) == 1 and first.all_mode:
            detail = "; All needs every matching VF of a node free"
        elif len(request.alternatives) == 1 and first.count > 1 and free >= first.count:
            detail = f"; {first.count} are needed on one node"
        return NoDeviceAvailable(
            f'no free VF matches request "{request.name}": {counts}{detail}{note}',
            field=f"spec.devices.requests[{request.index}]",
            fix=(_FIX_NONE if total == 0 else _FIX_BUSY) + transient,
        )
    attributes = ", ".join(c.attribute for c in constraints)
    why = f" with matchAttribute {attributes}" if attributes else ""
    return NoDeviceAvailable(
        f"no node has free VFs for all requests together{why}: " + "; ".join(summaries) + note,
        field="spec.devices",
        fix="free VFs on one node, or relax spec.devices.constraints and the selectors" + transient,
    )


_NODE_CACHE: dict[tuple[str, tuple[int, ...]], tuple[Sequence[Pool], dict[str, list[Pool]]]] = {}


def _nodes(pools: Sequence[Pool], driver: str) -> dict[str, list[Pool]]:
    """Usable (complete, sound) pools of ``driver`` by node, in name order (cached).

    The cache entry keeps the pools alive, so their ids cannot be reused meanwhile.
    """
    key = (driver, tuple(map(id, pools)))
    cached = _NODE_CACHE.get(key)
    if cached is not None:
        return cached[1]
    nodes: dict[str, list[Pool]] = {}
    for pool in sorted(pools, key=lambda p: (p.node, p.name)):
        if pool.driver == driver and not pool.problem and pool.complete:
            nodes.setdefault(pool.node, []).append(pool)
    if len(_NODE_CACHE) >= 8:
        _NODE_CACHE.clear()
    _NODE_CACHE[key] = (tuple(pools), nodes)
    return nodes


def allocate(
    claim: Mapping[str, Any],
    *,
    device_classes: Mapping[str, Mapping[str, Any]],
    pools: Sequence[Pool],
    in_use: Collection[DeviceKey],
    driver: str,
) -> Allocation:
    """Choose devices for ``claim`` (see the module doc for rules and order).

    Raises NoDeviceAvailable (with counts of matching and free VFs) or SelectorError.
    """
    spec = (claim.get("spec") or {}).get("devices") or {}
    requests = _requests(claim, device_classes)
    if not requests:
        return Allocation(node="", results=[], devices=[])
    constraints = [
        _Constraint(str(c["matchAttribute"]), frozenset(c.get("requests") or ()))
        for c in spec.get("constraints") or ()
        if c.get("matchAttribute")
    ]
    nodes = _nodes(pools, driver)
    need = sum(min(a.need for a in r.alternatives) for r in requests)
    usage = in_use if isinstance(in_use, DeviceUsage) else None
    taken = usage.held if usage is not None else in_use
    for node, node_pools in nodes.items():
        if usage is not None:
            free = 0
            for pool in node_pools:
                free += usage.free_in(pool)
            if free < need:
                continue
        picked = _Search(node_pools, requests, constraints, taken).run()
        if picked is not None:
            results = []
            for alternative, device in picked:
                result: dict[str, Any] = {
                    "request": alternative.name,
                    "driver": device.key.driver,
                    "pool": device.key.pool,
                    "device": device.key.device,
                }
                if alternative.admin:
                    result["adminAccess"] = True
                results.append(result)
            return Allocation(node=node, results=results, devices=[d.data for _, d in picked])
    incomplete = [p for p in pools if p.driver == driver and not p.problem and not p.complete]
    raise _explain(requests, constraints, nodes, taken, incomplete)
