"""The operator's side of leader election: reading and writing the Lease, on a clock.

The rules are the core's (:mod:`sriov_dra.leader_election`); this shell reads the
``coordination.k8s.io/v1`` Lease, writes what the core decides with the
resourceVersion it read (so two candidates can never both win one round: the
second write gets a 409), and keeps the monotonic clock the rules run on.

While it waits, a standby answers ``/healthz`` itself (kopf, which serves the
leader's, does not run yet), so the kubelet does not restart a healthy standby.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from kubernetes_asyncio import client
from sriov_dra.leader_election import (
    JITTER_FACTOR,
    ElectionTiming,
    LeaseRecord,
    Observation,
    acquired_or_renewed,
    held_by_other,
    lost_leadership,
    observe,
    released,
)
from sriov_dra_kube.client import ApiException, decode, is_status

log = logging.getLogger(__name__)


def candidate_identity() -> str:
    """client-go's identity: the hostname (the pod's name) and a unique suffix."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def _wall_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class LeaderElector:
    """Takes, keeps and hands back one Lease for one candidate."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        timing: ElectionTiming,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._coordination: Any = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self._clock = clock
        self._observed: Observation | None = None
        self.last_renewed = 0.0
        self.leading = False

    @property
    def lease_ref(self) -> str:
        """``namespace/name`` of the Lease, for log lines."""
        return f"{self.namespace}/{self.name}"

    async def _read(self) -> tuple[LeaseRecord | None, str]:
        """The Lease's record and resourceVersion; (None, '') when there is no Lease."""
        try:
            body = await decode(
                await self._coordination.read_namespaced_lease(
                    self.name, self.namespace, _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None, ""
            raise
        return LeaseRecord.from_spec(body.get("spec")), str(body["metadata"]["resourceVersion"])

    async def _write(self, record: LeaseRecord, resource_version: str) -> None:
        """Create the Lease, or replace it if still at ``resource_version`` (else 409)."""
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": record.to_spec(),
        }
        if not resource_version:
            await decode(
                await self._coordination.create_namespaced_lease(
                    self.namespace, body, _preload_content=False
                )
            )
            return
        body["metadata"]["resourceVersion"] = resource_version
        await decode(
            await self._coordination.replace_namespaced_lease(
                self.name, self.namespace, body, _preload_content=False
            )
        )

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when we hold the Lease afterwards."""
        current, version = await self._read()
        now = self._clock()
        if current is not None:
            self._observed = observe(self._observed, current, now)
            if held_by_other(self._observed, self.identity, now):
                return False
        record = acquired_or_renewed(current, self.identity, self.timing, _wall_now())
        try:
            await self._write(record, version)
        except ApiException as exc:
            if is_status(exc, 409):
                return False
            raise
        self._observed = observe(self._observed, record, now)
        self.last_renewed = now
        return True

    async def acquire(self) -> None:
        """Wait until we lead: retry every retry_period (jittered, as client-go does)."""
        log.info(
            "waiting to lead",
            extra={"lease": self.lease_ref, "identity": self.identity},
        )
        while True:
            try:
                if await self.try_acquire_or_renew():
                    break
            except Exception as exc:  # the API server may be down: keep trying
                log.warning(
                    "could not read or write the lease",
                    extra={"lease": self.lease_ref, "error": str(exc)},
                )
            period = self.timing.retry_period
            await asyncio.sleep(random.uniform(period, period * JITTER_FACTOR))
        self.leading = True
        log.info(
            "became leader",
            extra={
                "lease": self.lease_ref,
                "identity": self.identity,
                "transitions": self._observed.record.transitions if self._observed else 0,
            },
        )

    async def hold(self) -> None:
        """Renew every retry_period; return when leadership is lost (renew deadline passed)."""
        while True:
            await asyncio.sleep(self.timing.retry_period)
            try:
                renewed = await self.try_acquire_or_renew()
            except Exception as exc:
                renewed = False
                log.warning(
                    "could not renew the lease",
                    extra={"lease": self.lease_ref, "error": str(exc)},
                )
            if not renewed and lost_leadership(self.last_renewed, self.timing, self._clock()):
                self.leading = False
                log.error(
                    "lost leadership: stopping so that only one operator acts",
                    extra={
                        "lease": self.lease_ref,
                        "identity": self.identity,
                        "fix": "the pod restarts as a standby; check the API server's "
                        "reachability if this repeats",
                    },
                )
                return

    async def release(self) -> None:
        """Hand the Lease back on a clean stop, so the standby need not wait a whole lease."""
        if not self.leading:
            return
        self.leading = False
        try:
            current, version = await self._read()
            record = released(current, self.identity, _wall_now()) if current else None
            if record is not None:
                await self._write(record, version)
                log.info("released the lease", extra={"lease": self.lease_ref})
        except Exception as exc:  # the standby then takes over when the lease lapses
            log.warning(
                "could not release the lease",
                extra={"lease": self.lease_ref, "error": str(exc)},
            )


@asynccontextmanager
async def standby_health(address: str, port: int) -> AsyncIterator[None]:
    """Serve ``/healthz`` while waiting to lead; the port is free again on exit for kopf."""
    if not port:
        yield
        return

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, address, port, reuse_address=True)
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()
