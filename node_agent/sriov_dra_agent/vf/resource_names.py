"""Which Multus resource name each VF carries (attribute ``k8s.cni.cncf.io/resourceName``).

A meta-plugin such as Multus matches a NetworkAttachmentDefinition's annotation
``k8s.v1.cni.cncf.io/resourceName`` against this device attribute of the claim's
allocated VF, and the device-info file of a prepared VF
(:mod:`sriov_dra_agent.kubelet.device_info`) is named from it.

The agent's ``--resource-name`` gives it: comma-separated entries, ``NAME`` for
every PF and ``PF=NAME`` for one PF (by netdev name or PCI address; it wins over
the default). As in the Go driver, a ``DeviceAttributes`` that a
``SriovResourcePolicy`` selects for the VF may set the attribute instead; that
value wins (:func:`sriov_dra_agent.cluster.slices.with_resource_names`), and the
device-info file follows what the slice carries. This setting is the zero-config
fallback for VFs no policy names.
"""

from __future__ import annotations

import re
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from sriov_dra_agent.vf.inventory import VfInfo

MAX_RESOURCE_NAME: Final = 64
"""A device attribute's string value holds at most 64 characters."""

_NAME: Final = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$")
"""Device-plugin style names (``sriov_nic_1``, ``intel.com/sriov_netdevice``): safe in a file
name once ``/`` becomes ``-``, as the device-info spec does."""


class ResourceNames(BaseModel):
    """The resource name of each PF's VFs: per PF, else the default, else none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str | None = None
    by_pf: dict[str, str] = Field(default_factory=dict)
    """PF netdev name or PF PCI address -> resource name."""

    def for_vf(self, vf: VfInfo) -> str | None:
        """The resource name ``vf`` is published and described under; None when it has none."""
        return self.by_pf.get(vf.pf_name) or self.by_pf.get(vf.pf_pci_address) or self.default

    def names(self) -> frozenset[str]:
        """Every resource name this setting can give (the device-info files that are ours)."""
        named = set(self.by_pf.values())
        if self.default:
            named.add(self.default)
        return frozenset(named)


def is_resource_name(name: str) -> bool:
    """True for a name that may name a device-info file (see :data:`_NAME`)."""
    return len(name) <= MAX_RESOURCE_NAME and bool(_NAME.match(name))


def _checked(name: str, entry: str) -> str:
    if not is_resource_name(name):
        raise ValueError(
            f"--resource-name entry {entry!r}: {name!r} is not a resource name; fix: use at "
            f"most {MAX_RESOURCE_NAME} letters, digits, '.', '_', '-' and '/', starting and "
            "ending with a letter or digit (e.g. sriov_nic_1 or example.com/sriov)"
        )
    return name


def parse_resource_names(text: str) -> ResourceNames:
    """Parse ``--resource-name``: ``NAME`` and/or ``PF=NAME`` entries, comma-separated.

    Raises ``ValueError`` naming the entry and the fix for a bad name, an empty PF, or
    a PF or default given twice.
    """
    default: str | None = None
    by_pf: dict[str, str] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        pf, sep, name = entry.partition("=")
        if not sep:
            if default is not None:
                raise ValueError(
                    f"--resource-name gives two defaults ({default!r}, {entry!r}); fix: keep "
                    "one NAME without PF=, and name PFs as PF=NAME"
                )
            default = _checked(entry, entry)
            continue
        pf = pf.strip()
        if not pf:
            raise ValueError(
                f"--resource-name entry {entry!r} has no PF before '='; fix: write PF=NAME "
                "with the PF's netdev name or PCI address"
            )
        if pf in by_pf:
            raise ValueError(
                f"--resource-name names PF {pf!r} twice; fix: give each PF one resource name"
            )
        by_pf[pf] = _checked(name.strip(), entry)
    return ResourceNames(default=default, by_pf=by_pf)
