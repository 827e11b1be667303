"""The node's VF lifecycle: program on allocation, attach into a pod, detach, release, sweep.

The agent's orchestration calls only this class (synchronously, e.g. through
``asyncio.to_thread``). Each public method is idempotent and writes a
:class:`~sriov_dra_agent.vf.records.VfRecord` before every change it makes, so it
can be re-run, or undone by :meth:`VfLifecycle.sweep`, after a crash at any point.
Calls for one VF are serialised; different VFs proceed in parallel. Programming and
restoring go through the backend; moving the netdev into a pod's netns and back,
with its addresses, is :class:`~sriov_dra_agent.attach.pod_network.PodNetwork`'s.

A VF can vanish under a claim (``sriov_numvfs`` lowered, the PF gone): detach and
release then do what is left -- release the pod's addresses, forget the record --
instead of waiting for a netdev that will not come back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field
from sriov_dra.claim_ref import ClaimRef
from sriov_dra.errors import AttachError, DeviceBusy, SriovDraError

from sriov_dra_agent.attach import ipam
from sriov_dra_agent.attach.netns import netns_alive
from sriov_dra_agent.attach.netns import netns_id as netns_ident
from sriov_dra_agent.attach.pod_network import PodNetwork
from sriov_dra_agent.vf import vf_settings
from sriov_dra_agent.vf.backends.base import KERNEL_DEFAULT, USERSPACE_DRIVERS, VfBackend
from sriov_dra_agent.vf.inventory import Inventory, VfInfo
from sriov_dra_agent.vf.records import (
    Attachment,
    NetworkData,
    RecordStore,
    VfRecord,
    log_context,
)
from sriov_dra_agent.vf.vf_settings import ApplyResult, VfSettings

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR: Final = Path("/var/lib/sriov-dra/vfs")


class SweepReport(BaseModel):
    """What :meth:`VfLifecycle.sweep` repaired."""

    model_config = ConfigDict(frozen=True)

    recreated: tuple[str, ...] = ()
    """Simulated VF netdevs recreated (their pod netns had destroyed them)."""
    detached: tuple[str, ...] = ()
    """PCI addresses whose half-done or orphaned attachment was undone."""
    released: tuple[str, ...] = ()
    """PCI addresses restored and forgotten (their claim is no longer prepared)."""
    failed: dict[str, str] = Field(default_factory=dict)
    """PCI address -> error, for what could not be repaired yet (retry later)."""


class VfLifecycle:
    """One node's VFs, through one backend, with records under ``state_dir``."""

    def __init__(
        self, backend: VfBackend, pods: PodNetwork, *, state_dir: Path = DEFAULT_STATE_DIR
    ) -> None:
        self.backend = backend
        self.pods = pods
        self.records = RecordStore(state_dir)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # --- helpers -------------------------------------------------------------------------

    def _lock(self, pci: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(pci, threading.Lock())

    def _ctx(self, record: VfRecord | None, pci: str, **more: Any) -> dict[str, Any]:
        return log_context(self.backend.node, record, pci, **more)

    def discover(self) -> Inventory:
        """Walk the (real or simulated) sysfs tree now."""
        return self.backend.discover()

    def vf(self, pci: str) -> VfInfo:
        """The VF ``pci`` as discovery sees it now; raises :class:`AttachError` if absent."""
        for vf in self.backend.discover().vfs():
            if vf.pci_address == pci:
                return vf
        raise AttachError(
            f"VF {pci} not found on node {self.backend.node}",
            field="device",
            fix="check sriov_numvfs on the PF; the allocation may be stale",
        )

    def record(self, pci: str) -> VfRecord | None:
        """What the agent holds for VF ``pci`` (None when untouched)."""
        return self.records.get(pci)

    def records_all(self) -> list[VfRecord]:
        """Every VF the agent currently holds."""
        return self.records.all()

    def records_of(self, claim_uid: str) -> list[VfRecord]:
        """Every VF the agent holds for claim ``claim_uid``."""
        return [r for r in self.records.all() if r.claim.uid == claim_uid]

    def _info(self, record: VfRecord) -> VfInfo:
        return self.vf(record.pci_address)

    @staticmethod
    def _busy(record: VfRecord, claim: ClaimRef) -> DeviceBusy:
        return DeviceBusy(
            f"VF {record.pci_address} is held by claim {record.claim.ref()} "
            f"(uid {record.claim.uid})",
            field="device",
            fix=f"release claim {record.claim.ref()} first, or wait for the agent to release it",
        )

    # --- programming ---------------------------------------------------------------------

    def program(
        self,
        pci: str,
        claim: ClaimRef,
        request: str,
        settings: VfSettings,
        *,
        driver: str = "",
    ) -> ApplyResult:
        """Save VF ``pci``'s original state (first call only), bind ``driver``, apply ``settings``.

        ``driver``: ``""`` keeps the bound driver; ``"default"`` rebinds the kernel's
        default driver when the VF has none or a userspace one (vfio-pci, DPDK), else
        keeps it; any other name binds that driver. Release restores the original
        driver and driver_override after any rebind. Returns per setting
        applied / unchanged / unsupported (never claims an unsupported one). Raises
        :class:`DeviceBusy` when another claim holds the VF,
        :class:`~sriov_dra.errors.VfProgrammingError` when the kernel refuses.
        """
        with self._lock(pci):
            vf = self.vf(pci)
            record = self._ensure_record(vf, claim, request)
            if self._wants_rebind(vf, driver):
                record = record.model_copy(update={"driver": driver})
                self.records.put(record)
                self.backend.bind_driver(vf, driver)
            record = record.model_copy(update={"desired": settings})
            self.records.put(record)
            result = vf_settings.apply(self.backend, vf, settings)
            self.records.put(record.model_copy(update={"result": result}))
            log.info(
                "VF programmed",
                extra=self._ctx(
                    record,
                    pci,
                    applied=list(result.applied),
                    unchanged=list(result.unchanged),
                    unsupported=result.unsupported,
                ),
            )
            return result

    def _wants_rebind(self, vf: VfInfo, driver: str) -> bool:
        """Whether VfConfig ``driver`` moves ``vf``; ``default`` leaves a kernel driver be."""
        if not driver:
            return False
        current = self.backend.current_driver(vf)
        if driver == KERNEL_DEFAULT:
            return current is None or current in USERSPACE_DRIVERS
        return current != driver

    def _ensure_record(self, vf: VfInfo, claim: ClaimRef, request: str) -> VfRecord:
        record = self.records.get(vf.pci_address)
        if record is not None:
            if record.claim.uid != claim.uid:
                raise self._busy(record, claim)
            return record
        link = self.pods.host_link(vf.pci_address)
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
            original_override=self.backend.driver_override(vf),
        )
        self.records.put(record)
        return record

    # --- attach / detach -----------------------------------------------------------------

    def attach(
        self,
        pci: str,
        claim: ClaimRef,
        request: str,
        *,
        netns: str,
        if_name: str,
        netconf: Mapping[str, Any] | None = None,
        mac: str | None = None,
        mtu: int | None = None,
    ) -> NetworkData:
        """Attach VF ``pci`` into ``netns`` as ``if_name`` and run IPAM; return networkData.

        ``netns`` is a path (``/proc/<pid>/ns/net``, ``/var/run/netns/<name>``);
        ``netconf`` the NAD's CNI config as a dict (its ``ipam`` section is run with
        CNI_CONTAINERID ``<claim uid>-<request>``), ``None`` or without ``ipam`` for no
        addresses. Idempotent: a VF already attached there is returned as is. On any
        failure the VF goes back to the host and the address is released before the
        error is raised: :class:`~sriov_dra.errors.NetnsNotFound`,
        :class:`DeviceBusy` (VF held by another claim or pod, or ``if_name`` taken),
        :class:`~sriov_dra.errors.IpamError`, :class:`AttachError`.
        """
        with self._lock(pci):
            record = self.records.get(pci)
            if record is None:
                record = self._ensure_record(self.vf(pci), claim, request)
            if record.claim.uid != claim.uid:
                raise self._busy(record, claim)
            netns_id = netns_ident(netns)
            current = record.attachment
            if current is not None:
                same = current.netns == netns and tuple(current.netns_id or ()) == netns_id
                if same and current.phase == "attached" and current.if_name == if_name:
                    return current.network_data()
                if (
                    not same
                    and current.phase == "attached"
                    and netns_alive(current.netns, current.netns_id)
                ):
                    raise DeviceBusy(
                        f"VF {pci} is attached to another pod netns {current.netns}",
                        field="device",
                        fix="a claim's VF serves one pod at a time; delete the other pod",
                    )
                record = self._detach_locked(record)
            if record.host_ifname is None and record.driver is not None:
                record = self._adopt_netdev(record)
            if record.host_ifname is None:
                bound = self.backend.current_driver(self.vf(pci))
                raise AttachError(
                    f"VF {pci} has no network interface (bound to {bound!r})",
                    field="driver",
                    fix="use a kernel network driver, or no attach in vfio-pci mode",
                )
            ipam_conf = dict(netconf) if netconf and netconf.get("ipam") else None
            attachment = Attachment(
                phase="attaching",
                netns=netns,
                netns_id=netns_id,
                if_name=if_name,
                mac=mac,
                mtu=mtu,
                container_id=ipam.container_id(claim.uid, request),
                ipam_conf=ipam_conf,
            )
            record = record.model_copy(update={"attachment": attachment})
            # Written while the pod network looks; it waits for the write before changing.
            writing = self.records.start_put(record)
            try:
                return self._attach_steps(record, attachment, writing.wait)
            except Exception as exc:
                writing.join()
                log.warning(
                    "attach failed; rolling back",
                    extra=self._ctx(record, pci, netns=netns, error=str(exc)),
                )
                try:
                    self._detach_locked(record)
                except Exception as cleanup:
                    # The record still says "attaching": the sweep finishes the rollback.
                    log.error(
                        "rollback after failed attach incomplete; the sweep will retry",
                        extra=self._ctx(record, pci, error=str(cleanup)),
                    )
                raise
            finally:
                writing.join()

    def _adopt_netdev(self, record: VfRecord) -> VfRecord:
        """Take the netdev of the driver we bound (the VF had none) as its host netdev.

        Looked up at attach, not right after binding: drivers such as iavf register
        their netdev asynchronously after the probe.
        """
        link = self.pods.host_link(record.pci_address)
        if link is None:
            return record
        record = record.model_copy(
            update={
                "host_ifname": link.name,
                "host_mac": link.mac,
                "host_mtu": link.mtu,
                "adopted_netdev": True,
            }
        )
        self.records.put(record)
        return record

    def _attach_steps(
        self, record: VfRecord, attachment: Attachment, written: Callable[[], None]
    ) -> NetworkData:
        done = self.pods.connect(record, attachment, before_change=written)
        written()  # also when nothing changed: the writes must land in order
        self.records.put(record.model_copy(update={"attachment": done}))
        log.info(
            "VF attached",
            extra=self._ctx(
                record,
                record.pci_address,
                netns=attachment.netns,
                ifname=attachment.if_name,
                ips=list(done.ips),
            ),
        )
        return done.network_data()

    def detach(self, pci: str) -> None:
        """Undo VF ``pci``'s attachment: IPAM DEL, VF back in the host netns with its name,
        MAC and MTU. PF-side settings stay (the claim still holds the VF). Idempotent;
        works when the pod netns is already gone. Raises :class:`AttachError` when a real
        VF has not come back yet (a later detach or the sweep finishes it).
        """
        with self._lock(pci):
            record = self.records.get(pci)
            if record is not None and record.attachment is not None:
                self._detach_locked(record)

    def _detach_locked(self, record: VfRecord) -> VfRecord:
        attachment = record.attachment
        assert attachment is not None
        pci = record.pci_address
        if not self.backend.present(pci):
            return self._detach_vanished(record, attachment)
        record = record.model_copy(
            update={"attachment": attachment.model_copy(update={"phase": "detaching"})}
        )
        # Written while the pod network looks; it waits for the write before changing.
        writing = self.records.start_put(record)
        try:
            self.pods.disconnect(record, attachment, before_change=writing.wait)
            writing.wait()  # also when nothing changed: the writes must land in order
        finally:
            writing.join()
        record = record.model_copy(update={"attachment": None})
        self.records.put(record)
        log.info("VF detached", extra=self._ctx(record, pci, netns=attachment.netns))
        return record

    def _detach_vanished(self, record: VfRecord, attachment: Attachment) -> VfRecord:
        """The VF is gone from its PF (its netdev with it): release the pod's addresses only."""
        if attachment.ipam_conf is not None:
            ipam.ipam_del(
                attachment.ipam_conf,
                container=attachment.container_id,
                ifname=attachment.if_name,
                netns=attachment.netns
                if netns_alive(attachment.netns, attachment.netns_id)
                else "",
                cni_path=self.pods.cni_path,
            )
        record = record.model_copy(update={"attachment": None})
        self.records.put(record)
        log.warning(
            "VF detached after it vanished from its PF: addresses released, nothing to move back",
            extra=self._ctx(record, record.pci_address, netns=attachment.netns),
        )
        return record

    # --- release -------------------------------------------------------------------------

    def release(self, pci: str) -> None:
        """Detach, restore the original PF-side settings and driver, forget the VF. Idempotent."""
        with self._lock(pci):
            record = self.records.get(pci)
            if record is None:
                return
            if record.attachment is not None:
                record = self._detach_locked(record)
            if not self.backend.present(pci):
                self.records.delete(pci)
                log.warning(
                    "VF released after it vanished from its PF: nothing left to restore",
                    extra=self._ctx(record, pci),
                )
                return
            vf = self._info(record)
            restore = vf_settings.restore_plan(record.original, record.desired)
            if restore.fields_set():
                self.backend.apply_vf_settings(vf, restore)
            if record.driver is not None:
                self.backend.restore_driver(vf, record.original_driver, record.original_override)
            if record.host_ifname is not None and not record.adopted_netdev:
                # A VF whose earlier detach found it nowhere must be back before we forget it.
                self.pods.return_to_host(record, None)
            self.records.delete(pci)
            log.info(
                "VF released", extra=self._ctx(record, pci, restored=list(restore.fields_set()))
            )

    # --- crash repair --------------------------------------------------------------------

    def sweep(self, prepared: Collection[tuple[str, str]]) -> SweepReport:
        """Repair what a crash left, given the (claim UID, PCI address) pairs still prepared.

        - recreate simulated VF netdevs destroyed with their pod netns;
        - release every VF whose (claim, VF) pair is not in ``prepared``;
        - detach every attachment that is half-done, or whose pod netns is gone or no
          longer holds the VF (IP released, VF back with its name).
        Run it at start-up before serving, and periodically (e.g. every minute) so
        pods that vanished while the agent was away are cleaned up. Never raises for
        one VF: failures are listed in ``failed`` and retried on the next sweep.
        """
        recreated = tuple(self.backend.repair())
        detached: list[str] = []
        released: list[str] = []
        failed: dict[str, str] = {}
        wanted = {(uid, pci) for uid, pci in prepared}
        for record in self.records.all():
            pci = record.pci_address
            try:
                if (record.claim.uid, pci) not in wanted:
                    self.release(pci)
                    released.append(pci)
                elif record.attachment is not None and not self._attachment_healthy(record):
                    self.detach(pci)
                    detached.append(pci)
            except (SriovDraError, OSError) as exc:
                failed[pci] = str(exc)
                log.warning(
                    "sweep could not repair VF", extra=self._ctx(record, pci, error=str(exc))
                )
        return SweepReport(
            recreated=recreated, detached=tuple(detached), released=tuple(released), failed=failed
        )

    def _attachment_healthy(self, record: VfRecord) -> bool:
        attachment = record.attachment
        if attachment is None or attachment.phase != "attached":
            return False
        return self.pods.holds(record.pci_address, attachment)
