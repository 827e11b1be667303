"""The allocation annotation: the operator's summary of a claim's VFs, for people and tools.

The operator writes a JSON list of :class:`AllocatedVf` (node, PF, VF PCI
address, ifName, NAD) under ``constants.ALLOCATION_ANNOTATION`` next to
``status.allocation``, so ``kubectl get -o yaml`` shows where each VF went. No
decision reads it: metadata is not protected as status is, so a node agent
derives every VF's config and NAD from ``status.allocation`` alone and only
warns (``AllocationAnnotationIgnored``) where the annotation disagrees.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class AllocatedVf(BaseModel):
    """One VF allocated to one request of a claim."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    request: str
    """Request name, or ``request/subrequest`` for firstAvailable."""
    pool: str
    device: str
    """ResourceSlice device name (the VF PCI address as a DNS label)."""
    node: str
    pf: str
    """PF netdev name."""
    pci_address: str = Field(alias="pciAddress")
    vf_index: int = Field(alias="vfIndex")
    if_name: str = Field(alias="ifName")
    """Interface name inside the pod."""
    nad: str = ""
    """``namespace/name`` of the NetworkAttachmentDefinition, empty when none."""


_RECORDS = TypeAdapter(list[AllocatedVf])


def encode(records: list[AllocatedVf]) -> str:
    """Annotation value for ``records`` (stable key order, camelCase)."""
    return json.dumps(
        [r.model_dump(by_alias=True) for r in records], separators=(",", ":"), sort_keys=True
    )


def decode(value: str) -> list[AllocatedVf]:
    """Parse an annotation value; raises ``ValueError`` naming the problem."""
    try:
        return _RECORDS.validate_json(value)
    except ValidationError as exc:
        raise ValueError(f"invalid {__name__} annotation: {exc}") from exc
