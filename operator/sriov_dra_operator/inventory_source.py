"""The inventory of a cluster from the operator's cache, by the operator's own rules.

One path for both readers: the operator's page reads the cache its watches keep
(no API call per request); ``sriov-dra inventory`` fills a cache the way a
starting operator does (:meth:`.controller.Controller.prime`, with the user's
kubeconfig) and reads it the same way, so their JSON is equal for the same state.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, Protocol

from sriov_dra.device_pools import Pool
from sriov_dra.inventory import Inventory, build_inventory

from .cache import ClusterCache
from .ownership import Verdict, class_not_found, verdict
from .settings import OperatorSettings


class LastEvents(Protocol):
    """The operator's memory of the Event it last posted on each claim."""

    def last(self, uid: str) -> tuple[str, str] | None:
        """(reason, message) last posted on claim ``uid``."""


class Reconciler(Protocol):
    """What the inventory reads of the claim reconciler."""

    @property
    def settings(self) -> OperatorSettings:
        """The operator's settings (the driver)."""

    @property
    def events(self) -> LastEvents:
        """The Events last posted per claim."""

    def pools(self) -> tuple[list[Pool], Any]:
        """Our driver's pools from the cached slices (recomputed when they change)."""


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


def cached_inventory(cache: ClusterCache, reconciler: Reconciler) -> Inventory:
    """The inventory of what ``cache`` holds, with the Events ``reconciler`` last posted."""
    last_events = {
        uid: said for uid in cache.claims if (said := reconciler.events.last(uid)) is not None
    }
    return cluster_inventory(
        pools=reconciler.pools()[0],
        claims=cache.claims.values(),
        classes=cache.classes,
        nodes=cache.nodes,
        last_events=last_events,
        driver=reconciler.settings.driver,
    )
