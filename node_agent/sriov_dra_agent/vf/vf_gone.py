"""VFs that vanished from the hardware while claims hold them (pure).

Which held VFs a fresh inventory no longer has (:func:`vanished`), and the error their
claims are told (:func:`vf_gone`): the Warning Event, the ``status.devices``
condition and the log line all carry it (:mod:`sriov_dra_agent.cluster.vanished_vfs`).
"""

from __future__ import annotations

from collections.abc import Iterable

from sriov_dra.errors import SriovDraError

from sriov_dra_agent.vf.inventory import Inventory
from sriov_dra_agent.vf.records import VfRecord


class VfGone(SriovDraError):
    """A VF held by a claim is no longer on its PF."""

    reason = "VfGone"


def vanished(records: Iterable[VfRecord], inventory: Inventory) -> list[VfRecord]:
    """The held VFs (``records``) that ``inventory`` no longer has."""
    present = {vf.pci_address for vf in inventory.vfs()}
    return [record for record in records if record.pci_address not in present]


def vf_gone(node: str, record: VfRecord) -> VfGone:
    """The error a claim gets for its vanished VF (Event, condition and log say it)."""
    return VfGone(
        f"VF {record.pci_address} (index {record.vf_index} of PF {record.pf_name}) of claim "
        f"{record.claim.ref()} vanished from node {node}: its PF no longer has it "
        "(sriov_numvfs lowered, or the PF removed or reset)",
        field="device",
        fix="delete the pod and the claim (or deallocate it) so that it gets a VF that exists; "
        "the agent releases the pod's addresses when the pod goes",
    )
