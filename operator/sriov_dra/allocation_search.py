"""The search for one claim on one node: compiled requests, constraints, backtracking.

**Requests**: ``exactly`` (``ExactCount`` with ``count``, or ``All`` = every
matching device of the chosen node, all free, at least one)
and ``firstAvailable`` (subrequests tried in order). A device matches when every
CEL selector of the DeviceClass, then of the request, is true; an evaluation
error aborts the allocation with :class:`SelectorError`, never a silent no-match.
A request with ``adminAccess: true`` may use taken devices (as in Kubernetes).
A device with a ``NoSchedule``/``NoExecute`` taint the request (or subrequest)
does not tolerate is not a candidate (:mod:`sriov_dra.device_taints`).
``constraints[].matchAttribute``: every device of the named requests (all when
none are named; ``req`` covers its subrequests) has the attribute, with the same
type and value.

**Order on a node**: devices are ordered by (pool name, device name); requests
are filled in claim order, each alternative in order, each with the first
devices that fit, backtracking when a later request or a constraint fails.

**Results limit**: a claim gets at most :data:`MAX_ALLOCATION_RESULTS` results, as
kube-scheduler allows. The alternatives are chosen jointly under it: an
alternative is skipped when its devices, those already picked and the fewest the
later requests can take on this node (each by its smallest alternative) together
break the limit, so a larger ``firstAvailable`` subrequest falls back to a
smaller one instead of leaving the claim unallocated.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sriov_dra.cel_selectors import compile_selector
from sriov_dra.claim_requests import Alternative, claim_requests, listed
from sriov_dra.constants import MAX_ALLOCATION_RESULTS
from sriov_dra.device_pools import Device, DeviceKey, Pool, Selector
from sriov_dra.device_taints import untolerated
from sriov_dra.errors import NoDeviceAvailable, SelectorError


@dataclass(frozen=True)
class CompiledAlternative:
    """One alternative of a request, its selectors compiled (class ones first)."""

    name: str
    """Result request name: ``req`` or ``req/sub``."""
    selectors: tuple[Selector, ...]
    all_mode: bool
    count: int
    admin: bool
    key: tuple[str, ...] = ()
    """The selector expressions: the memo key of :meth:`Pool.matching`."""
    tolerations: tuple[Mapping[str, Any], ...] = ()
    """The request's ``tolerations`` of device taints."""

    @property
    def need(self) -> int:
        """Fewest devices this alternative takes from the free ones."""
        return 0 if self.admin else (1 if self.all_mode else self.count)

    @property
    def fewest_results(self) -> int:
        """Fewest results it adds on any node (``All``: at least one)."""
        return 1 if self.all_mode else self.count


@dataclass(frozen=True)
class CompiledRequest:
    """A request and its compiled alternatives, in order."""

    name: str
    index: int
    alternatives: tuple[CompiledAlternative, ...]


@dataclass(frozen=True)
class Constraint:
    """``matchAttribute``: one attribute, equal on every device of the named requests."""

    attribute: str
    requests: frozenset[str]
    """The requests it covers (all when empty); ``req`` covers its subrequests."""

    def applies(self, alternative: str) -> bool:
        """The constraint covers result request ``alternative`` (``req`` or ``req/sub``)."""
        return listed(self.requests, alternative)


def _selectors(raw: Iterable[Mapping[str, Any]], path: str) -> list[Selector]:
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
        found.append(Selector(compiled, where))
    return found


def _alternative(
    alternative: Alternative, device_classes: Mapping[str, Mapping[str, Any]]
) -> CompiledAlternative:
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
    return CompiledAlternative(
        name=alternative.name,
        selectors=tuple(class_selectors + request_selectors),
        key=tuple(s.compiled.expression for s in class_selectors + request_selectors),
        all_mode=all_mode,
        count=0 if all_mode else int(raw.get("count") or 1),
        admin=bool(raw.get("adminAccess")),
        tolerations=tuple(raw.get("tolerations") or ()),
    )


