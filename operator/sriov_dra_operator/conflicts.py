"""Which claim keeps a device that two claims' allocations hold.

The apiserver does no cross-claim check, so our pre-allocation racing the
scheduler (or two operators) can put one device in two claims. Rule: the claim
in use keeps it (non-empty ``reservedFor``: a pod may already have the VF);
among equals the older claim keeps it (``creationTimestamp``, then
namespace/name, so the choice is stable across restarts). Every other holder
that is not in use is cleared and allocated afresh; holders that are in use
cannot be cleared without hurting a pod, so they are only reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sriov_dra.device_pools import DeviceKey

Body = Mapping[str, Any]


def in_use(claim: Body) -> bool:
    """A pod holds the claim (``status.reservedFor`` is non-empty)."""
    return bool((claim.get("status") or {}).get("reservedFor"))


def _rank(claim: Body) -> tuple[bool, str, str, str]:
    meta = claim["metadata"]
    return (
        not in_use(claim),
        str(meta.get("creationTimestamp") or ""),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


def claim_name(claim: Body) -> str:
    """``namespace/name``."""
    return f"{claim['metadata'].get('namespace')}/{claim['metadata'].get('name')}"


@dataclass(frozen=True)
class Resolution:
    """Outcome for one doubly-held device."""

    device: DeviceKey
    keeper: Body
    clear: list[Body] = field(default_factory=list)
    """Holders to de-allocate and allocate again."""
    stuck: list[Body] = field(default_factory=list)
    """Other holders in use: reported only."""

    def message_for(self, claim: Body) -> str:
        """Event text for one of the holders, naming the device, the others and the fix."""
        device = f"{self.device.pool}/{self.device.device}"
        others = ", ".join(
            claim_name(c) for c in [self.keeper, *self.clear, *self.stuck] if c is not claim
        )
        if claim is self.keeper:
            return (
                f"device {device} (driver {self.device.driver}) is also allocated to {others}; "
                "this claim keeps it"
                + (" because a pod uses it" if in_use(claim) else " because it is older")
            )
        if claim in self.clear:
            return (
                f"device {device} (driver {self.device.driver}) is also allocated to "
                f"{claim_name(self.keeper)}, which keeps it; this claim's allocation is cleared "
                "and a different VF will be allocated"
            )
        return (
            f"device {device} (driver {self.device.driver}) is also allocated to {others} and "
            "pods use both claims; fix: delete the pods of one claim so it can be re-allocated"
        )


def resolve(device: DeviceKey, holders: Iterable[Body]) -> Resolution:
    """Decide who keeps ``device`` among two or more ``holders``."""
    ranked = sorted(holders, key=_rank)
    keeper, rest = ranked[0], ranked[1:]
    return Resolution(
        device=device,
        keeper=keeper,
        clear=[c for c in rest if not in_use(c)],
        stuck=[c for c in rest if in_use(c)],
    )
