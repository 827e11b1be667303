"""One VF netdev into a pod's netns and back, with the pod's addresses (the kernel side).

:class:`PodNetwork` does the netlink and IPAM work of an attach or a detach; the VF
lifecycle (:class:`~sriov_dra_agent.vf.lifecycle.VfLifecycle`) decides when, holds
the VF's lock and writes its record before each call, so every method here may be
re-run after a crash at any point.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any, Final

from pyroute2 import IPRoute
from sriov_dra.errors import AttachError, NetnsNotFound

from sriov_dra_agent.attach import ipam, netns_attach
from sriov_dra_agent.attach.ipam import DEFAULT_CNI_PATH
from sriov_dra_agent.attach.netns import NetnsSockets, netns_alive, netns_socket, open_netns
from sriov_dra_agent.attach.netns_attach import BeforeChange, LinkView, no_wait
from sriov_dra_agent.vf.backends.base import VfBackend
from sriov_dra_agent.vf.records import Attachment, VfRecord, log_context

log = logging.getLogger(__name__)

RETURN_TIMEOUT_SECONDS: Final = 3.0


class PodNetwork:
    """Moves one node's VF netdevs (through ``backend``) into pod netns and back."""

    def __init__(self, backend: VfBackend, *, cni_path: str = DEFAULT_CNI_PATH) -> None:
        self.backend = backend
        self.cni_path = cni_path
        self._host_sockets = NetnsSockets()

    def close(self) -> None:
        """Close the cached host netns sockets (reopened if used again)."""
        self._host_sockets.close()

    def _host(self) -> contextlib.AbstractContextManager[IPRoute]:
        """This thread's cached socket in the node's host netns."""
        return self._host_sockets.open(self.backend.host_netns())

    def host_link(self, pci: str) -> LinkView | None:
        """VF ``pci``'s netdev in the node's host netns, if it is there now."""
        with self._host() as host:
            return netns_attach.find_vf(host, pci, self.backend.is_vf_netdev)

    def connect(
        self,
        record: VfRecord,
        attachment: Attachment,
        *,
        before_change: BeforeChange = no_wait,
    ) -> Attachment:
        """Move the VF into ``attachment``'s netns as its ``if_name`` (MAC, MTU, up), run
        its IPAM ADD and add the addresses; returns the attachment as ``attached``.
        ``before_change`` runs before the first change (lookups come first).

        Raises :class:`~sriov_dra.errors.NetnsNotFound`,
        :class:`~sriov_dra.errors.DeviceBusy` (the name is taken),
        :class:`~sriov_dra.errors.IpamError`, :class:`AttachError`; undoing is the caller's.
        """
        pci = record.pci_address
        conf = attachment.ipam_conf
        adding: ipam.PendingAdd | None = None

        def change() -> None:
            nonlocal adding
            before_change()
            # A plugin that never looks into the pod allocates while the VF moves.
            if adding is None and conf and ipam.netns_free(conf):
                adding = self._start_add(attachment)

        # One pod socket for every step.
        with open_netns(attachment.netns) as pod:
            try:
                with self._host() as host:
                    link = netns_attach.move_into_pod(
                        pod,
                        host,
                        pci=pci,
                        is_vf=self.backend.is_vf_netdev,
                        pod_netns=attachment.netns,
                        if_name=attachment.if_name,
                        mac=attachment.mac,
                        mtu=attachment.mtu,
                        host_name=record.host_ifname,
                        before_change=change,
                    )
                ips: list[str] = []
                if conf is not None:
                    change()  # the VF may have been in place already
                    adding = adding or self._start_add(attachment)
                    ips = netns_attach.configure_addresses(
                        pod,
                        pod_netns=attachment.netns,
                        pci=pci,
                        is_vf=self.backend.is_vf_netdev,
                        result=adding.result(),
                        link=link,
                    )
            finally:
                # On failure the caller's rollback runs DEL: the ADD must be over by then.
                if adding is not None:
                    adding.settle()
        return attachment.model_copy(
            update={"phase": "attached", "ips": tuple(ips), "hardware_address": link.mac}
        )

    def _start_add(self, attachment: Attachment) -> ipam.PendingAdd:
        assert attachment.ipam_conf is not None
        return ipam.PendingAdd(
            attachment.ipam_conf,
            container=attachment.container_id,
            ifname=attachment.if_name,
            netns=attachment.netns,
            cni_path=self.cni_path,
        )

    def disconnect(
        self,
        record: VfRecord,
        attachment: Attachment,
        *,
        before_change: BeforeChange = no_wait,
    ) -> None:
        """IPAM DEL, and the VF back in the host netns with its name, MAC and MTU.
        ``before_change`` runs before the first change (lookups come first).

        A plugin that never looks into the pod releases while the VF moves back;
        any other releases first. Works when the pod netns is already gone. Raises
        :class:`AttachError` when a real VF has not come back yet (run again later).
        """
        conf = attachment.ipam_conf
        deleting: ipam.PendingDel | None = None

        def change() -> None:
            nonlocal deleting
            before_change()
            if conf is None or deleting is not None:
                return
            deleting = ipam.PendingDel(
                conf,
                container=attachment.container_id,
                ifname=attachment.if_name,
                netns=attachment.netns
                if netns_alive(attachment.netns, attachment.netns_id)
                else "",
                cni_path=self.cni_path,
            )
            if not ipam.netns_free(conf):
                deleting.done()

        try:
            self.return_to_host(record, attachment, before_change=change)
            change()  # the VF may have been home already: the address goes all the same
        except BaseException:
            if deleting is not None:
                deleting.settle()
            raise
        if deleting is not None:
            deleting.done()

    def return_to_host(
        self,
        record: VfRecord,
        attachment: Attachment | None,
        *,
        before_change: BeforeChange = no_wait,
    ) -> None:
        """Bring the VF back to the host netns as ``record`` saw it before any attach.

        Looks in ``attachment``'s pod netns while it lives, else in the host only; a
        netns that just died gets :data:`RETURN_TIMEOUT_SECONDS` to give the VF back
        (the simulated backend's ``repair`` recreates one destroyed with it).
        """
        pod = None
        if attachment is not None and netns_alive(attachment.netns, attachment.netns_id):
            pod = attachment.netns
        assert record.host_ifname is not None
        kwargs: dict[str, Any] = {
            "pci": record.pci_address,
            "is_vf": self.backend.is_vf_netdev,
            "host_netns": self.backend.host_netns(),
            "host_name": record.host_ifname,
            "host_mac": record.host_mac,
            "host_mtu": record.host_mtu,
            "before_change": before_change,
        }
        with self._pod_socket(pod) as pod_socket, self._host() as host:
            back = netns_attach.move_to_host(
                host,
                pod_socket,
                pod_netns=pod,
                pod_name=attachment.if_name if attachment is not None else None,
                **kwargs,
            )
            if back is not None:
                return
        # A dead netns is torn down asynchronously: a real VF reappears in the host, a
        # simulated one's veth pair vanishes (then repair() recreates it). Give it a moment.
        before_change()
        deadline = time.monotonic() + RETURN_TIMEOUT_SECONDS
        while True:
            recreated = self.backend.repair()
            if recreated:
                log.info(
                    "simulated VFs recreated",
                    extra=log_context(
                        self.backend.node, record, record.pci_address, recreated=recreated
                    ),
                )
            with self._host() as host:
                if netns_attach.move_to_host(host, None, pod_netns=None, **kwargs) is not None:
                    return
            if time.monotonic() > deadline:
                raise AttachError(
                    f"VF {record.pci_address} is not back in the host netns yet",
                    field="vf",
                    fix="its pod netns is still held by some process; the sweep retries",
                )
            time.sleep(0.05)

    def holds(self, pci: str, attachment: Attachment) -> bool:
        """Whether ``attachment``'s pod netns still lives and holds VF ``pci`` by its name."""
        if not netns_alive(attachment.netns, attachment.netns_id):
            return False
        try:
            with open_netns(attachment.netns) as pod:
                link = netns_attach.find_vf(pod, pci, self.backend.is_vf_netdev)
        except (AttachError, OSError):
            return False
        return link is not None and link.name == attachment.if_name

    @staticmethod
    @contextlib.contextmanager
    def _pod_socket(path: str | None) -> Iterator[IPRoute | None]:
        """A socket in pod netns ``path``; ``None`` when there is none or it is gone."""
        if path is None:
            yield None
            return
        try:
            pod = netns_socket(path)
        except NetnsNotFound:
            yield None
            return
        with pod:
            yield pod
