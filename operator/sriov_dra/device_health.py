"""From PF link states to the health and taints of the VFs they carry (pure).

A VF's traffic leaves through its PF: when the PF's link is down, every VF of
that PF is cut off however well the VF itself is. So a VF's health is its PF's
link state:

- PF link up (administratively up and carrier): the VF is ``HEALTHY``;
- PF link down (no carrier, or set down): ``UNHEALTHY``, and the device gets a
  ``NoSchedule`` taint (:data:`PF_LINK_DOWN_TAINT`) so that no new claim gets it;
  claims that hold it keep it (the kubelet shows the health in the pod status);
- PF link not known (its netdev is not in the host netns, or not seen yet):
  ``UNKNOWN``, without a taint: a VF is never fenced off on a guess.

Recovery (link up again) clears both. The kubelet's DRA health stream and the
ResourceSlice taints are fed from the same :func:`device_health` answer.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from sriov_dra.constants import PREFIX

PF_LINK_DOWN_TAINT: Final = f"{PREFIX}/pf-link-down"
"""Taint key on the devices of a PF whose link is down; its value names the PF."""

TAINT_EFFECT: Final = "NoSchedule"
"""Keep new claims away; running pods are not evicted (that would be ``NoExecute``)."""

IFF_UP: Final = 0x1
IFF_LOWER_UP: Final = 0x10000

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_MAX_LABEL_VALUE: Final = 63


class Health(enum.IntEnum):
    """The kubelet's ``dra-health/v1alpha1`` ``HealthStatus`` values."""

    UNKNOWN = 0
    HEALTHY = 1
    UNHEALTHY = 2


class PfLink(BaseModel):
    """What netlink last said about one PF netdev's link."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    up: bool
    since: datetime
    """When this state was first seen (timezone-aware); the taint's ``timeAdded``."""


class DeviceHealth(BaseModel):
    """One published device's health, as both the stream and the taints need it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pf: str
    health: Health
    since: datetime | None
    """When the PF's link state was first seen; None while it is not known."""


def link_up(flags: int) -> bool:
    """Whether a netlink link message's ``flags`` say up: set up and with carrier."""
    return bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)


def device_health(
    device_pfs: Mapping[str, str], links: Mapping[str, PfLink]
) -> dict[str, DeviceHealth]:
    """Health of each device of ``device_pfs`` (device name -> its PF's netdev name),
    from ``links`` (PF netdev name -> link state; a PF missing there is not known)."""
    health: dict[str, DeviceHealth] = {}
    for device, pf in device_pfs.items():
        link = links.get(pf)
        if link is None:
            health[device] = DeviceHealth(pf=pf, health=Health.UNKNOWN, since=None)
        else:
            state = Health.HEALTHY if link.up else Health.UNHEALTHY
            health[device] = DeviceHealth(pf=pf, health=state, since=link.since)
    return health


def _taint_value(pf: str) -> str | None:
    """The PF name as a taint value, or None when it cannot be one (a label value)."""
    if len(pf) <= _MAX_LABEL_VALUE and _LABEL_VALUE.match(pf):
        return pf
    return None


def time_added(since: datetime) -> str:
    """RFC 3339 in whole seconds, UTC, as the API server stores ``timeAdded``."""
    return since.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def device_taints(health: Mapping[str, DeviceHealth]) -> dict[str, list[dict[str, Any]]]:
    """The ResourceSlice ``taints`` of each unhealthy device (healthy and unknown get none)."""
    taints: dict[str, list[dict[str, Any]]] = {}
    for device, entry in health.items():
        if entry.health is not Health.UNHEALTHY or entry.since is None:
            continue
        taint: dict[str, Any] = {"key": PF_LINK_DOWN_TAINT, "effect": TAINT_EFFECT}
        value = _taint_value(entry.pf)
        if value:
            taint["value"] = value
        taint["timeAdded"] = time_added(entry.since)
        taints[device] = [taint]
    return taints
