"""The inventory of a cluster from its objects, by the operator's own rules.

One function for both readers: the operator's page (from its cache, no API call)
and ``sriov-dra inventory`` (from what it lists with the user's kubeconfig). Both
pass the same kinds of plain dicts, so their JSON is equal for the same state.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sriov_dra.device_pools import Pool
from sriov_dra.inventory import Inventory, build_inventory

from .ownership import Verdict, class_not_found, verdict


def is_ours(
    claim: Mapping[str, Any], classes: Mapping[str, Mapping[str, Any]], driver: str
) -> bool:
    """The operator allocates ``claim``, or tells it that its DeviceClass is missing."""
    decision = verdict(claim, classes, driver)
    if decision is Verdict.CLASS_MISSING:
        return class_not_found(claim, classes, driver) is not None
    return decision is Verdict.OURS


def cluster_inventory(
    *,
    pools: Iterable[Pool],
    claims: Iterable[Mapping[str, Any]],
    classes: Mapping[str, Mapping[str, Any]],
    nodes: Collection[str] | None,
    last_events: Mapping[str, tuple[str, str]],
    driver: str,
) -> Inventory:
    """Every node, PF and VF of ``driver``; claims wait when ownership says they are ours.

    A claim whose DeviceClass is missing counts as ours when it is evidently
    meant for the driver, as the operator tells it (:func:`is_ours`).
    """
    return build_inventory(
        pools=pools,
        claims=claims,
        nodes=nodes,
        last_events=last_events,
        ours=lambda claim: is_ours(claim, classes, driver),
        driver=driver,
    )
