"""The attach socket's ``Attacher``: put a prepared claim's VFs into a container's netns.

Called by ``sriov-dra hook`` (the CDI createRuntime hook) through the attach
socket, under the claim's lock. Each VF is attached with the IPAM config and MAC of
its NAD; if one fails, the ones attached by this call are detached again, the error
goes back to the runtime (failing the container with a clear message) and a
Warning Event lands on the claim. ``status.devices`` gets the networkData, written
after the hook has its answer (the container does not wait for the API server).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sriov_dra.errors import AttachError, SriovDraError
from sriov_dra.naming import claim_ref
from sriov_dra_kube.client import KubeApi
from sriov_dra_kube.events import EventRecorder

from sriov_dra_agent.attach.attach_socket import AttachRequest, AttachResult
from sriov_dra_agent.attach.ipam import nad_ipam_conf
from sriov_dra_agent.cluster import claim_devices
from sriov_dra_agent.cluster.claim_devices import NodeScope, log_context
from sriov_dra_agent.cluster.claim_status import ClaimStatus
from sriov_dra_agent.cluster.nad_cache import NadCache
from sriov_dra_agent.kubelet.prepared_claims import PreparedClaims
from sriov_dra_agent.metrics import AgentMetrics
from sriov_dra_agent.vf.lifecycle import VfLifecycle
from sriov_dra_agent.vf.records import VfRecord

logger = logging.getLogger(__name__)


class NotPrepared(AttachError):
    """The hook asked to attach a claim this node has not prepared."""

    reason = "ClaimNotPrepared"


class ClaimAttacher:
    """Implements :class:`sriov_dra_agent.attach.attach_socket.Attacher` for this node."""

    def __init__(
        self,
        scope: NodeScope,
        *,
        api: KubeApi,
        vfs: VfLifecycle,
        nads: NadCache,
        prepared: PreparedClaims,
        status: ClaimStatus,
        events: EventRecorder,
        metrics: AgentMetrics,
        cni_data_dir: Path,
    ) -> None:
        self.scope = scope
        self.api = api
        self.vfs = vfs
        self.nads = nads
        self.prepared = prepared
        self.status = status
        self.events = events
        self.metrics = metrics
        self.cni_data_dir = cni_data_dir
        """host-local's ``dataDir`` for NADs that set none."""

    async def attach(self, request: AttachRequest) -> AttachResult:
        """Attach every VF of a prepared claim into the container's netns (lock held)."""
        with self.metrics.timed("attach"):
            return await self._attach(request)

    async def _attach(self, request: AttachRequest) -> AttachResult:
        checkpoint = await self.prepared.load()
        prepared = checkpoint.claims.get(request.claim_uid)
        if prepared is None:
            raise NotPrepared(
                f"claim {request.claim_uid} is not prepared on node {self.scope.node}",
                field="claimUid",
                fix="the kubelet prepares a claim before its containers start; "
                "check the pod's events for a failed NodePrepareResources",
            )
        claim = await self.api.get_claim(prepared.namespace, prepared.name)
        if claim is None or claim_devices.uid(claim) != request.claim_uid:
            raise NotPrepared(
                f"claim {claim_ref(prepared.namespace, prepared.name)} ({request.claim_uid}) "
                "no longer exists",
                field="claimUid",
                fix="delete the pod; its claim is gone",
            )
        devices = self.scope.devices(claim)
        # CRI-O and containerd name the pod in different OCI annotations.
        pod = request.annotations.get("io.kubernetes.pod.name") or request.annotations.get(
            "io.kubernetes.cri.sandbox-name", ""
        )
        done: list[VfRecord] = []
        names = []
        where = ""
        try:
            for device in devices:
                where = f"VF {device.pci_address} as {device.if_name}" + (
                    f" (NAD {'/'.join(device.nad)})" if device.nad else ""
                )
                record = self.vfs.record(device.pci_address)
                if record is None or record.claim.uid != request.claim_uid:
                    raise AttachError(
                        f"VF {device.pci_address} is not configured for this claim",
                        field="claim",
                        fix="wait for the agent to configure the VF (see the claim's "
                        "VfConfigured condition)",
                    )
                if record.userspace:
                    continue
                nad = await self.nads.sriov_conf(device.nad) if device.nad else None
                await asyncio.to_thread(
                    self.vfs.attach,
                    device.pci_address,
                    record.claim,
                    device.request,
                    netns=request.netns,
                    if_name=device.if_name,
                    netconf=nad_ipam_conf(nad.conf, default_data_dir=self.cni_data_dir)
                    if nad is not None
                    else None,
                    # As sriov-cni: the NAD's MAC is the PF-side admin MAC (programmed)
                    # and the netdev's MAC in the pod; detach restores the original.
                    mac=nad.conf.mac if nad is not None else None,
                )
                done.append(record)
                names.append(device.if_name)
        except Exception as exc:
            for record in done:
                try:
                    await asyncio.to_thread(self.vfs.detach, record.pci_address)
                except Exception:
                    logger.exception("rollback of attach failed", extra=log_context(claim))
            error = (
                exc
                if isinstance(exc, SriovDraError)
                else AttachError(f"{type(exc).__name__}: {exc}", fix="see the agent log")
            )
            await self.events.warning(
                claim,
                error.reason,
                f"attaching {where} to container {request.container_id[:12]}"
                + (f" of pod {pod}" if pod else "")
                + f" on node {self.scope.node} failed: {error.describe()}",
            )
            await self.status.write(claim, devices)
            if error is exc:
                raise
            raise error from exc
        message = f"attached {', '.join(names)} on node {self.scope.node}"
        logger.info(
            "attached VFs",
            extra=log_context(
                claim,
                pod=pod,
                netns=request.netns,
                container=request.container_id,
                interfaces=names,
                vfs=[d.pci_address for d in devices],
            ),
        )

        async def report() -> None:
            await self.status.write(claim, devices)

        # The container waits for the answer, not for the API server: status.devices
        # (networkData, NetworkReady) is written after the reply, under the same lock.
        return AttachResult(interfaces=tuple(names), message=message, after_reply=report)
