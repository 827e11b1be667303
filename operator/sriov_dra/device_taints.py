"""Device taints against request tolerations, as kube-scheduler applies them (pure).

resource.k8s.io/v1 (gate ``DRADeviceTaints``): a published device may carry
``taints`` ``{key, value, effect, timeAdded}``; a request (``exactly`` or a
``firstAvailable`` subrequest) may carry ``tolerations`` ``{key, operator, value,
effect, tolerationSeconds}``. A device with a ``NoSchedule`` or ``NoExecute`` taint
that none of the request's tolerations tolerates is not allocated for it. The node
agent taints the VFs of a PF whose link is down (:mod:`sriov_dra.device_health`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

KEEP_OFF: Final = frozenset({"NoSchedule", "NoExecute"})
"""Effects that keep a device from new allocations."""


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Whether ``toleration`` tolerates ``taint`` (the core/v1 Toleration rules).

    An empty effect matches every effect; operator ``Exists`` matches any value, and
    with an empty key every taint; ``Equal`` (the default) needs key and value equal.
    """
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if (toleration.get("operator") or "Equal") == "Exists":
        return not key or key == taint.get("key")
    return key == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated(
    taints: Iterable[Mapping[str, Any]], tolerations: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The ``taints`` that keep the device from a request with ``tolerations``."""
    return [
        taint
        for taint in taints
        if taint.get("effect") in KEEP_OFF and not any(tolerates(t, taint) for t in tolerations)
    ]


def describe(taint: Mapping[str, Any]) -> str:
    """``key=value:effect`` (``key:effect`` without a value), as kubectl shows taints."""
    value = taint.get("value")
    return f"{taint.get('key')}{'=' + str(value) if value else ''}:{taint.get('effect')}"
