"""The kubelet's ``ClaimPreparer``: NodePrepareResources / NodeUnprepareResources for our claims.

Prepare checks what the kubelet cannot -- the claim UID against the API server,
that the allocation is for this node, that no other claim has the VF prepared --
makes sure the VFs are programmed (normally done already on allocation), writes
the claim's CDI spec (with the createRuntime hook that attaches) and the
device-info file of each VF that has a Multus resource name, and records the
claim in the checkpoint. Unprepare detaches and removes both. Both are
idempotent; the kubelet plugin calls them under the claim's lock.

With ``agent_attaches`` False (``--attach-mode multus``) the spec has no hook and
no interface name: a meta-plugin (Multus, reading the NAD's
``k8s.v1.cni.cncf.io/resourceName``) attaches the VF and names its interface.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sriov_dra.claim_ref import ClaimRef
from sriov_dra.claim_requests import parent_request
from sriov_dra.errors import DeviceBusy, SriovDraError
from sriov_dra.naming import claim_ref
from sriov_dra_kube.client import KubeApi

from sriov_dra_agent.cluster import claim_devices
from sriov_dra_agent.cluster.claim_devices import ClaimDevice, NodeScope, log_context
from sriov_dra_agent.cluster.claim_manager import ClaimManager
from sriov_dra_agent.cluster.claim_status import ClaimStatus
from sriov_dra_agent.kubelet import cdi, device_info
from sriov_dra_agent.kubelet.checkpoint import ClaimRecord, DeviceRecord
from sriov_dra_agent.kubelet.plugin import PreparedDevice
from sriov_dra_agent.kubelet.prepared_claims import PreparedClaims
from sriov_dra_agent.kubelet.rdma_devices import rdma_char_devices, rdma_device_names
from sriov_dra_agent.metrics import AgentMetrics
from sriov_dra_agent.vf.lifecycle import VfLifecycle
from sriov_dra_agent.vf.resource_names import ResourceNames, is_resource_name

logger = logging.getLogger(__name__)


class ClaimMismatch(SriovDraError):
    """The kubelet's claim is not the one on the API server or not for this node. Permanent."""

    reason = "ClaimMismatch"


