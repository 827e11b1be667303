"""The kubelet's DRA health stream: ``v1alpha1.DRAResourceHealth/NodeWatchResources``.

Kubelet 1.34 with the ``ResourceHealthStatus`` gate opens this stream on the
same DRA socket as NodePrepareResources (nothing extra is registered) and shows
what it hears in the pods' ``status.containerStatuses[].allocatedResourcesStatus``.
Each message is the complete list of the pool's devices with their health
(:mod:`sriov_dra.device_health` via :class:`~sriov_dra_agent.health.pf_links.PfLinkMonitor`):
one at once, one on every change, and the same again every ``resend`` seconds so
that the kubelet never takes silence for a stale state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import grpc

from sriov_dra_agent.health.pf_links import PfLinkMonitor
from sriov_dra_agent.kubelet.protos import dra_health_v1alpha1_pb2, dra_health_v1alpha1_pb2_grpc

logger = logging.getLogger(__name__)

DEFAULT_RESEND: Final = 30.0


class HealthService:
    """``DRAResourceHealth`` servicer over one :class:`PfLinkMonitor`; the pool is the node."""

    def __init__(self, monitor: PfLinkMonitor, *, resend: float = DEFAULT_RESEND) -> None:
        self.monitor = monitor
        self.resend = resend

    def response(self) -> Any:
        """The complete device list with health, as one ``NodeWatchResourcesResponse``."""
        pb2 = dra_health_v1alpha1_pb2
        answer = pb2.NodeWatchResourcesResponse()
        now = int(time.time())
        for name, entry in sorted(self.monitor.health().items()):
            answer.devices.add(
                device=pb2.DeviceIdentifier(pool_name=self.monitor.node, device_name=name),
                health=int(entry.health),
                last_updated_time=now,
            )
        return answer

    async def NodeWatchResources(self, request: Any, context: Any) -> AsyncIterator[Any]:
        seen = self.monitor.version
        logger.info("kubelet watches device health", extra={"node": self.monitor.node})
        try:
            while True:
                yield self.response()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.resend):
                        seen = await self.monitor.wait_change(seen)
        finally:
            logger.info("kubelet stopped watching device health", extra={"node": self.monitor.node})


def health_servicer(
    monitor: PfLinkMonitor, *, resend: float = DEFAULT_RESEND
) -> tuple[HealthService, Callable[[Any, grpc.aio.Server], None]]:
    """The servicer and its ``add_..._to_server``, for :class:`KubeletPlugin`'s extra services."""
    return (
        HealthService(monitor, resend=resend),
        dra_health_v1alpha1_pb2_grpc.add_DRAResourceHealthServicer_to_server,
    )
