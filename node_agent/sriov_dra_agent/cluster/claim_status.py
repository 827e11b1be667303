"""What this node reports on a claim: each VF's state, from its record and its last error.

The claim manager keeps the errors of the last programming here; the status of a
VF is then "failed" with that error, "configured" when the VF's record says this
claim holds it (with what took effect and what is unsupported here), or "pending".
A VF in a pod also gets its networkData. :class:`DeviceStatusWriter` applies them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sriov_dra.errors import SriovDraError

from sriov_dra_agent.cluster.claim_devices import ClaimDevice, NodeScope, log_context, uid
from sriov_dra_agent.cluster.device_status import (
    DeviceState,
    DeviceStatusWriter,
    released_entries,
)
from sriov_dra_agent.vf.lifecycle import VfLifecycle
from sriov_dra_agent.vf.vf_gone import VfGone

logger = logging.getLogger(__name__)


class ClaimStatus:
    """This node's ``status.devices`` entries of each claim."""

    def __init__(self, scope: NodeScope, writer: DeviceStatusWriter, vfs: VfLifecycle) -> None:
        self.scope = scope
        self.writer = writer
        self.vfs = vfs
        self._errors: dict[str, dict[str, SriovDraError]] = {}

    def set_errors(self, claim_uid: str, errors: Mapping[str, SriovDraError]) -> None:
        """The errors, by device name, of the claim's last programming."""
        self._errors[claim_uid] = dict(errors)

    def add_error(self, claim_uid: str, device: str, error: SriovDraError) -> None:
        """One device's error beside the others' (a VF that vanished from its PF)."""
        self._errors.setdefault(claim_uid, {})[device] = error

    def forget(self, claim_uid: str) -> None:
        """The claim is released here: drop its errors and what was last written."""
        self._errors.pop(claim_uid, None)
        self.writer.forget(claim_uid)

    def _states(
        self, claim: Mapping[str, Any], devices: Sequence[ClaimDevice]
    ) -> list[DeviceState]:
        """Each VF's state as this node knows it now."""
        claim_uid = uid(claim)
        errors = self._errors.get(claim_uid, {})
        states = []
        for device in devices:
            record = self.vfs.record(device.pci_address)
            mine = record is not None and record.claim.uid == claim_uid
            error = errors.get(device.device)
            network = None
            if mine and record is not None and record.attachment is not None:
                att = record.attachment
                if att.phase == "attached":
                    network = att.network_data()
            data: dict[str, Any] = {"pciAddress": device.pci_address, "ifName": device.if_name}
            if device.nad:
                data["networkAttachmentDefinition"] = "/".join(device.nad)
            if isinstance(error, VfGone):
                # Whatever the record says, no VF is in the pod any more.
                states.append(
                    DeviceState(device, False, error.reason, error.describe(), None,
                                network_reason=error.reason, network_message=error.message,
                                data=data)
                )  # fmt: skip
            elif error is not None:
                states.append(
                    DeviceState(device, False, error.reason, error.describe(), network, data=data)
                )
            elif mine and record is not None:
                result = record.result
                parts = [f"VF {device.pci_address} of PF {record.pf_name} configured"]
                done = sorted({*result.applied, *result.unchanged})
                if done:
                    parts.append(f"settings in effect: {', '.join(done)}")
                if result.unsupported:
                    unsupported = "; ".join(f"{k}: {v}" for k, v in result.unsupported.items())
                    parts.append(f"not applied (unsupported here): {unsupported}")
                    data["unsupported"] = dict(result.unsupported)
                if record.pf_name:
                    data["pf"] = record.pf_name
                states.append(
                    DeviceState(device, True, "Configured", "; ".join(parts), network, data=data)
                )
            else:
                states.append(
                    DeviceState(device, False, "Pending", "the agent has not configured the VF yet",
                                network, data=data)
                )  # fmt: skip
        return states

    async def write(
        self, claim: Mapping[str, Any], devices: Sequence[ClaimDevice] | None = None
    ) -> None:
        """Apply this node's ``status.devices`` entries of ``claim`` (best effort)."""
        try:
            # Inside: a config this agent now refuses must not fail an unprepare.
            if devices is None:
                devices = self.scope.devices(claim)
            await self.writer.write(claim, self._states(claim, devices))
        except Exception as exc:
            logger.warning("could not write status.devices: %s", exc, extra=log_context(claim))

    async def released(
        self, claim: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
    ) -> None:
        """Report the VFs of ``results`` detached and reset (the operator's hand-over signal).

        Not best effort: a failed write raises, so the claim watcher retries it.
        """
        entries = released_entries(claim, results, driver=self.writer.driver, node=self.scope.node)
        await self.writer.apply(claim, entries)