class Preparer:
    """Implements :class:`sriov_dra_agent.kubelet.plugin.ClaimPreparer` for this node."""

    def __init__(
        self,
        scope: NodeScope,
        *,
        api: KubeApi,
        manager: ClaimManager,
        vfs: VfLifecycle,
        prepared: PreparedClaims,
        status: ClaimStatus,
        metrics: AgentMetrics,
        hook: cdi.CdiHook,
        sysfs_root: Path | None = None,
        resource_names: ResourceNames | None = None,
        published_resource_name: Callable[[str], str | None] | None = None,
        agent_attaches: bool = True,
    ) -> None:
        self.scope = scope
        self.api = api
        self.manager = manager
        self.vfs = vfs
        self.prepared = prepared
        self.status = status
        self.metrics = metrics
        self.hook = hook
        """The attach hook every claim's CDI spec names (for claims with a netdev)."""
        self.sysfs_root = sysfs_root or Path("/sys")
        self.resource_names = resource_names or ResourceNames()
        """Which VFs get a device-info file, under which resource name, until published."""
        self.published_resource_name = published_resource_name
        """Device name -> the resource name its slice carries (a DeviceAttributes may set it)."""
        self.agent_attaches = agent_attaches
        """False in Multus mode: no createRuntime hook, a meta-plugin attaches."""

    async def _get_claim(self, ref: ClaimRef) -> Mapping[str, Any]:
        claim = await self.api.get_claim(ref.namespace, ref.name)
        if claim is None:
            raise ClaimMismatch(
                f"ResourceClaim {claim_ref(ref.namespace, ref.name)} does not exist",
                field="claim",
                fix="the claim was deleted; delete the pod",
            )
        if claim_devices.uid(claim) != ref.uid:
            raise ClaimMismatch(
                f"ResourceClaim {claim_ref(ref.namespace, ref.name)} has uid "
                f"{claim_devices.uid(claim)}, not {ref.uid}",
                field="claim.uid",
                fix="the claim was deleted and re-created; delete and re-create the pod",
            )
        return claim

    def _vfio_group(self, pci: str) -> str | None:
        link = self.sysfs_root / "bus/pci/devices" / pci / "iommu_group"
        return link.resolve().name if link.exists() else None

    def _rdma(self, device: ClaimDevice, *, in_kernel: bool) -> tuple[cdi.CharDevice, ...]:
        """The VF's RDMA devices as its VfConfig ``rdma`` asks (None: when it has them).

        A VF in userspace (vfio-pci) has left the kernel's RDMA stack: it has none.
        """
        found = (
            rdma_char_devices(
                self.sysfs_root, self.manager.dev_root, device.pci_address, node=self.scope.node
            )
            if in_kernel and device.rdma is not False
            else ()
        )
        if device.rdma and not found:
            raise cdi.DeviceNodeMissing(
                f"VF {device.pci_address} has no RDMA device on node {self.scope.node}",
                field="VfConfig.rdma",
                fix="select an RDMA-capable VF (attribute rdmaCapable == true) on a kernel "
                "driver, load its RDMA driver (e.g. mlx5_ib), or drop rdma: true",
            )
        return found

    async def _device_infos(
        self, ref: ClaimRef, devices: Sequence[ClaimDevice]
    ) -> dict[str, tuple[str, dict[str, Any]]]:
        """VF PCI -> (device-info file name, content) for the VFs that have a resource name:
        the one their slice carries, else (not published yet) ``--resource-name``'s."""
        published = {
            device.device: self.published_resource_name(device.device)
            for device in devices
            if self.published_resource_name is not None
        }
        if not self.resource_names.names() and not any(published.values()):
            return {}
        inventory = await asyncio.to_thread(self.vfs.discover)
        found = {vf.pci_address: vf for vf in inventory.vfs()}
        described: dict[str, tuple[str, dict[str, Any]]] = {}
        for device in devices:
            vf = found.get(device.pci_address)
            if vf is None:
                continue
            resource = published.get(device.device) or self.resource_names.for_vf(vf)
            if resource is None:
                continue
            if not is_resource_name(resource):
                # Only a DeviceAttributes can publish such a name (the setting refuses it).
                logger.warning(
                    "no device-info file for VF %s: its resource name %r cannot name a file; "
                    "fix: use letters, digits, '.', '_', '-' and '/' in the DeviceAttributes' "
                    "k8s.cni.cncf.io/resourceName",
                    vf.pci_address,
                    resource,
                    extra={
                        "claim": claim_ref(ref.namespace, ref.name),
                        "uid": ref.uid,
                        "node": self.scope.node,
                        "pf": vf.pf_name,
                        "vf": vf.pci_address,
                    },
                )
                continue
            described[device.pci_address] = (
                device_info.file_name(resource, vf.pci_address),
                device_info.pci_device_info(
                    vf.pci_address,
                    vf.pf_pci_address,
                    rdma_device_names(self.sysfs_root, vf.pci_address),
                ),
            )
        return described

    async def prepare(self, ref: ClaimRef) -> list[PreparedDevice]:
        """NodePrepareResources for one claim (caller holds its lock). Idempotent."""
        with self.metrics.timed("prepare"):
            return await self._prepare(ref)

    async def _prepare(self, ref: ClaimRef) -> list[PreparedDevice]:
        claim = await self._get_claim(ref)
        devices = self.scope.devices(claim)
        if not devices:
            raise ClaimMismatch(
                f"ResourceClaim {claim_ref(ref.namespace, ref.name)} has no VF allocated "
                f"on node {self.scope.node}",
                field="status.allocation",
                fix="the pod runs on a node its claim is not allocated for; "
                "wait for the allocation or delete the pod",
            )
        checkpoint = await self.prepared.load()
        for device in devices:
            holder = checkpoint.claim_holding(device.pool, device.device)
            if holder is not None and holder.uid != ref.uid:
                raise DeviceBusy(
                    f"VF {device.device} is prepared for claim "
                    f"{claim_ref(holder.namespace, holder.name)} ({holder.uid})",
                    field="status.allocation.devices.results",
                    fix="the other claim must be unprepared first (delete its pod)",
                )
        errors = await self.manager.program(claim, devices)
        await self.status.write(claim, devices)
        if errors:
            first = next(iter(errors.values()))
            raise first
        existing = checkpoint.claims.get(ref.uid)
        ids = cdi.claim_cdi_device_ids(ref.uid, [d.device for d in devices])
        if existing is None or [d.device_name for d in existing.devices] != [
            d.device for d in devices
        ]:
            vfs = []
            for device in devices:
                record = self.vfs.record(device.pci_address)
                userspace = record is not None and record.userspace
                vfio = record is not None and record.held_driver == "vfio-pci"
                named = self.agent_attaches and not userspace
                vfs.append(
                    cdi.CdiVf(
                        device_name=device.device,
                        pci_address=device.pci_address,
                        if_name=device.if_name if named else "",
                        vfio_group=self._vfio_group(device.pci_address) if vfio else None,
                        vhost=device.vhost,
                        rdma=self._rdma(device, in_kernel=not (userspace or vfio)),
                    )
                )
            hook = self.hook if any(v.if_name for v in vfs) else None
            spec = cdi.build_claim_spec(ref.uid, vfs, hook)
            described = await self._device_infos(ref, devices)
            prepared = ClaimRecord(
                uid=ref.uid,
                namespace=ref.namespace,
                name=ref.name,
                devices=tuple(
                    DeviceRecord(
                        pool_name=d.pool,
                        device_name=d.device,
                        request_names=(parent_request(d.request),),
                        cdi_device_ids=(cdi_id,),
                        pci_address=d.pci_address,
                        if_name=d.if_name,
                        device_info_file=described[d.pci_address][0]
                        if d.pci_address in described
                        else "",
                    )
                    for d, cdi_id in zip(devices, ids, strict=True)
                ),
            )
            await self.prepared.add(prepared, spec, dict(described.values()))
            logger.info(
                "prepared claim", extra=log_context(claim, devices=[d.device for d in devices])
            )
        return [
            PreparedDevice(
                request_names=(parent_request(d.request),),
                pool_name=d.pool,
                device_name=d.device,
                cdi_device_ids=(cdi_id,),
            )
            for d, cdi_id in zip(devices, ids, strict=True)
        ]

    async def unprepare(self, ref: ClaimRef) -> None:
        """NodeUnprepareResources: detach the claim's VFs, drop its CDI spec. Idempotent."""
        with self.metrics.timed("unprepare"):
            await self._detach(ref.uid)
            await self.prepared.forget(ref.uid)
        claim = await self.api.get_claim(ref.namespace, ref.name)
        if claim is not None and claim_devices.uid(claim) == ref.uid:
            await self.status.write(claim)

    async def _detach(self, claim_uid: str) -> None:
        """Take the claim's VFs out of their pod (they stay programmed for the claim)."""
        for record in self.vfs.records_of(claim_uid):
            if record.attachment is None:
                continue
            with self.metrics.timed("detach"):
                await asyncio.to_thread(self.vfs.detach, record.pci_address)