def compile_requests(
    claim: Mapping[str, Any], device_classes: Mapping[str, Mapping[str, Any]]
) -> list[CompiledRequest]:
    """The claim's requests with their selectors compiled; raises SelectorError, or
    NoDeviceAvailable when a DeviceClass does not exist."""
    return [
        CompiledRequest(
            name=request.name,
            index=request.index,
            alternatives=tuple(_alternative(a, device_classes) for a in request.alternatives),
        )
        for request in claim_requests(claim)
    ]


def claim_constraints(claim: Mapping[str, Any]) -> list[Constraint]:
    """The claim's ``matchAttribute`` constraints."""
    spec = (claim.get("spec") or {}).get("devices") or {}
    return [
        Constraint(str(c["matchAttribute"]), frozenset(c.get("requests") or ()))
        for c in spec.get("constraints") or ()
        if c.get("matchAttribute")
    ]


class Search:
    """Backtracking search for one node (see the module doc for the order)."""

    def __init__(
        self,
        pools: Sequence[Pool],
        requests: Sequence[CompiledRequest],
        constraints: Sequence[Constraint],
        in_use: Collection[DeviceKey],
        *,
        limit: bool = True,
    ) -> None:
        """``limit``: check :data:`MAX_ALLOCATION_RESULTS` (False when no choice can break it)."""
        self.pools = pools
        self.limit = limit
        self.requests = requests
        self.constraints = constraints
        self.in_use = in_use
        self.picked: list[tuple[CompiledAlternative, Device]] = []
        self.taken: set[int] = set()
        self.fixed: dict[int, tuple[str, Any]] = {}
        self.later: list[int] = []

    def candidates(self, alternative: CompiledAlternative) -> list[Device] | None:
        """Devices the alternative may take here; None when it cannot be met here."""
        key, selectors = alternative.key, alternative.selectors
        matching = [
            d
            for pool in self.pools
            for d in pool.matching_key(key, selectors)
            if not d.taints or not untolerated(d.taints, alternative.tolerations)
        ]
        if alternative.all_mode:
            if not matching:
                return None
            if not alternative.admin and any(d.key in self.in_use for d in matching):
                return None
            return matching
        if alternative.admin:
            return matching
        return [d for d in matching if d.key not in self.in_use]

    def results_here(self, alternative: CompiledAlternative) -> int | None:
        """How many results the alternative adds on this node; None when it cannot be met."""
        devices = self.candidates(alternative)
        if devices is None:
            return None
        return len(devices) if alternative.all_mode else alternative.count

    def _fewest(self, request: CompiledRequest) -> int | None:
        """Results of the request's smallest alternative that can be met here; None if none."""
        counts = [c for a in request.alternatives if (c := self.results_here(a)) is not None]
        return min(counts) if counts else None

    def fewest_results(self) -> int | None:
        """The fewest results the claim can get here, each request by its smallest
        alternative; None when some request cannot be met here at all."""
        total = 0
        for request in self.requests:
            fewest = self._fewest(request)
            if fewest is None:
                return None
            total += fewest
        return total

    def run(self) -> list[tuple[CompiledAlternative, Device]] | None:
        """The (alternative, device) picks for every request, None when the claim does not fit."""
        # later[i]: the fewest results requests i.. can add here, each by its smallest
        # alternative; the limit check below looks ahead with it.
        self.later = [0] * (len(self.requests) + 1)
        for index in range(len(self.requests) - 1, -1, -1) if self.limit else ():
            fewest = self._fewest(self.requests[index])
            self.later[index] = self.later[index + 1] + (
                MAX_ALLOCATION_RESULTS + 1 if fewest is None else fewest
            )
        return list(self.picked) if self._request(0) else None

    def _request(self, index: int) -> bool:
        if index == len(self.requests):
            return True
        for alternative in self.requests[index].alternatives:
            devices = self.candidates(alternative)
            if devices is None:
                continue
            needed = len(devices) if alternative.all_mode else alternative.count
            if self.limit and (
                len(self.picked) + needed + self.later[index + 1] > MAX_ALLOCATION_RESULTS
            ):
                continue
            applicable = [i for i, c in enumerate(self.constraints) if c.applies(alternative.name)]
            if self._slot(index, alternative, devices, applicable, needed, 0):
                return True
        return False

    def _slot(
        self,
        index: int,
        alternative: CompiledAlternative,
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
