"""Which claims this operator allocates.

A claim is ours when all of these hold:

- it is *static*: no ``ownerReferences`` entry with ``controller: true`` and
  ``kind: Pod`` (claims generated from a ResourceClaimTemplate are the
  scheduler's, it allocates them when it schedules their pod);
- it has at least one request, and every request (every subrequest of a
  ``firstAvailable`` list) names a DeviceClass that selects our driver. An
  allocation covers the whole claim, so a claim that mixes our VFs with other
  drivers' devices is left to the scheduler;
- a DeviceClass *selects our driver* when it is named like the driver (the
  DeviceClass this project ships) or when one of its CEL selectors mentions the
  driver name as a string literal (``device.driver == '<driver>'``). This is a
  textual rule, not CEL analysis: it is cheap, predictable and documented.

A claim naming a DeviceClass that does not exist (yet) cannot be judged by its
classes. It is told so (``DeviceClassNotFound``) only when it is evidently meant
for our driver: the missing class is named like the driver (the DeviceClass this
project ships), or the claim carries an opaque config for our driver. Any other
claim, a GPU claim whose class is missing say, is none of our business.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from sriov_dra.claim_requests import alternatives
from sriov_dra.errors import DeviceClassNotFound


class Verdict(enum.Enum):
    """Whether to allocate a claim."""

    OURS = "ours"
    NOT_OURS = "not ours"
    CLASS_MISSING = "a DeviceClass it names does not exist yet"


def is_template_claim(claim: Mapping[str, Any]) -> bool:
    """Generated for a pod from a template (a Pod controls it)."""
    return any(
        ref.get("controller") and ref.get("kind") == "Pod"
        for ref in claim.get("metadata", {}).get("ownerReferences") or []
    )


def class_selects_driver(device_class: Mapping[str, Any], driver: str) -> bool:
    """The rule of the module docstring."""
    if device_class.get("metadata", {}).get("name") == driver:
        return True
    for selector in (device_class.get("spec") or {}).get("selectors") or []:
        expression = str((selector.get("cel") or {}).get("expression") or "")
        if f"'{driver}'" in expression or f'"{driver}"' in expression:
            return True
    return False


def has_driver_config(claim: Mapping[str, Any], driver: str) -> bool:
    """The claim's ``spec.devices.config`` has an opaque entry for ``driver``."""
    config = ((claim.get("spec") or {}).get("devices") or {}).get("config") or []
    return any((item.get("opaque") or {}).get("driver") == driver for item in config)


def class_not_found(
    claim: Mapping[str, Any], classes: Mapping[str, Mapping[str, Any]], driver: str
) -> DeviceClassNotFound | None:
    """The error naming the first missing DeviceClass the claim uses, when it is ours to tell.

    None when every class exists, or when nothing ties the claim to ``driver``
    (see the module docstring): then the missing class is another driver's concern.
    """
    configured = has_driver_config(claim, driver)
    for alternative in alternatives(claim):
        name = alternative.class_name
        if name not in classes and (configured or name == driver):
            shipped = "kubectl apply -f manifests/base/deviceclass.yaml"
            fix = (
                f"create it ({shipped})"
                if name == driver
                else f"create DeviceClass {name!r} with a selector for driver {driver}, or "
                f"correct the name (the class this project ships is {driver!r}: {shipped})"
            )
            return DeviceClassNotFound(
                f"DeviceClass {name!r} does not exist",
                field=f"{alternative.path}.deviceClassName",
                fix=f"{fix}; the claim is allocated as soon as the class exists",
            )
    return None


def verdict(
    claim: Mapping[str, Any], classes: Mapping[str, Mapping[str, Any]], driver: str
) -> Verdict:
    """Decide whether ``claim`` is ours to allocate."""
    if is_template_claim(claim):
        return Verdict.NOT_OURS
    names = [alternative.class_name for alternative in alternatives(claim)]
    if not names:
        return Verdict.NOT_OURS
    missing = False
    for name in names:
        device_class = classes.get(name)
        if device_class is None:
            missing = True
        elif not class_selects_driver(device_class, driver):
            return Verdict.NOT_OURS
    return Verdict.CLASS_MISSING if missing else Verdict.OURS
