"""A claim's device requests, walked in one place: their alternatives and DeviceClasses.

``spec.devices.requests[i]`` is satisfied either ``exactly`` one way, or by the
first of its ``firstAvailable`` subrequests that can be met; results and config
name a subrequest ``req/sub``. The apiserver requires exactly one of the two; a
request with neither reads here as an ``exactly`` without a class. Everything
that asks which DeviceClass a request uses (the ownership rule, config per
request, the allocator, the class config copied into ``status.allocation``)
reads it through this walk, so they cannot disagree.

Which request a ``requests`` list names (of a config entry, a constraint, or
``status.allocation.devices.config``) is decided by :func:`listed` alone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Alternative:
    """One way to satisfy a request: its ``exactly``, or one ``firstAvailable`` subrequest."""

    name: str
    """The name results and config use: ``req`` or ``req/sub``."""
    path: str
    """Where it is written: ``spec.devices.requests[i].exactly`` or ``...firstAvailable[j]``."""
    spec: Mapping[str, Any]
    """Its dict: ``deviceClassName``, ``selectors``, ``allocationMode``, ``count``, ..."""

    @property
    def class_name(self) -> str:
        """The DeviceClass it names ('' when none)."""
        return str(self.spec.get("deviceClassName") or "")


@dataclass(frozen=True)
class Request:
    """One entry of ``spec.devices.requests``, with its alternatives in order."""

    name: str
    index: int
    """Position in ``spec.devices.requests``."""
    alternatives: tuple[Alternative, ...]


def claim_requests(claim: Mapping[str, Any]) -> list[Request]:
    """The claim's requests in spec order, each with its alternatives in order."""
    requests = []
    raw_requests = ((claim.get("spec") or {}).get("devices") or {}).get("requests") or ()
    for index, raw in enumerate(raw_requests):
        name = str(raw.get("name") or "")
        path = f"spec.devices.requests[{index}]"
        if raw.get("firstAvailable"):
            alternatives = tuple(
                Alternative(f"{name}/{sub.get('name') or ''}", f"{path}.firstAvailable[{i}]", sub)
                for i, sub in enumerate(raw["firstAvailable"])
            )
        else:
            alternatives = (Alternative(name, f"{path}.exactly", raw.get("exactly") or {}),)
        requests.append(Request(name=name, index=index, alternatives=alternatives))
    return requests


def alternatives(claim: Mapping[str, Any]) -> Iterator[Alternative]:
    """Every alternative of every request, in spec order."""
    for request in claim_requests(claim):
        yield from request.alternatives


def request_classes(claim: Mapping[str, Any]) -> dict[str, str]:
    """Request (``req`` or ``req/sub``) -> DeviceClass name."""
    return {alternative.name: alternative.class_name for alternative in alternatives(claim)}


def parent_request(name: str) -> str:
    """The request a result name belongs to: ``req`` for both ``req`` and ``req/sub``."""
    return name.split("/", 1)[0]


def listed(requests: Collection[str], name: str) -> bool:
    """A ``requests`` list covers result name ``name`` (``req`` or ``req/sub``).

    As Kubernetes reads ``config[].requests`` and ``constraints[].requests``: an
    empty list covers every request, ``req`` covers the request and each of its
    subrequests, ``req/sub`` covers that subrequest only.
    """
    return not requests or name in requests or parent_request(name) in requests
