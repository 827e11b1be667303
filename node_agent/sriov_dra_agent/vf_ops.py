"""The VF life cycle on this node: program, attach, detach, restore -- each re-runnable.

Synchronous (netlink, sysfs and CNI exec); the async shells call these in a
thread. Every step records its intent in the VF's record
(:mod:`sriov_dra_agent.vf_records`) *before* touching the kernel, so a crash at
any point leaves enough on disk for :func:`sweep` (or simply re-running the
step) to finish or undo it:

- program: original settings and driver saved, then driver bound, then the
  NAD's VF settings applied;
- attach: ``attaching`` saved (netns, CNI container id, IPAM config), then IPAM
  ADD, move + rename + up, addresses; ``attached`` saved with the IPs;
- detach: ``detaching`` saved, VF moved back (or found in the host, or
  recreated by the backend), renamed and re-addressed, IPAM DEL, record cleared;
- restore: original VF settings and driver put back, record deleted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sriov_dra.errors import AttachError, DeviceBusy, NetnsNotFound

from sriov_dra_agent import ipam, netns_attach
from sriov_dra_agent.backends.base import VfBackend
from sriov_dra_agent.inventory import VfInfo
from sriov_dra_agent.vf_programmer import VfSettings, apply, restore_plan
from sriov_dra_agent.vf_records import Attachment, ClaimRef, RecordStore, VfRecord

logger = logging.getLogger(__name__)


def _log(record: VfRecord, **more: Any) -> dict[str, Any]:
    return {
        "claim": record.claim.ref(),
        "uid": record.claim.uid,
        "pf": record.pf_name,
        "vf": record.pci_address,
        **more,
    }


@dataclass(frozen=True)
class VfOps:
    """The VF operations of one node: its backend, its records and its CNI setup."""

    backend: VfBackend
    records: RecordStore
    cni_path: str = ipam.DEFAULT_CNI_PATH

    # -- program / restore -----------------------------------------------------------------

    def _host_link(self, vf: VfInfo) -> netns_attach.LinkView | None:
        with netns_attach.open_netns(self.backend.host_netns()) as host:
            return netns_attach.find_vf(host, vf.pci_address)

    def program(
        self, vf: VfInfo, claim: ClaimRef, *, request: str, driver: str, desired: VfSettings
    ) -> VfRecord:
        """Give ``vf`` to ``claim``: save its state, bind ``driver``, apply ``desired``.

        Raises :class:`DeviceBusy` when another claim holds the VF.
        """
        record = self.records.get(vf.pci_address)
        if record is not None and record.claim.uid != claim.uid:
            raise DeviceBusy(
                f"VF {vf.pci_address} is still held by claim {record.claim.ref()} "
                f"({record.claim.uid})",
                field="status.allocation",
                fix="wait until the agent released it from the other claim",
            )
        if record is None:
            link = self._host_link(vf)
            record = VfRecord(
                pci_address=vf.pci_address,
                pf_name=vf.pf_name,
                vf_index=vf.vf_index,
                claim=claim,
                request=request,
                host_ifname=link.name if link else vf.netdev,
                host_mac=link.mac if link else None,
                host_mtu=link.mtu if link else None,
                original=self.backend.read_vf_state(vf),
                original_driver=self.backend.current_driver(vf),
                desired=desired,
            )
            self.records.put(record)
            logger.info("saved VF original state", extra=_log(record))
        elif record.desired != desired:
            record = record.model_copy(update={"desired": desired})
            self.records.put(record)
        target = record.original_driver if driver == "default" else driver
        if target and self.backend.current_driver(vf) != target:
            record = record.model_copy(update={"driver": target})
            self.records.put(record)
            self.backend.bind_driver(vf, target)
        result = apply(self.backend, vf, desired)
        record = record.model_copy(update={"result": result})
        self.records.put(record)
        logger.info(
            "programmed VF",
            extra=_log(
                record,
                applied=list(result.applied),
                unchanged=list(result.unchanged),
                unsupported=result.unsupported,
            ),
        )
        return record

    def restore(self, vf: VfInfo | None, record: VfRecord) -> None:
        """Put back what :meth:`program` changed and forget the VF (detach first)."""
        if record.attachment is not None:
            record = self.detach(record)
        if vf is not None:
            changes = restore_plan(record.original, record.desired)
            if changes.fields_set():
                self.backend.apply_vf_settings(vf, changes)
            original = record.original_driver
            if record.driver and original and self.backend.current_driver(vf) != original:
                self.backend.bind_driver(vf, original)
        else:
            logger.warning("VF no longer exists; forgetting its record", extra=_log(record))
        self.records.delete(record.pci_address)
        logger.info("restored VF", extra=_log(record))

    # -- attach / detach -------------------------------------------------------------------

    def attach(
        self,
        record: VfRecord,
        *,
        netns: str,
        if_name: str,
        ipam_conf: Mapping[str, Any] | None,
    ) -> VfRecord:
        """Move the VF into ``netns`` as ``if_name`` with an address from ``ipam_conf``.

        Idempotent for the same netns; a VF still in another live netns is
        :class:`DeviceBusy`; a leftover from a dead netns or a half-done attach is
        cleaned up first. On failure everything this call did is undone.
        """
        identity = netns_attach.netns_id(netns)
        current = record.attachment
        if current is not None:
            same = current.netns_id is not None and tuple(current.netns_id) == identity
            if current.phase == "attached" and same and netns_attach.netns_alive(netns, identity):
                return record
            if (
                current.phase == "attached"
                and not same
                and netns_attach.netns_alive(current.netns, current.netns_id)
            ):
                raise DeviceBusy(
                    f"VF {record.pci_address} is attached to another pod (netns {current.netns})",
                    field="claim",
                    fix="a claim's VF serves one pod at a time; delete the other pod first",
                )
            record = self.detach(record)
        attachment = Attachment(
            phase="attaching",
            netns=netns,
            netns_id=identity,
            if_name=if_name,
            container_id=ipam.container_id(record.claim.uid, record.request),
            ipam_conf=dict(ipam_conf) if ipam_conf else None,
        )
        record = record.model_copy(update={"attachment": attachment})
        self.records.put(record)
        try:
            result = None
            if attachment.ipam_conf:
                result = ipam.ipam_add(
                    attachment.ipam_conf,
                    container=attachment.container_id,
                    ifname=if_name,
                    netns=netns,
                    cni_path=self.cni_path,
                )
            link = netns_attach.move_into_pod(
                pci=record.pci_address,
                host_netns=self.backend.host_netns(),
                pod_netns=netns,
                if_name=if_name,
            )
            cidrs = (
                netns_attach.configure_addresses(
                    pod_netns=netns, pci=record.pci_address, result=result
                )
                if result is not None
                else []
            )
        except Exception:
            with contextlib.suppress(Exception):
                self.detach(record)
            raise
        attachment = attachment.model_copy(
            update={"phase": "attached", "ips": tuple(cidrs), "hardware_address": link.mac}
        )
        record = record.model_copy(update={"attachment": attachment})
        self.records.put(record)
        logger.info(
            "attached VF",
            extra=_log(record, netns=netns, ifname=if_name, ips=cidrs, mac=link.mac),
        )
        return record

    def detach(self, record: VfRecord) -> VfRecord:
        """Bring the VF back to the host as it was and release its addresses. Re-runnable."""
        attachment = record.attachment
        if attachment is None:
            return record
        if attachment.phase != "detaching":
            attachment = attachment.model_copy(update={"phase": "detaching"})
            record = record.model_copy(update={"attachment": attachment})
            self.records.put(record)
        alive = netns_attach.netns_alive(attachment.netns, attachment.netns_id)
        host_name = record.host_ifname or f"vf{record.vf_index}"
        back = dict(
            pci=record.pci_address,
            host_netns=self.backend.host_netns(),
            pod_netns=attachment.netns if alive else None,
            host_name=host_name,
            host_mac=record.host_mac,
            host_mtu=record.host_mtu,
        )
        link = netns_attach.move_to_host(**back)  # type: ignore[arg-type]
        if link is None:
            # The netns died with the VF in it: a real VF comes back by itself, the
            # simulated one is recreated by the backend.
            recreated = self.backend.repair()
            link = netns_attach.move_to_host(**{**back, "pod_netns": None})  # type: ignore[arg-type]
            if link is None and alive:
                raise AttachError(
                    f"VF {record.pci_address} is neither in the host nor in {attachment.netns}",
                    field="vf",
                    fix="check the VF's driver binding; the agent retries on its next sweep",
                )
            logger.info("VF came back from a dead netns", extra=_log(record, recreated=recreated))
        if attachment.ipam_conf:
            ipam.ipam_del(
                attachment.ipam_conf,
                container=attachment.container_id,
                ifname=attachment.if_name,
                cni_path=self.cni_path,
            )
        record = record.model_copy(update={"attachment": None})
        self.records.put(record)
        logger.info("detached VF", extra=_log(record, netns=attachment.netns))
        return record

    # -- crash recovery --------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Undo half-done attaches/detaches and attachments whose netns died.

        Returns the PCI addresses it detached. Attached VFs in live netns stay.
        """
        with contextlib.suppress(Exception):
            self.backend.repair()
        detached = []
        for record in self.records.all():
            attachment = record.attachment
            if attachment is None:
                continue
            if attachment.phase == "attached" and netns_attach.netns_alive(
                attachment.netns, attachment.netns_id
            ):
                continue
            try:
                self.detach(record)
                detached.append(record.pci_address)
            except (AttachError, NetnsNotFound, OSError) as exc:
                logger.warning("sweep could not detach VF: %s", exc, extra=_log(record))
            except Exception:
                logger.exception("sweep failed on VF", extra=_log(record))
        return detached
